"""Items 1, 2 and 6 (task memory) of issue 8, on a real Slurm lab (slot 4).

1. Jobs without --qpu, plugin registered vs an empty plugstack.conf: ``srun true``,
   ``sbatch`` submit-to-end, ``sbatch --help``; Python start-ups counted (pytrace=).
2. Jobs with --qpu (broker mode, the production default, on the built-in emulator with
   zero vendor latency) vs the same job without: submit-to-task-start, end-to-epilog-done,
   the sbatch validation, an ``srun`` step inside the job; each Python start-up listed.
6. The resident size of the batch task and of its slurmstepd, with and without --qpu.

Times come from one clock: the submitting process's ``time.time()`` before sbatch, the
job's own ``date +%s.%N`` at its start and end, and slurmd's millisecond log stamp of
``completed epilog for jobid N`` (the moment the node is free again).
"""

from __future__ import annotations

import json
import pstats
import re
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchmarks.options import Options
from benchmarks.report import Row, Section
from benchmarks.stats import Summary, paired_difference
from slurm_qpu_lab import Lab

LAB_ROOT = Path("/tmp/slurm-qpu-bench-lab")  # the job user must reach it: not a 0700 tmpdir
LAB_SLOT = 4  # dev 0, tests 1, chroot 2, teardown test 7
QPUS = ("sim_a", "ibm_manila")  # the built-in local simulator; the emulated IBM cloud QPU

# One line per mark: "start <epoch>", "rss <task kB> <slurmstepd kB> <slurmstepd peak kB>",
# "step <srun seconds>", "end <epoch>".
JOB_SCRIPT = """#!/bin/bash
echo "start $(date +%s.%N)"
echo "rss $(awk '/VmRSS/{print $2}' /proc/$$/status) \
$(awk '/VmRSS/{print $2}' /proc/$PPID/status) $(awk '/VmHWM/{print $2}' /proc/$PPID/status)"
a=$(date +%s.%N); srun -n1 true; b=$(date +%s.%N)
echo "step $(awk "BEGIN{print $b - $a}")"
echo "end $(date +%s.%N)"
"""
EPILOG_DONE = re.compile(r"^\[(\S+)\] debug:\s+completed epilog for jobid (\d+)$")
ALLOCATED = re.compile(r"^\[(\S+)\] sched: Allocate JobId=(\d+) ")


@dataclass
class JobTimes:
    """One job, in seconds of the same clock."""

    submitted: float  # before sbatch ran
    sbatch_exit: float
    started: float
    step: float  # the srun inside the job
    ended: float
    epilog_done: float
    task_rss_kb: int
    stepd_rss_kb: int
    stepd_hwm_kb: int
    startups: list[tuple[str, float]] = field(default_factory=list)  # (callback, ms)
    allocated: float = 0.0  # slurmctld's "sched: Allocate" stamp

    @property
    def to_start(self) -> float:
        return self.started - self.submitted

    @property
    def allocation_to_start(self) -> float:
        """Prolog and step launch: submit-to-start without slurmctld's scheduling pass
        (which runs on a ~1 s tick here, whatever the job)."""
        return self.started - self.allocated

    @property
    def to_end(self) -> float:
        return self.epilog_done - self.submitted

    @property
    def end_to_epilog(self) -> float:
        return self.epilog_done - self.ended

    @property
    def sbatch(self) -> float:
        return self.sbatch_exit - self.submitted


