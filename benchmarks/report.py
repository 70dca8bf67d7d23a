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
        f"- Slurm: {_first_line(['sinfo', '--version'])}",
        f"- Python (plugin, broker): {_first_line(['/usr/bin/python3', '--version'])}",
    ]


def render(sections: list[Section], *, started: str, seconds: float, command: str,
           summary: list[str]) -> str:
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
        "make bench BENCH_ARGS='--only broker'    # one section: "
        + ", ".join(s.key for s in sections),
        "make bench BENCH_ARGS='--quick'     # few repetitions: checks it runs, numbers rough",
        "```",
        "",
        "## Summary",
        "",
        *summary,
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections)
