"""Item 5 of issue 19: what high availability costs a lease cycle. The same lease cycles
as item 3 (benchmarks/broker.py: an acquire and a release, each a fresh MUNGE-authenticated
connection, as a prolog and an epilog make them) against three set-ups, all up at once and
measured round by round in turn, so that each sees the same machine:

* one broker on its SQLite journal, reached directly: the default, and the baseline;
* one broker on a MariaDB journal, reached directly: what the database alone costs;
* two brokers on one MariaDB journal behind HAProxy (the shipped configuration,
  examples/haproxy/slurm-qpu-broker.cfg): the highly available set-up. HAProxy sends
  requests to the brokers in turn, so a job's acquire and its release are usually served
  by different brokers, which is what the shared journal is for.

Loads: 1, 10 and 100 jobs at once back to back (capacity), and 100 jobs holding leases at
100 cycles per second offered (the latency a prolog sees on a busy cluster).

Everything is real except the vendor (local simulators): MariaDB is Debian's mariadbd of
this run's own (benchmarks never touch a server another program runs), with its default
durability (every commit flushed to disk, as SQLite's synchronous=FULL); HAProxy is
Debian's. All of it shares the machine's two cores with the load generator: the CPU each
used is in the notes.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks import processes
from benchmarks.broker import (
    WARMUP,
    WORKERS,
    LoadGenerator,
    RoundResult,
    _cores,
    _latency,
    _rate_text,
    _rates,
    again_without_munge,
    resources,
)
from benchmarks.options import Options
from benchmarks.report import Row, Section
from benchmarks.stats import Summary, percentile

LOADS: tuple[tuple[int, float | None], ...] = ((1, None), (10, None), (100, None),
                                                (100, 100.0))
BASELINE = "one broker, SQLite"


@dataclass
class Setup:
    """One way of running the broker, up for the whole section."""

    name: str
    url: str  # where the nodes reach it
    brokers: list[int]  # PIDs of its broker processes
    others: list[int] = field(default_factory=list)  # its database and load balancer
    rounds: dict[str, list[RoundResult]] = field(default_factory=dict)  # by load name

    def left_active(self) -> int:
        from benchmarks.broker import active_leases

        return len(active_leases(self.url))


def load_name(jobs: int, rate: float | None) -> str:
    if rate is None:
        return f"{jobs} job{'s' if jobs > 1 else ''} at once, back to back"
    return f"{jobs} jobs holding leases, {rate:.0f} cycles/s offered"


def _healthy_twice(url: str) -> Callable[[], bool]:
    """HAProxy answers /v1/health from both brokers (two in a row: one from each)."""
    def check() -> bool:
        try:
            for _ in range(2):
                with urllib.request.urlopen(f"{url}/v1/health", timeout=1.0) as r:
                    if r.status != 200:
                        return False
        except OSError:
            return False
        return True
    return check


@contextlib.contextmanager
def setups(workdir: Path) -> Iterator[list[Setup]]:
    """The three set-ups, started (MariaDB first), stopped at the end by their PIDs."""
    from slurm_qpu_lab import haproxy
    from slurm_qpu_lab.mariadb import MariaDBServer

    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        def start(proc: processes.Process) -> processes.Process:
            proc.start()
            stack.callback(proc.stop)
            return proc

        # (a short path: the server's socket must fit a socket address)
        db = MariaDBServer(Path(f"/tmp/slurm-qpu-bench-mariadb-{id(workdir):x}"))
        db.start()
        stack.callback(db.stop)
        assert db.proc is not None
        sqlite_dir = workdir / "sqlite"
        sqlite_dir.mkdir(exist_ok=True)
        one, one_url = processes.broker(sqlite_dir, resources())
        maria_dir = workdir / "mariadb-one"
        maria_dir.mkdir(exist_ok=True)
        alone, alone_url = processes.broker(maria_dir, resources(),
                                            journal=db.create_database("bench_one"))
        pair_dir = workdir / "mariadb-two"
        pair_dir.mkdir(exist_ok=True)
        front_port = processes.free_port()
        front = f"http://127.0.0.1:{front_port}"
        shared = db.create_database("bench_two")
        pair = [processes.broker(pair_dir, resources(), journal=shared, name=name,
                                 public_url=front, extra=("--trusted-proxy", "127.0.0.1"))
                for name in ("broker1", "broker2")]
        for proc in (one, alone, *(p for p, _ in pair)):
            start(proc)
        cfg = pair_dir / "haproxy.cfg"
        cfg.write_text(haproxy.render(f"127.0.0.1:{front_port}",
                                      [(p.name, url.removeprefix("http://"))
                                       for p, url in pair]))
        lb = start(processes.Process("haproxy", pair_dir,
                                     [haproxy.ensure_installed(), "-db", "-f", str(cfg)],
                                     _healthy_twice(front)))
        yield [Setup(BASELINE, one_url, [one.pid]),
               Setup("one broker, MariaDB", alone_url, [alone.pid], [db.proc.pid]),
               Setup("two brokers, MariaDB, HAProxy", front, [p.pid for p, _ in pair],
                     [db.proc.pid, lb.pid])]


def measure(gen: LoadGenerator, ups: list[Setup], loads: tuple[tuple[int, float | None], ...],
            rounds: int, seconds: float,
            ensure_munged: Callable[[], object] = lambda: None) -> None:
    """Lease rounds of every load on every set-up, the set-ups' order reversed every other
    round (ABBA)."""
    for jobs, rate in loads:
        name = load_name(jobs, rate)
        period = jobs / rate if rate else 0.0
        for k in range(rounds):
            for setup in (ups if k % 2 == 0 else ups[::-1]):
                r = again_without_munge(partial(
                    gen.round, setup.url, "lease", jobs, seconds, setup.brokers, period,
                    setup.others), ensure_munged)
                setup.rounds.setdefault(name, []).append(r)


def rows(ups: list[Setup]) -> list[Row]:
    base = ups[0]
    out = []
    for name, base_rounds in base.rounds.items():
        base_rate = _rates(base_rounds)
        base_ms = [c.ms for r in base_rounds for c in r.cycles]
        for setup in ups[1:]:
            got = setup.rounds[name]
            ratio = Summary.of([a.rate / b.rate for a, b in zip(got, base_rounds,
                                                                 strict=True)])
            ms = [c.ms for r in got for c in r.cycles]
            out.append(Row(f"{name}, {setup.name}: cycles/s", _rate_text(base_rate, base_rounds),
                           _rate_text(_rates(got), got), f"x{ratio.median:.2f}"))
            out.append(Row(f"{name}, {setup.name}: cycle latency", _latency(base_ms),
                           _latency(ms),
                           f"p50 {percentile(ms, 50) - percentile(base_ms, 50):+.1f} ms, "
                           f"p99 {percentile(ms, 99) - percentile(base_ms, 99):+.1f} ms"))
    return out


def cpu_note(ups: list[Setup]) -> str:
    parts = []
    for setup in ups:
        for name, got in setup.rounds.items():
            if "100 jobs at once" not in name:
                continue
            cycles = max(1, sum(len(r.cycles) for r in got))
            parts.append(
                f"{setup.name}: brokers {_cores(got, 'broker_cpu'):.2f}, "
                + (f"MariaDB and HAProxy {_cores(got, 'others_cpu'):.2f}, "
                   if setup.others else "")
                + f"munged {_cores(got, 'munged_cpu'):.2f}, load generator "
                f"{_cores(got, 'client_cpu'):.2f} ({1000 * sum(r.broker_cpu for r in got) / cycles:.1f} ms of "  # noqa: E501
                f"broker CPU and {1000 * sum(r.others_cpu for r in got) / cycles:.1f} ms "
                "of database and load balancer CPU per cycle)")
    return ("CPU used with 100 jobs at once, in cores (2 available): " + "; ".join(parts)
            + ". Two brokers are two interpreters, so together they could use both cores; "
            "here they share them with the database, HAProxy, munged and the load "
            "generator, so the two-broker figure is what this 2-core machine can do, not "
            "what two broker hosts would: on separate hosts each broker has its own core "
            "and the database its own.")


def section(ups: list[Setup], rounds: int, seconds: float) -> Section:
    errors = [e for s in ups for rs in s.rounds.values() for r in rs for e in r.errors]
    notes = [
        f"{rounds} round(s) of {seconds:g} s per load and set-up (after {WARMUP:g} s of "
        f"warm-up each), the set-ups in turn, their order reversed every other round "
        f"(ABBA); the load generator is {WORKERS} processes with one thread per job, every "
        "request a new connection. Baseline: one broker on SQLite (synchronous=FULL), the "
        "default and item 3's set-up. MariaDB: Debian's mariadbd started for this run, "
        "its socket local, innodb_flush_log_at_trx_commit=1 (every commit on disk). Two "
        "brokers: both on one database, HAProxy (the shipped configuration, round robin) "
        "in front, so a job's acquire and release usually reach different brokers; each "
        "acquisition takes the job's named lock in MariaDB (exactly once per job whichever "
        "broker its prologs reach).",
        cpu_note(ups),
        "Leases left active after all rounds: "
        + ", ".join(f"{s.name} {s.left_active()}" for s in ups) + ".",
    ]
    if errors:
        notes.append(f"{len(errors)} cycle(s) failed (not in the latencies); the first: "
                     f"{errors[0]}")
    return Section("ha", "7. High availability: one broker on SQLite, one on MariaDB, two "
                   "on MariaDB behind HAProxy", rows(ups), notes)


def run(opts: Options, *, loads: tuple[tuple[int, float | None], ...] = LOADS,
        seconds: float | None = None) -> list[Section]:
    rounds = opts.reps(2, 1)
    seconds = seconds or (1.0 if opts.quick else 4.0)
    with contextlib.ExitStack() as stack:
        def ensure_munged() -> object:
            return stack.enter_context(processes.Munged())

        ensure_munged()
        gen = stack.enter_context(LoadGenerator())
        ups = stack.enter_context(setups(opts.workdir))
        measure(gen, ups, loads, rounds, seconds, ensure_munged)
        return [section(ups, rounds, seconds)]
