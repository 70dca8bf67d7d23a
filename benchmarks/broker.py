"""Items 3 and 6 (the broker's memory) of issue 8: ``slurm-qpu broker`` under load.

3. Lease cycles (one acquire and one release, as a job's prolog and epilog ask for them)
   with 1, 10 and 100 jobs at once, each job starting its next cycle as soon as its last
   one ended (the broker's capacity): cycles per second, p50 and p99 of the cycle, of the
   acquire and of the release. Then 100 jobs that each hold their lease between acquire
   and release, paced so that the cluster starts and ends a fixed number of jobs per
   second (the target's 500/s, and 100/s), as a cluster does: the latency a prolog sees.
   The baseline, interleaved round by round with the lease runs and driven the same way,
   is the floor every node request pays: two MUNGE-authenticated requests that do no
   lease work (``GET /v1/leases`` with nothing leased), on fresh connections like the
   lease requests. The difference is what the lease logic adds (journal, locks, the
   simulated vendor, the job's environment).
6. The broker's resident size idle against the same broker holding 1,000 leases.

Everything is real except the vendor: the broker is its own process, started with its
production defaults (``slurm-qpu broker``: SQLite journal with synchronous=FULL, logging
at info, an audit log), authenticating real MUNGE credentials made by the node-side
client (``BrokerClient``, the code the prolog and epilog run). The QPUs are local
simulators, which grant and release without any I/O, so the numbers are the broker's.

The load generator is a pool of processes, each running one thread per job; every
request opens a fresh connection, as every prolog and epilog is a new process. The
generator shares the two cores with the broker: its CPU time is measured and reported,
so that the reader sees who the bottleneck was.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import processes
from benchmarks.options import Options
from benchmarks.profiled import profile_tables
from benchmarks.report import Row, Section
from benchmarks.stats import Summary, percentile
from slurm_qpu.broker.client import BrokerClient, BrokerError

CONCURRENCY = (1, 10, 100)
PACED_JOBS = 100
PACED_RATES = (500.0, 100.0)  # lease cycles per second the paced jobs start
WORKERS = 2  # load-generator processes: one per core (each has one thread per job)
QPU = "sim_a"
JOB_STRIDE = 1_000_000  # job ids per job thread and round: never two leases on one id
TARGET_RATE = 500.0  # lease cycles per second with 100 jobs at once (issue 8)
TARGET_P99_MS = 50.0
MEMORY_LEASES = 1000
WARMUP = 0.3  # seconds of each round not counted
T = TypeVar("T")


def resources() -> list[dict[str, Any]]:
    """Two local simulators (no ledger: a grant and a release cost the vendor nothing)."""
    return [{"name": name, "type": "local-simulator", "environment": {}}
            for name in ("sim_a", "sim_b")]


def node_client(url: str) -> BrokerClient:
    """What a prolog or epilog makes: a new client (a new connection) per request."""
    return BrokerClient(url, deadline=10.0)


def munged_pid() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/run/munge/munged.pid").read_text().strip())
    return None


def cpu_seconds(pid: int | None) -> float:
    return processes.cpu_seconds(pid) if pid is not None else 0.0


def active_leases(url: str) -> list[dict[str, Any]]:
    with contextlib.closing(node_client(url)) as client:
        answer: list[dict[str, Any]] = client.leases()
        return answer


@contextlib.contextmanager
def broker_process(workdir: Path, *, profile: Path | None = None
                   ) -> Iterator[tuple[processes.Process, str]]:
    """``slurm-qpu broker`` on the local simulators (benchmarks/processes.py: production
    defaults; the reaper's squeue is /bin/false, so it never sees a real Slurm)."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc, url = processes.broker(workdir, resources(), profile=profile)
    proc.start()
    try:
        yield proc, url
    finally:
        proc.stop()


# ---------------------------------------------------------------------- load generator

@dataclass(frozen=True)
class Task:
    """One load-generator process's share of a round."""

    url: str
    kind: str  # "lease": acquire + release; "floor": two authenticated no-op requests
    threads: int
    first_job: int
    window: tuple[float, float]  # time.time(): cycles are counted inside it
    start_at: float
    period: float = 0.0  # paced: a job starts a cycle every `period` s (0: back to back)
    first_index: int = 0  # of this process's first job among all the round's jobs
    jobs: int = 1  # all the round's jobs (the paced ones are spread over the period)


@dataclass
class Cycle:
    began: float  # time.time() when the acquire was sent
    ended: float  # ... and when the release was answered
    first_ms: float  # acquire (or the first no-op request)
    second_ms: float  # release

    @property
    def ms(self) -> float:
        """The cycle's requests (a paced job's holding time not included)."""
        return self.first_ms + self.second_ms


@dataclass
class WorkerResult:
    cycles: list[Cycle] = field(default_factory=list)
    cpu_seconds: float = 0.0  # this process's CPU time inside the window (all threads)
    errors: list[str] = field(default_factory=list)


def _request(kind: str, url: str, job: int, first: bool) -> float:
    """One request of a cycle (a fresh client, as a prolog or an epilog); its ms."""
    t0 = time.perf_counter()
    with contextlib.closing(node_client(url)) as client:
        if kind != "lease":
            client.leases()
        elif first:
            answer = client.acquire(job, qpus=QPU, user="bench", uid=1000, time_limit=3600)
            if answer.get("state") != "acquired":
                raise RuntimeError(f"job {job}: lease {answer.get('state')}: "
                                   f"{answer.get('error')}")
        else:
            client.release(job)
    return (time.perf_counter() - t0) * 1000


def _worker(task: Task) -> WorkerResult:
    """Runs in a load-generator process: ``task.threads`` jobs, each cycling until the
    window closes (the last cycle of each finishes after it)."""
    result = WorkerResult()
    lock = threading.Lock()
    w0, w1 = task.window
    cpu_marks: list[float] = []

    def cycle(job: int, hold_until: float | None) -> None:
        """One cycle of ``job``; a failed one is counted (and its lease, if the broker
        granted it all the same, released) and the job goes on with the next."""
        began = time.time()
        try:
            first = _request(task.kind, task.url, job, True)
            if hold_until is not None:
                time.sleep(max(0.0, hold_until - time.time()))  # late: no sleep
            second = _request(task.kind, task.url, job, False)
        except Exception as exc:
            with lock:
                result.errors.append(f"{type(exc).__name__}: {exc}")
            if "MUNGE" not in str(exc):  # without munged the round is done again
                with contextlib.suppress(Exception):
                    _request(task.kind, task.url, job, False)
            return
        with lock:
            result.cycles.append(Cycle(began, time.time(), first, second))

    def back_to_back(index: int) -> None:
        job = task.first_job + index * JOB_STRIDE
        while time.time() < w1:
            job += 1
            cycle(job, None)

    def paced(index: int) -> None:
        """Acquire, hold until the next cycle is due, release, acquire the next job's
        lease at once: the job holds a lease almost all the time, as a running job does,
        and its cycles start every ``period`` (spread over the jobs: a steady rate; a
        late cycle starts at once, with no catching up)."""
        job = task.first_job + index * JOB_STRIDE
        due = task.start_at + task.period * (task.first_index + index) / task.jobs
        time.sleep(max(0.0, due - time.time()))
        while due < w1:
            job += 1
            due += task.period
            cycle(job, due)

    def cpu_marker() -> None:
        for mark in (w0, w1):
            time.sleep(max(0.0, mark - time.time()))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu_marks.append(usage.ru_utime + usage.ru_stime)

    time.sleep(max(0.0, task.start_at - time.time()))
    work = paced if task.period else back_to_back
    threads = [threading.Thread(target=work, args=(k,)) for k in range(task.threads)]
    threads.append(threading.Thread(target=cpu_marker))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.cpu_seconds = cpu_marks[1] - cpu_marks[0]
    return result


@dataclass
class RoundResult:
    kind: str
    jobs: int
    seconds: float
    cycles: list[Cycle]  # begun inside the window
    broker_cpu: float  # seconds of CPU inside the window
    munged_cpu: float
    client_cpu: float
    errors: list[str]
    others_cpu: float = 0.0  # the processes named in ``others`` (a database, HAProxy)

    @property
    def rate(self) -> float:
        """Cycles begun per second of the window (a steady state: as many end)."""
        return len(self.cycles) / self.seconds


class LoadGenerator:
    """A pool of ``WORKERS`` processes (spawned, not forked: the benchmark process may
    have threads) that stay up for every round."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = workers
        self.pool: multiprocessing.pool.Pool = \
            multiprocessing.get_context("spawn").Pool(workers)
        self.next_job = 1

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def round(self, url: str, kind: str, jobs: int, seconds: float,
              broker_pid: int | Sequence[int], period: float = 0.0,
              others: Sequence[int] = ()) -> RoundResult:
        """``jobs`` jobs for ``seconds`` (after WARMUP), back to back or ``period``-paced;
        the broker's (or brokers'), munged's, ``others``' and the generator's CPU time
        inside the window."""
        brokers = [broker_pid] if isinstance(broker_pid, int) else list(broker_pid)

        def cpu() -> tuple[float, float, float]:
            return (sum(map(cpu_seconds, brokers)), cpu_seconds(munged),
                    sum(map(cpu_seconds, others)))

        procs = min(self.workers, jobs)
        start_at = time.time() + 0.2  # every process has its task by then
        window = (start_at + WARMUP, start_at + WARMUP + seconds)
        tasks, first_index = [], 0
        for k in range(procs):
            threads = jobs // procs + (1 if k < jobs % procs else 0)
            tasks.append(Task(url, kind, threads, self.next_job, window, start_at, period,
                              first_index, jobs))
            self.next_job += threads * JOB_STRIDE
            first_index += threads
        pending = self.pool.map_async(_worker, tasks, chunksize=1)
        munged = munged_pid()
        time.sleep(max(0.0, window[0] - time.time()))
        cpu0 = cpu()
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1 = cpu()
        results: list[WorkerResult] = pending.get(timeout=seconds + 300)
        errors = [e for r in results for e in r.errors]
        if any("MUNGE" in e for e in errors):  # munged went away: no round to count
            raise RuntimeError(f"{kind} round with {jobs} jobs: {errors[0]}")
        # every cycle begun in the window, however long it took: dropping the ones that
        # end after it would bias the latencies towards fast cycles, and counting the
        # ones that end in it would miss a paced job's cycles that hold their lease past it
        cycles = [c for r in results for c in r.cycles if window[0] <= c.began < window[1]]
        return RoundResult(kind, jobs, seconds, cycles, cpu1[0] - cpu0[0],
                           cpu1[1] - cpu0[1], sum(r.cpu_seconds for r in results), errors,
                           cpu1[2] - cpu0[2])


# ---------------------------------------------------------------------- item 3

@dataclass
class Level:
    """Every round of one load, lease and floor interleaved."""

    jobs: int
    rate: float | None = None  # paced: cycles per second offered; None: back to back
    lease: list[RoundResult] = field(default_factory=list)
    floor: list[RoundResult] = field(default_factory=list)
    left_active: int = 0  # leases still active after the level (0 expected)

    @property
    def name(self) -> str:
        if self.rate is None:
            return f"{self.jobs} job{'s' if self.jobs > 1 else ''} at once, back to back"
        return f"{self.jobs} jobs holding leases, {self.rate:.0f} cycles/s offered"


def again_without_munge(work: Callable[[], T], ensure_munged: Callable[[], object]) -> T:
    """``work()``, done again (twice at most) when it failed for want of munged: on a
    shared machine another program may stop the munged it started (a lab going down)."""
    for attempt in range(3):
        try:
            return work()
        except (RuntimeError, BrokerError) as exc:
            if "MUNGE" not in str(exc) or attempt == 2:
                raise
            ensure_munged()
    raise AssertionError("unreachable")


def measure(gen: LoadGenerator, url: str, pid: int, levels: list[Level], rounds: int,
            seconds: float, ensure_munged: Callable[[], object] = lambda: None
            ) -> list[Level]:
    for level in levels:
        period = level.jobs / level.rate if level.rate else 0.0
        for k in range(rounds):
            order = ("floor", "lease") if k % 2 == 0 else ("lease", "floor")  # ABBA
            for kind in order:
                r = again_without_munge(
                    partial(gen.round, url, kind, level.jobs, seconds, pid, period),
                    ensure_munged)
                (level.lease if kind == "lease" else level.floor).append(r)
        level.left_active = len(active_leases(url))
    return levels


def _latency(values: list[float]) -> str:
    return (f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms "
            f"(n={len(values)})")


def _rate_text(rate: Summary, rounds: list[RoundResult]) -> str:
    failed = sum(len(r.errors) for r in rounds)
    return (f"{rate.median:.0f}/s (rounds {rate.low:.0f}-{rate.high:.0f})"
            + (f", **{failed} failed**" if failed else ""))


def _rates(rounds: list[RoundResult]) -> Summary:
    return Summary.of([r.rate for r in rounds])


def _cores(rounds: list[RoundResult], what: str) -> float:
    """CPU used inside the windows, in cores (1.0 = one core busy all the time)."""
    return float(sum(getattr(r, what) for r in rounds)) / sum(r.seconds for r in rounds)


def level_rows(level: Level) -> list[Row]:
    rows = []
    lease, floor = _rates(level.lease), _rates(level.floor)
    ratios = Summary.of([a.rate / b.rate for a, b in zip(level.lease, level.floor,
                                                          strict=True)])
    capacity = level.rate is None and level.jobs == max(CONCURRENCY)
    paced_target = level.rate == TARGET_RATE
    rows.append(Row(
        f"{level.name}: cycles/s", _rate_text(floor, level.floor),
        _rate_text(lease, level.lease), f"x{ratios.median:.2f} of the floor",
        f"≥ {TARGET_RATE:.0f}/s" if capacity else "",
        lease.median >= TARGET_RATE if capacity else None))
    lease_ms = [c.ms for r in level.lease for c in r.cycles]
    floor_ms = [c.ms for r in level.floor for c in r.cycles]
    p99 = percentile(lease_ms, 99)
    rows.append(Row(
        f"{level.name}: cycle latency (acquire + release)", _latency(floor_ms),
        _latency(lease_ms), f"p50 {percentile(lease_ms, 50) - percentile(floor_ms, 50):+.1f}"
        f" ms, p99 {p99 - percentile(floor_ms, 99):+.1f} ms",
        f"p99 < {TARGET_P99_MS:.0f} ms" if paced_target else "",
        p99 < TARGET_P99_MS if paced_target else None))
    one = [c.first_ms for r in level.floor for c in r.cycles] + \
        [c.second_ms for r in level.floor for c in r.cycles]
    for what, attr in (("acquire", "first_ms"), ("release", "second_ms")):
        values = [getattr(c, attr) for r in level.lease for c in r.cycles]
        rows.append(Row(f"{level.name}: {what} alone", _latency(one), _latency(values),
                        f"p50 {percentile(values, 50) - percentile(one, 50):+.1f} ms"))
    return rows


def cpu_note(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        parts.append(f"{level.name}: broker {_cores(level.lease, 'broker_cpu'):.2f} "
                     f"(floor {_cores(level.floor, 'broker_cpu'):.2f}), munged "
                     f"{_cores(level.lease, 'munged_cpu'):.2f}, load generator "
                     f"{_cores(level.lease, 'client_cpu'):.2f}; broker "
                     f"{1000 * sum(r.broker_cpu for r in level.lease) / max(1, sum(len(r.cycles) for r in level.lease)):.1f}"  # noqa: E501
                     " ms of CPU per lease cycle")
    return ("CPU used during the lease rounds, in cores (2 available): " + "; ".join(parts)
            + ". The broker is one CPython process: its threads share one interpreter "
            "lock, so it cannot use much more than one core; when it is near 1.0 with the "
            "generator well below the remaining core, the broker is the bottleneck, not "
            "the load.")


def lease_section(levels: list[Level], rounds: str, seconds: float, profile: str) -> Section:
    rows = [row for level in levels for row in level_rows(level)]
    leftover = sum(level.left_active for level in levels)
    errors = [e for level in levels for r in [*level.lease, *level.floor] for e in r.errors]
    notes = [
        f"{rounds} of {seconds:g} s per load and kind, lease and floor rounds "
        "interleaved (ABBA) on one broker process, after "
        f"{WARMUP:g} s of warm-up each. A job is a thread of the load generator ({WORKERS} "
        "processes); each cycle leases a new job id. Back to back: a job acquires, "
        "releases, and starts again at once (the broker's capacity; the latency is then "
        "the queue: by Little's law 100 jobs at 500 cycles/s wait 200 ms per cycle, so no "
        "broker meets a 50 ms p99 that way). Paced: each of the 100 jobs holds its lease "
        "until its next cycle is due, releases it and acquires the next, the cycles "
        "spread evenly, so about 100 leases are active and the cluster starts and ends the "
        "offered number of jobs per second: the latency a prolog or an epilog sees on a "
        "busy cluster; the targets are read as the capacity with 100 jobs at once (≥ "
        f"{TARGET_RATE:.0f}/s) and the p99 at that rate (< {TARGET_P99_MS:.0f} ms). "
        "Rates and latencies are those of the cycles begun inside a round's window (the "
        "last ones end after it). Floor: the same client "
        "making two MUNGE-authenticated `GET /v1/leases` (nothing leased), each on a "
        "fresh connection as the lease requests are: what any node request costs.",
        cpu_note(levels),
        "The broker ran with its production defaults (journal synchronous=FULL on the "
        "machine's disk, log level info, an audit line per request) except that the "
        "reaper's squeue is /bin/false with a 3,600 s interval (it ran once at start-up, "
        "before any lease, and reaped nothing: no Slurm here) and the vendor status "
        "watcher is off. The client sends the job's time limit; the production prolog "
        "does not, and the broker then asks `squeue` for it once per acquisition: a "
        "process and a slurmctld call per job, not measured here. Leases left active "
        f"after all rounds: {leftover}.",
    ]
    if errors:
        notes.append(f"{len(errors)} cycle(s) failed (not in the latencies; the job went on "
                     f"with its next cycle); the first: {errors[0]}")
    return Section("broker", "3. The broker: lease cycles with 1, 10 and 100 jobs at once",
                   rows, notes, profile)


# ---------------------------------------------------------------------- item 6

@dataclass
class MemorySample:
    idle: dict[str, int]
    loaded: dict[str, int]
    released: dict[str, int]
    leases: int
    active_when_loaded: int
    active_after: int
    exit_status: int | None  # the broker's, after SIGTERM (0: a clean stop)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def measure_memory(workdir: Path, leases: int, threads: int = 10) -> MemorySample:
    """A fresh broker: idle (after one warm-up cycle, so that the first request's lazy
    imports do not count as the leases'), holding ``leases`` leases, and after releasing
    them all."""
    jobs = list(range(2, 2 + leases))

    def each(url: str, first: bool) -> None:
        def run(part: list[int]) -> None:
            for job in part:
                _request("lease", url, job, first)
        ts = [threading.Thread(target=run, args=(jobs[k::threads],))
              for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    with broker_process(workdir) as (proc, url):
        _request("lease", url, 1, True)
        _request("lease", url, 1, False)
        idle = memory_kib(proc.pid)
        each(url, True)
        active = len(active_leases(url))
        loaded = memory_kib(proc.pid)
        each(url, False)
        after = len(active_leases(url))
        released = memory_kib(proc.pid)
    return MemorySample(idle, loaded, released, leases, active, after,
                        proc.proc.returncode if proc.proc else None)


def memory_section(samples: list[MemorySample]) -> Section:
    def row(what: str, base: list[int], with_: list[int], per_lease: bool) -> Row:
        b = Summary.of([v / 1024 for v in base])
        w = Summary.of([v / 1024 for v in with_])
        diff = Summary.of([(x - y) / 1024 for x, y in zip(with_, base, strict=True)])
        text = f"{diff.median:+.1f} MiB"
        if per_lease:
            text += f" ({diff.median * 1024 / samples[0].leases:+.1f} KiB per lease)"
        return Row(what, b.text("MiB"), w.text("MiB"), text)

    n = samples[0].leases
    idle_rss = [s.idle["VmRSS"] for s in samples]
    return Section("broker-memory", f"6a. The broker's memory: idle vs {n:,} active leases", [
        row(f"resident (VmRSS), {n:,} active leases", idle_rss,
            [s.loaded["VmRSS"] for s in samples], True),
        row(f"peak (VmHWM), up to {n:,} active leases", [s.idle["VmHWM"] for s in samples],
            [s.loaded["VmHWM"] for s in samples], True),
        row(f"resident after releasing all {n:,}", idle_rss,
            [s.released["VmRSS"] for s in samples], False),
    ], notes=[
        f"{len(samples)} fresh broker process(es); idle = after one lease cycle (the first "
        f"request's imports count as idle); then {n:,} jobs acquire a lease each (10 at a "
        "time), the sizes are read from /proc/PID/status, and all are released. Active "
        f"leases the broker listed: {samples[0].active_when_loaded} when loaded, "
        f"{max(s.active_after for s in samples)} after the releases. A lease lives in the "
        "SQLite journal, not in the broker's memory: what grows is SQLite's page cache (2 "
        "MiB at most by default), the request threads kept for the next connections and "
        "the allocator's arenas, which Python does not give back."])


# ---------------------------------------------------------------------- profile

def profile_lease_cycles(workdir: Path, gen: LoadGenerator, jobs: int,
                         seconds: float) -> str:
    """The broker under a CPU-time cProfile of its request threads
    (benchmarks/profiled.py), ``jobs`` jobs back to back: where its CPU goes. Not timed
    (the profiler slows everything)."""
    out = workdir / "broker.prof"
    with broker_process(workdir, profile=out) as (proc, url):
        r = gen.round(url, "lease", jobs, seconds, proc.pid)
    # the broker wrote its profile as it exited
    cpu, own, cumulative = profile_tables(
        str(out), 15, r"slurm_qpu|http/(client|server)|socketserver|logging|email|sqlite", 30)
    return "\n".join([
        f"CPU-time cProfile of the broker's request threads (benchmarks/profiled.py), "
        f"{jobs} jobs back to back for {seconds:g} s: {len(r.cycles)} lease cycles, "
        f"{cpu:.2f} s of CPU in all ({1000 * cpu / max(1, len(r.cycles)):.1f} ms per cycle, "
        "the profiler's own cost included).",
        "", "By own time:", *own, "", "Cumulative:", *cumulative])



# ---------------------------------------------------------------------- run

def run(opts: Options, *, concurrency: tuple[int, ...] = CONCURRENCY,
        paced_jobs: int = PACED_JOBS, paced_rates: tuple[float, ...] = PACED_RATES,
        seconds: float | None = None, memory_leases: int | None = None,
        profile: Callable[[bool], bool] = lambda missed: missed) -> list[Section]:
    """Item 3, its profile when a target is missed (``profile`` decides), item 6a. The
    keywords are for the smoke test (tiny loads)."""
    rounds, paced_rounds = opts.reps(3, 1), opts.reps(2, 1)
    seconds = seconds or (1.0 if opts.quick else 4.0)
    leases = memory_leases or (200 if opts.quick else MEMORY_LEASES)
    with contextlib.ExitStack() as stack:
        # munged as found, or started (and stopped at the end) like the lab does it
        def ensure_munged() -> object:
            return stack.enter_context(processes.Munged())

        ensure_munged()
        gen = stack.enter_context(LoadGenerator())
        with broker_process(opts.workdir / "broker") as (proc, url):
            levels = measure(gen, url, proc.pid, [Level(n) for n in concurrency], rounds,
                             seconds, ensure_munged)
            levels += measure(gen, url, proc.pid,
                              [Level(paced_jobs, rate) for rate in paced_rates],
                              paced_rounds, seconds, ensure_munged)
        missed = any(r.met is False for level in levels for r in level_rows(level))
        text = again_without_munge(partial(
            profile_lease_cycles, opts.workdir / "profile", gen, max(concurrency),
            min(seconds, 2.0) if opts.quick else 5.0), ensure_munged) if profile(missed) \
            else ""
        memory = [again_without_munge(
            partial(measure_memory, opts.workdir / f"memory-{k}", leases), ensure_munged)
            for k in range(opts.reps(3, 1))]
    return [lease_section(levels, f"{rounds} round(s) (paced: {paced_rounds})", seconds, text),
            memory_section(memory)]
