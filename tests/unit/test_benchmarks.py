"""The benchmark code's own behaviour (make bench): statistics, the report, and the
parsing of what the lab writes. No time is asserted anywhere."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from benchmarks.__main__ import main
from benchmarks.report import Row, Section, render
from benchmarks.slurm_jobs import BenchLab, _no_difference
from benchmarks.stats import Summary, paired_difference, percentile, ratio


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([10, 0, 20], 0) == 0


def test_a_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_summary_reports_median_and_interquartile_range() -> None:
    s = Summary.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s.n, s.median, s.p25, s.p75, s.low, s.high) == (5, 3.0, 2.0, 4.0, 1.0, 100.0)
    assert s.text() == "3.0 ms (IQR 2.0-4.0, n=5)"


def test_paired_differences_are_taken_round_by_round() -> None:
    d = paired_difference([11, 22, 35], [10, 20, 30])
    assert d.median == 2


def test_unpaired_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="unpaired samples: 2 vs 1"):
        paired_difference([1, 2], [1])


def test_a_ratio_over_zero_is_infinite() -> None:
    assert ratio(1, 0) == math.inf


def test_no_measurable_difference_is_under_1_ms_or_2_percent() -> None:
    assert _no_difference(Summary.of([0.9]), Summary.of([10.0]))
    assert _no_difference(Summary.of([1.9]), Summary.of([100.0]))
    assert not _no_difference(Summary.of([2.1]), Summary.of([100.0]))


def test_a_missed_target_is_marked_in_the_table_and_the_summary_lists_it() -> None:
    section = Section("x", "3. The broker", [
        Row("cycles/s", "", "420", "", ">= 500", False),
        Row("p99", "", "12 ms", "", "< 50 ms", True),
        Row("idle RSS", "", "30 MiB", "", "", None)], notes=["why"], profile="top: fsync")
    text = render([section], started="today", seconds=60, command="make bench",
                  summary=["- 3. The broker: cycles/s **missed**"])
    assert "| cycles/s |  | 420 |  | >= 500 | **missed** |" in text
    assert "| p99 |  | 12 ms |  | < 50 ms | met |" in text
    assert "| idle RSS |  | 30 MiB |  |  |  |" in text
    assert "```\ntop: fsync\n```" in text
    assert "## Machine" in text and "## How to reproduce" in text


def test_an_unknown_section_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nosuch"])
    assert "unknown section(s) nosuch; known: slurm, broker, proxy, reference, ha, servers" \
        in capsys.readouterr().err


def fake_bench(root: Path) -> BenchLab:
    bench = BenchLab.__new__(BenchLab)
    bench.lab = SimpleNamespace(root=root, pytrace=root / "pytrace.log")  # type: ignore[assignment]
    bench._log_offsets = {}
    bench._epilogs = {}
    bench._allocations = {}
    return bench


def test_the_end_of_an_epilog_is_read_from_slurmd_s_log_with_milliseconds(
    tmp_path: Path
) -> None:
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "slurmd-node1.log"
    log.write_text("[2026-11-25T10:08:43.146] debug:  completed epilog for jobid 7\n"
                   "[2026-11-25T10:08:44.000] debug:  completed epilog for jobid 8")
    bench = fake_bench(tmp_path)
    first = bench.epilog_done(7, timeout=1)
    assert first % 1 == pytest.approx(0.146, abs=1e-6)
    with pytest.raises(RuntimeError, match="job 8: no 'completed epilog'"):
        bench.lab.tail_logs = lambda: ""  # type: ignore[attr-defined]
        bench.epilog_done(8, timeout=0.05)  # its line is not finished yet
    with log.open("a") as f:
        f.write("\n")
    assert bench.epilog_done(8, timeout=1) - first == pytest.approx(0.854, abs=1e-6)


def test_the_allocation_of_a_job_is_read_from_slurmctld_s_log(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "slurmctld.log").write_text(
        "[2026-11-25T11:47:16.473] sched: Allocate JobId=63 NodeList=node1 #CPUs=1\n")
    (tmp_path / "log" / "slurmd-node1.log").write_text(
        "[2026-11-25T11:47:16.900] debug:  completed epilog for jobid 63\n")
    bench = fake_bench(tmp_path)
    done = bench.epilog_done(63, timeout=1)
    assert done - bench._allocations[63] == pytest.approx(0.427, abs=1e-6)


def test_python_start_ups_are_counted_from_the_pytrace_lines(tmp_path: Path) -> None:
    trace = tmp_path / "pytrace.log"
    trace.write_text("1 pid=5 uid=1001 ctx=allocator cb=option ms=37.97\n")
    bench = fake_bench(tmp_path)
    mark = bench.pytrace_mark()
    with trace.open("a") as f:
        f.write("2 pid=6 uid=0 ctx=job_script cb=job_prolog ms=35.98\n"
                "2 pid=7 uid=0 ctx=remote cb=init_post_opt ms=37.50\n")
    assert bench.startups_since(mark) == [("job_prolog", 35.98), ("init_post_opt", 37.5)]
