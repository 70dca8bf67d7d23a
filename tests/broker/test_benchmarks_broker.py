"""The broker benchmark (benchmarks/broker.py) runs its real measurements with tiny
loads: the broker process comes up and goes, munged authenticates every request, every
lease is released, every row has its numbers. No time is asserted."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks import broker
from benchmarks.options import Options
from benchmarks.processes import Munged, munge_answers
from benchmarks.report import Section
from harness import processes_mentioning


@pytest.fixture(autouse=True)
def _munged() -> Iterator[Munged]:
    if not munge_answers() and os.geteuid() != 0:
        pytest.skip("needs munged (or root, to start it): the broker authenticates the "
                    "node requests with MUNGE")
    with Munged() as m:
        yield m


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[0-9]+(?:\.[0-9]+)?", text)]


def _rows_have_numbers(section: Section) -> None:
    assert section.rows
    for row in section.rows:
        assert _numbers(row.measured) and _numbers(row.baseline) and \
            _numbers(row.difference), row


def test_lease_rounds_cycle_real_leases_and_release_them_all(tmp_path: Path) -> None:
    with broker.LoadGenerator() as gen, broker.broker_process(tmp_path) as (proc, url):
        levels = broker.measure(gen, url, proc.pid,
                                [broker.Level(3), broker.Level(4, rate=40.0)],
                                rounds=2, seconds=0.3)
        assert proc.running
        audit = (tmp_path / "audit.log").read_text()
    assert not proc.running and proc.proc is not None and proc.proc.returncode == 0
    for level in levels:
        assert level.left_active == 0  # every job released what it acquired
        assert len(level.lease) == len(level.floor) == 2  # interleaved rounds
        for r in [*level.lease, *level.floor]:
            assert r.cycles and not r.errors
            assert all(c.first_ms > 0 and c.second_ms > 0 and c.ended >= c.began
                       for c in r.cycles)
            assert r.broker_cpu > 0 and r.client_cpu > 0
    # the lease rounds really leased, as root through MUNGE: the broker's audit line
    assert re.search(r'job=[0-9]+ user=bench qpu=- route="POST /v1/leases/[0-9]+" '
                     r"status=200", audit)
    assert 'route="DELETE /v1/leases/' in audit and 'route="GET /v1/leases"' in audit
    ids = [int(m) for m in re.findall(r"route=\"POST /v1/leases/([0-9]+)\"", audit)]
    assert len(ids) == len(set(ids))  # a new job id for every cycle
    rows = broker.level_rows(levels[0])
    assert [r.what.split(": ")[1] for r in rows] == [
        "cycles/s", "cycle latency (acquire + release)", "acquire alone", "release alone"]


def test_memory_is_read_idle_loaded_and_released(tmp_path: Path) -> None:
    sample = broker.measure_memory(tmp_path, leases=20, threads=4)
    assert sample.active_when_loaded == 20 and sample.active_after == 0
    assert sample.exit_status == 0  # the broker stopped cleanly on SIGTERM
    for sizes in (sample.idle, sample.loaded, sample.released):
        assert sizes["VmRSS"] > 0 and sizes["VmHWM"] >= sizes["VmRSS"]
    section = broker.memory_section([sample])
    _rows_have_numbers(section)
    assert "20 when loaded, 0 after the releases" in section.notes[0]


def test_the_section_runs_end_to_end_with_its_profile(tmp_path: Path) -> None:
    opts = Options(quick=True, workdir=tmp_path, source=Path(__file__).parents[2])
    sections = broker.run(opts, concurrency=(1, 2), paced_jobs=2, paced_rates=(20.0,),
                          seconds=0.3, memory_leases=10, profile=lambda missed: True)
    assert [s.key for s in sections] == ["broker", "broker-memory"]
    lease, memory = sections
    _rows_have_numbers(lease)
    _rows_have_numbers(memory)
    assert len(lease.rows) == 4 * 3  # three loads, four rows each
    assert any("Leases left active after all rounds: 0." in n for n in lease.notes)
    assert "cProfile" in lease.profile and "_node_api" in lease.profile
    assert "ncalls" in lease.profile
    # every broker this run started has stopped (the profiled one wrote its profile as
    # it exited) and none left a traceback in its log
    assert (tmp_path / "profile" / "broker.prof").stat().st_size > 0
    assert not processes_mentioning(str(tmp_path))
    logs = list(tmp_path.rglob("broker.log"))
    assert len(logs) == 3  # the timed broker, the profiled one, the memory one
    assert not any("Traceback" in log.read_text() for log in logs)