class BenchLab:
    """The lab and the ways of timing things on it."""

    def __init__(self, opts: Options) -> None:
        self.lab = Lab(LAB_ROOT, source=opts.source, slot=LAB_SLOT, broker=True)
        self.plugin_line = ""
        self._log_offsets: dict[Path, int] = {}
        self._epilogs: dict[int, float] = {}
        self._allocations: dict[int, float] = {}

    def up(self) -> None:
        self.lab.up()
        # slurmctld schedules at most every sched_min_interval (2 s by default): a job
        # submitted just after a pass waits up to 2 s for the next, which would measure
        # the scheduler's phase, not the job. Schedule on every submission instead.
        conf = self.lab.slurm_conf.read_text().replace(
            "SchedulerParameters=batch_sched_delay=0",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0")
        self.lab.slurm_conf.write_text(conf)
        self.lab.scontrol("reconfigure")
        self.lab.wait_idle(self.lab.nodes)
        # production-like: info level in the plugin (the lab's default is debug)
        self.plugin_line = self.lab.plugstack_line().replace("log_level=debug", "log_level=info")
        self.plugstack(True)

    def down(self) -> None:
        self.lab.down(quiet=True)

    def plugstack(self, plugin: bool, extra: str = "") -> None:
        """Register the plugin, or leave plugstack.conf empty (sbatch, srun, slurmd and
        slurmstepd read it anew for every command, prolog and step)."""
        text = (self.plugin_line + extra + "\n") if plugin else "# empty: no SPANK plugin\n"
        (self.lab.etc / "plugstack.conf").write_text(text)

    # ------------------------------------------------------------------ clocks
    def wall(self, argv: list[str]) -> float:
        """Seconds one command takes, run as the job user."""
        t0 = time.perf_counter()
        proc = self.lab.as_user(argv)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        return elapsed

    def _scan_logs(self) -> None:
        """New lines of slurmd's and slurmctld's logs: epilog ends and allocations."""
        logs = self.lab.root / "log"
        for log in [*sorted(logs.glob("slurmd-*.log")), logs / "slurmctld.log"]:
            if not log.exists():
                continue
            offset = self._log_offsets.get(log, 0)
            with log.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # a half-written line waits for the next scan
            self._log_offsets[log] = offset + end
            for line in chunk[:end].decode(errors="replace").splitlines():
                for pattern, into in ((EPILOG_DONE, self._epilogs),
                                      (ALLOCATED, self._allocations)):
                    m = pattern.match(line)
                    if m:
                        stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                        into[int(m.group(2))] = stamp.timestamp()

    def epilog_done(self, job_id: int, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._scan_logs()
            if job_id in self._epilogs:
                return self._epilogs[job_id]
            time.sleep(0.01)
        raise RuntimeError(f"job {job_id}: no 'completed epilog' in the slurmd logs after "
                           f"{timeout:.0f} s\n" + self.lab.tail_logs())

    def wait_nodes_idle(self, timeout: float = 30.0) -> None:
        """Until slurmctld itself sees every node idle. slurmd logs the end of an epilog
        a moment before slurmctld hears of it; a job submitted in between waits for the
        scheduler's next pass (up to ~1 s here), time that is Slurm's, not the job's."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.lab.node_states()
            if states and all(s == "idle" for s in states.values()):
                return
            time.sleep(0.01)
        raise RuntimeError(f"nodes not idle after {timeout:.0f} s: {self.lab.node_states()}")

    def pytrace_mark(self) -> int:
        return len(self.lab.pytrace.read_text().splitlines())

    def startups_since(self, mark: int) -> list[tuple[str, float]]:
        """(callback, ms) of every Python start-up the shim recorded since ``mark``."""
        lines = self.lab.pytrace.read_text().splitlines()[mark:]
        out = []
        for line in lines:
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            out.append((fields["cb"], float(fields["ms"])))
        return out

    def job(self, *args: str) -> JobTimes:
        """Submit the timing job (as the job user) on an idle cluster and wait until its
        epilog is done."""
        self.wait_nodes_idle()
        mark = self.pytrace_mark()
        out = self.lab.jobs_dir / "bench-%j.out"
        t0 = time.time()
        proc = self.lab.as_user(["sbatch", "--parsable", "-o", str(out), *args],
                                input=JOB_SCRIPT)
        t1 = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {proc.stderr.strip()}")
        job_id = int(proc.stdout.strip().split(";")[0])
        done = self.epilog_done(job_id)
        text = (self.lab.jobs_dir / f"bench-{job_id}.out").read_text()
        marks = {line.split()[0]: line.split()[1:] for line in text.splitlines()
                 if line.split() and line.split()[0] in ("start", "rss", "step", "end")}
        if set(marks) != {"start", "rss", "step", "end"}:
            raise RuntimeError(f"job {job_id} ({' '.join(args)}) did not run as planned:\n"
                               f"{text}\n{self.lab.job(job_id)}")
        rss = [int(v) for v in marks["rss"]]
        return JobTimes(t0, t1, float(marks["start"][0]), float(marks["step"][0]),
                        float(marks["end"][0]), done, rss[0], rss[1], rss[2],
                        self.startups_since(mark), self._allocations.get(job_id, t0))


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def _kib_to_mib(values: list[int]) -> list[float]:
    return [v / 1024 for v in values]


def _no_difference(diff: Summary, baseline: Summary) -> bool:
    """Issue 8's "no measurable difference": under 1 ms or under 2 percent."""
    return abs(diff.median) < max(1.0, 0.02 * baseline.median)


def _row(what: str, base: list[float], with_: list[float], target: str, met: bool | None,
         unit: str = "ms") -> Row:
    b, w = Summary.of(base), Summary.of(with_)
    d = paired_difference(with_, base)
    return Row(what, b.text(unit), w.text(unit),
               f"{d.median:+.1f} {unit} (IQR {d.p25:+.1f} to {d.p75:+.1f})", target, met)


# ---------------------------------------------------------------------- item 1
def without_qpu(bench: BenchLab, reps: int) -> Section:
    srun: dict[bool, list[float]] = {True: [], False: []}
    submit: dict[bool, list[float]] = {True: [], False: []}
    help_: dict[bool, list[float]] = {True: [], False: []}
    mark = bench.pytrace_mark()
    for k in range(reps):
        for plugin in ((True, False) if k % 2 == 0 else (False, True)):  # ABBA: no order bias
            bench.plugstack(plugin)
            srun[plugin].append(bench.wall(["srun", "-N1", "true"]))
            # a few ms each: the median of 15 per round, or process start-up noise
            # (runuser, fork, exec) would hide a 1 ms difference
            help_[plugin].append(statistics.median(
                bench.wall(["sbatch", "--help"]) for _ in range(15)))
            submit[plugin].append(bench.job().to_end)
    startups = bench.startups_since(mark)
    bench.plugstack(True)
    rows = []
    for what, data in (("`srun -N1 true`", srun), ("`sbatch` submit to end (epilog done)",
                                                   submit), ("`sbatch --help`", help_)):
        base, with_ = _ms(data[False]), _ms(data[True])
        diff = paired_difference(with_, base)
        rows.append(_row(what, base, with_, "< 1 ms or 2 %",
                         _no_difference(diff, Summary.of(base))))
    rows.append(Row("Python start-ups in these jobs and commands", "0", str(len(startups)),
                    f"{len(startups):+d}", "0", not startups))
    jobs = 3 * reps
    return Section("slurm-nojob", "1. Jobs without --qpu: plugin registered vs empty "
                   "plugstack.conf", rows, notes=[
                       f"{reps} rounds, each running `srun true`, `sbatch --help` (15 "
                       "times: a round's value is their median) and a "
                       "`sbatch` job with and without the plugin (ABBA order). The job is "
                       "the timing script of item 2 (a `date`, an `srun true` step, a "
                       f"`date`); {jobs * 2} commands and jobs in all. Python start-ups: "
                       "lines the shim wrote to its `pytrace=` file (one per interpreter "
                       "it starts) while these ran.",
                       "Why no difference is expected: the shim (C) answers every callback "
                       "of a job without --qpu itself (option not given: no Python; "
                       "prolog/epilog: `spank_option_getopt`; steps: one `stat()` of the "
                       "lease file). What remains is Slurm's dlopen() of one small .so."])


# ---------------------------------------------------------------------- item 2 and 6
@dataclass
class QpuRuns:
    qpu: str
    plain: list[JobTimes] = field(default_factory=list)
    with_qpu: list[JobTimes] = field(default_factory=list)


def with_qpu(bench: BenchLab, reps: int) -> list[QpuRuns]:
    runs = [QpuRuns(q) for q in QPUS]
    bench.plugstack(True)
    for k in range(reps):
        for r in runs:
            pair = [("plain", ()), ("with", (f"--qpu={r.qpu}",))]
            for kind, args in (pair if k % 2 == 0 else pair[::-1]):
                times = bench.job(*args)
                (r.plain if kind == "plain" else r.with_qpu).append(times)
    return runs


def _startup_table(jobs: list[JobTimes]) -> tuple[str, str]:
    """("4: option, job_prolog, ...", "median ms per start-up")."""
    per_job = Counter(cb for j in jobs for cb, _ in j.startups)
    n = len(jobs)
    listing = ", ".join(f"{cb} {count / n:g}" for cb, count in sorted(per_job.items()))
    ms = [m for j in jobs for _, m in j.startups]
    return (f"{sum(per_job.values()) / n:g} ({listing})",
            Summary.of(ms).text() if ms else "-")


def qpu_section(runs: list[QpuRuns], profile: str) -> Section:
    rows: list[Row] = []
    notes: list[str] = []
    for r in runs:
        p, w = r.plain, r.with_qpu
        rows += [
            _row(f"{r.qpu}: submit to task start", _ms([j.to_start for j in p]),
                 _ms([j.to_start for j in w]), "< 25 ms added",
                 paired_difference(_ms([j.to_start for j in w]),
                                   _ms([j.to_start for j in p])).median < 25),
            _row(f"{r.qpu}: allocation to task start (prolog, step launch)",
                 _ms([j.allocation_to_start for j in p]),
                 _ms([j.allocation_to_start for j in w]), "< 25 ms added",
                 paired_difference(_ms([j.allocation_to_start for j in w]),
                                   _ms([j.allocation_to_start for j in p])).median < 25),
            _row(f"{r.qpu}: task end to epilog done", _ms([j.end_to_epilog for j in p]),
                 _ms([j.end_to_epilog for j in w]), "< 25 ms added",
                 paired_difference(_ms([j.end_to_epilog for j in w]),
                                   _ms([j.end_to_epilog for j in p])).median < 25),
            _row(f"{r.qpu}: `sbatch` (its --qpu validation)", _ms([j.sbatch for j in p]),
                 _ms([j.sbatch for j in w]), "< 15 ms added",
                 paired_difference(_ms([j.sbatch for j in w]),
                                   _ms([j.sbatch for j in p])).median < 15),
            _row(f"{r.qpu}: an `srun -n1 true` step in the job", _ms([j.step for j in p]),
                 _ms([j.step for j in w]), "", None),
        ]
        count, ms = _startup_table(w)
        plain_count = sum(len(j.startups) for j in p)
        rows.append(Row(f"{r.qpu}: Python start-ups per job (each start-up: {ms})",
                        str(plain_count), count, "", "counted", None))
    notes.append(
        f"{len(runs[0].plain)} pairs per QPU, the job with and without --qpu back to back "
        "(alternating which goes first). Broker mode (the production default): the "
        "prolog asks the broker, which acquires from the emulator's QPU with no added "
        "latency; the epilog asks it to release. `sim_a` is the built-in local simulator, "
        "`ibm_manila` the emulated IBM Quantum cloud QPU (a session is opened and closed). "
        "Submit to task start includes slurmctld's scheduling pass, which here allocates "
        "on a ~1 s tick whatever the job (its phase differs between the two sides); "
        "allocation to task start (slurmctld's `sched: Allocate` stamp) is the part the "
        "plugin adds to, with the sbatch row.")
    notes.append(
        "Where the Python start-ups come from, per --qpu job: `option` in sbatch (checks "
        "the names before anything is queued; `submit_env` runs in the same interpreter), "
        "`job_prolog` on the node (acquire), `init_post_opt` in the batch step's slurmstepd "
        "(loads the lease; `task_init` runs in the same interpreter after the fork), one "
        "more `init_post_opt` for every `srun` step, and `job_epilog` (release). A "
        "start-up is CPython's initialisation plus importing the handler's modules; the "
        "profile below says where the rest goes.")
    return Section("slurm-qpu", "2. Jobs with --qpu vs the same job without", rows, notes,
                   profile)


def memory_section(runs: list[QpuRuns]) -> Section:
    rows = []
    for r in runs:
        for what, attr in (("the batch task (bash)", "task_rss_kb"),
                           ("its slurmstepd, resident", "stepd_rss_kb"),
                           ("its slurmstepd, peak", "stepd_hwm_kb")):
            base = _kib_to_mib([getattr(j, attr) for j in r.plain])
            with_ = _kib_to_mib([getattr(j, attr) for j in r.with_qpu])
            rows.append(_row(f"{r.qpu}: {what}", base, with_, "", None, unit="MiB"))
    return Section("slurm-memory", "6b. Memory of a job's processes with and without --qpu",
                   rows, notes=[
                       "VmRSS/VmHWM from /proc, read by the job script about itself and "
                       "its parent slurmstepd. The task's own size does not change: Python "
                       "lives in slurmstepd (the shim starts it there before the fork) and "
                       "the task exec()s its program. The slurmstepd of a --qpu step carries "
                       "the interpreter and the handler's modules for the step's lifetime."])


# ---------------------------------------------------------------------- profile
def profile_pass(bench: BenchLab, opts: Options, jobs: int) -> str:
    """A few --qpu jobs with profile=DIR: where each callback's time goes. Not timed (the
    profiler slows everything); run after the timed rounds."""
    directory = LAB_ROOT / "profile"
    directory.mkdir(exist_ok=True)
    directory.chmod(0o1777)  # sbatch's option callback runs as the user
    for old in directory.glob("*.prof"):
        old.unlink()
    bench.plugstack(True, f" profile={directory}")
    mark = bench.pytrace_mark()
    try:
        for _ in range(jobs):
            bench.job(f"--qpu={QPUS[1]}")
    finally:
        bench.plugstack(True)
    startup: dict[str, list[float]] = {}
    for cb, ms in bench.startups_since(mark):
        startup.setdefault(cb, []).append(ms)
    lines = [f"Per callback, {jobs} jobs on {QPUS[1]} (cProfile of the handler; start-up = "
             "interpreter + imports, from pytrace=):"]
    for prof_cb in sorted({p.name.split("-")[0] for p in directory.glob("*.prof")}):
        files = sorted(directory.glob(f"{prof_cb}-*.prof"))
        stats = pstats.Stats(*(str(f) for f in files))
        total = stats.total_tt * 1000 / len(files)  # type: ignore[attr-defined]
        st = startup.get(prof_cb)
        head = f"  {prof_cb:<14} handler {total:6.1f} ms"
        if st:
            head += f"   start-up {Summary.of(st).median:5.1f} ms"
        lines.append(head)
        lines += _top_functions(stats, len(files))
    lines += ["", "Import time of each path's modules (python -X importtime, top entries):"]
    lines += _import_times(bench.lab.venv_bin / "python")
    return "\n".join(lines)


def _top_functions(stats: pstats.Stats, calls: int, top: int = 4) -> list[str]:
    """The slowest functions by cumulative time (ours and the stdlib's)."""
    rows = []
    for (file, line, func), (_cc, _nc, _tt, ct, _callers) in \
            stats.stats.items():  # type: ignore[attr-defined]
        if func.startswith("<") or "_bootstrap" in file:
            continue
        short = file.split("site-packages/")[-1].replace("/usr/lib/python3.11/", "")
        rows.append((ct * 1000 / calls, f"{short}:{line}({func})"))
    rows.sort(reverse=True)
    # skip the handler entry points themselves (they equal the total)
    return [f"      {ms:6.1f} ms  {where}" for ms, where in rows[2:2 + top]]


IMPORT_PATHS = {
    "sbatch --qpu (option)": "slurm_qpu.spank, slurm_qpu.spank.submit, slurm_qpu.log",
    "prolog/epilog (broker)": "slurm_qpu.spank, slurm_qpu.spank.jobscript, slurm_qpu.log",
    "step (init_post_opt)": "slurm_qpu.spank, slurm_qpu.spank.task, slurm_qpu.log",
}


def _import_times(python: Path) -> list[str]:
    out = []
    for path, modules in IMPORT_PATHS.items():
        proc = subprocess.run([str(python), "-I", "-X", "importtime", "-c",
                               f"import {modules}"], capture_output=True, text=True,
                              check=False)
        entries = []  # (cumulative us, depth, module)
        for line in proc.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                name = parts[2][1:]  # one space after the bar; two more per level
                depth = (len(name) - len(name.lstrip())) // 2
                entries.append((int(parts[1]), depth, name.strip()))
        total = sum(us for us, depth, _ in entries if depth == 0)
        top = sorted((e for e in entries if e[1] <= 1), reverse=True)[:5]
        out.append(f"  {path:<24} {total / 1000:5.1f} ms: " + ", ".join(
            f"{name} {us / 1000:.1f}" for us, _, name in top))
    return out


def python_floor(python: Path, reps: int) -> Row:
    """What one interpreter start costs with nothing imported: the floor of a start-up."""
    bare: list[float] = []
    handler: list[float] = []
    for _ in range(reps):
        for argv, into in (([str(python), "-I", "-S", "-c", "pass"], bare),
                           ([str(python), "-I", "-c", "import slurm_qpu.spank, "
                             "slurm_qpu.spank.task, slurm_qpu.log"], handler)):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True)
            into.append((time.perf_counter() - t0) * 1000)
    return _row("a python3 process: bare (-S) vs a step's imports", bare, handler, "", None)


def run(opts: Options) -> list[Section]:
    bench = BenchLab(opts)
    bench.up()
    try:
        nojob = without_qpu(bench, opts.reps(10, 2))
        runs = with_qpu(bench, opts.reps(12, 2))
        profile = profile_pass(bench, opts, opts.reps(3, 1))
        floor = python_floor(bench.lab.venv_bin / "python", opts.reps(15, 3))
    finally:
        bench.down()
    qpu = qpu_section(runs, profile)
    qpu.rows.append(floor)
    (opts.workdir / "slurm-jobs.json").write_text(json.dumps(
        {r.qpu: {"plain": [vars(j) for j in r.plain], "with": [vars(j) for j in r.with_qpu]}
         for r in runs}, indent=1))
    return [nojob, qpu, memory_section(runs)]
