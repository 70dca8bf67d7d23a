"""The shape of a benchmark result and its rendering into BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One line of a section's table: what was measured against what."""

    what: str
    baseline: str  # the same thing without the component under test ("" if none)
    measured: str
    difference: str  # or the ratio, as text with its unit
    target: str = ""
    met: bool | None = None  # None: no target for this row

    @property
    def verdict(self) -> str:
        return {None: "", True: "met", False: "**missed**"}[self.met]


@dataclass
class Section:
    """One numbered item of issue 8: a table, what it means, and (when a target is
    missed) the profile that explains where the time goes."""

    key: str  # command-line name: --only KEY
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str = ""  # verbatim text (a cProfile excerpt, a trace), shown in a code block

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.rows:
            out += ["| measured | baseline | with | difference | target | |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {r.what} | {r.baseline} | {r.measured} | {r.difference} | "
                    f"{r.target} | {r.verdict} |" for r in self.rows]
            out.append("")
        out += [f"{n}\n" for n in self.notes]
        if self.profile:
            out += ["```", self.profile.rstrip(), "```", ""]
        return "\n".join(out)


def _first_line(cmd: list[str]) -> str:
    if not shutil.which(cmd[0]):
        return "?"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 \
        else "?"


def machine_description() -> list[str]:
    """What the numbers were measured on: they mean little without it."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = "?"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return [
        f"- CPU: {os.cpu_count()} x {cpu}",
        f"- memory: {mem_kib / 1024 / 1024:.1f} GiB",
        f"- OS: {os_name}, kernel {platform.release()}",
        f"- Slurm: {_first_line(['slurmd', '-V'])} (Debian packages)",
        f"- Python (plugin, broker): {_first_line(['/usr/bin/python3', '--version'])}",
    ]


# What these measurements changed in the code (kept by hand: the numbers before a change
# cannot be measured again once it is made). Each: what was slow, why, what was done.
CHANGES = [
    "The plugin linked libpython, so every sbatch, srun, prolog, epilog and step of every "
    "job, --qpu or not, loaded it (~3 ms per command, `sbatch --help` 3 -> 6 ms). It is "
    "now split: `spank_qpu.so` (no libpython) loads `spank_qpu_python.so` on the first "
    "callback that needs Python.",
    "The broker-mode prolog and epilog imported the direct-mode lifecycle (pydantic config "
    "models, every vendor type) and httpx: ~170 ms of imports per prolog and per epilog, "
    "and every job step imported the config models for one helper (~150 ms). Imports are "
    "now split by path; the broker client speaks http.client (httpx and its TLS context "
    "cost ~80 ms per prolog). tests/unit/test_import_cost.py keeps them out.",
    "Every vendor client built its own TLS context (loading the CA bundle, ~40 ms of CPU), "
    "two per acquire and two per release in the broker: an emulated IBM lease cycle took "
    "~135 ms, now ~15 ms. One context per process.",
    "`srun` inside a --qpu job re-checked the job's own QPUs: a Python start-up in every "
    "srun. It now trusts the job's value (a different --qpu is still checked).",
    "The broker listened with a backlog of 5: a burst of prologs lost SYNs and waited "
    ">= 1 s each to retry (p99 of the floor at 100 connections: 2,060 -> 318 ms). Now "
    "1024, and request threads are kept and reused instead of one new thread per "
    "connection.",
    "The journal fsynced inside every commit under its lock (5 per lease cycle, one "
    "after the other for every request): now group commit, the committing thread "
    "fsyncs the WAL after the lock (one fsync covers every commit before it) and a cycle "
    "needs 3; nothing is answered before its data is on disk. Acquisitions naming their "
    "QPUs no longer queue behind selections. 100 jobs at once: 188 -> ~270 cycles/s; "
    "p99 at 100 cycles/s offered 19.7 -> 9.0 ms.",
    "The proxy's answers waited for the client's delayed ACK (Nagle): +42 ms on every "
    "keep-alive request with a body; TCP_NODELAY now. httpx in the proxy (about half "
    "the broker's CPU per request) is replaced by a small keep-alive pool to the vendor "
    "(TLS with the shared context, timeouts, HTTP(S)_PROXY/NO_PROXY, no redirects); a "
    "verified access token is remembered until it expires. Small requests: +42.5 -> "
    "+0.7 ms added, throughput 3 % -> 38 % of direct.",
    "Two brokers on a MariaDB journal (item 7) fell to 3 lease cycles/s with 100 jobs at "
    "once: every job's lock took a new database connection (eight were kept) and PyMySQL "
    "made a TLS context for each (its default tries TLS; loading the CA store is ~15 ms "
    "of CPU), and all journal calls of a broker shared one connection under a process "
    "lock, so each commit waited for the one before. The TLS decision is now made once "
    "per broker (reused, or off over a local socket), lock connections are all kept (24), "
    "and each thread has a journal connection of its own (8): 3 -> ~195 cycles/s (one "
    "broker on SQLite: ~230 in the same run).",
]


def render(sections: list[Section], *, started: str, seconds: float, command: str,
           summary: list[str], modules: tuple[str, ...] = ("slurm", "broker", "proxy",
                                                           "reference")) -> str:
    head = [
        "# slurm-qpu benchmarks",
        "",
        f"Written by `{command}` on {started} in {seconds / 60:.1f} min. Every number is a "
        "median with its inter-quartile range (IQR), against a baseline measured in the "
        "same run; A/B pairs ran interleaved (A, B, A, B, ...) so that the machine's "
        "drift lands on both sides. No test asserts a time; these are the numbers.",
        "",
        "## Machine",
        "",
        *machine_description(),
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                          # everything (a real Slurm lab comes up and goes)",
        "make bench BENCH_ARGS='--only broker'    # one part: " + ", ".join(modules),
        "make bench BENCH_ARGS='--quick'     # few repetitions: checks it runs, numbers rough",
        "```",
        "",
        "## Summary",
        "",
        *summary,
        "",
        "## What the measurements changed",
        "",
        *(f"- {c}" for c in CHANGES),
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections)
