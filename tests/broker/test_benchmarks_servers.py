"""The HTTP server comparison (benchmarks/http_servers.py, section 8 of make bench) runs end
to end with the broker's server and one candidate, uvicorn with httptools, pip-installed into
the section's own venv: one short round of one load, and the hostile-client probes on both.
What is asserted is behaviour, never a time: the broker's server answers every probe the
way the hostile tier expects, every row has its numbers, and no process the section started
is left afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from benchmarks import http_servers
from benchmarks.options import Options
from harness import processes_mentioning

CANDIDATE = "uvicorn-httptools"


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[0-9]+(?:\.[0-9]+)?", text)]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_broker_server_keeps_every_hostile_probe_and_the_comparison_stops_everything(
        tmp_path: Path) -> None:
    venv = http_servers.install(tmp_path / "venv", [CANDIDATE])
    if CANDIDATE in venv.missing:
        if venv.network_error:
            pytest.skip("pip cannot reach the package index, so no candidate can be "
                        f"installed:\n{venv.pip_output[-2000:]}")
        pytest.fail(f"pip could not install {CANDIDATE}: {venv.missing[CANDIDATE]}")
    opts = Options(quick=True, workdir=tmp_path, source=Path(__file__).parents[2])

    (section,) = http_servers.run(opts, candidates=(CANDIDATE,), loads=(1,), seconds=0.5,
                                  rounds=1, tls=False, probes=True, venv=venv)

    assert section.key == "servers"
    assert section.title.startswith("8. The broker's HTTP server against established ones")
    # a row for the candidate's throughput against the broker's server, one for its
    # answers to the probes
    assert [r.what for r in section.rows] == [
        f"1 concurrent cycle, {CANDIDATE}: cycles/s, cycle p50 / p99",
        f"hostile-tier probes answered as the tier expects, {CANDIDATE}"]
    for row in section.rows:
        assert _numbers(row.baseline) and _numbers(row.measured) and \
            _numbers(row.difference), row
    throughput, behaviour = section.rows
    assert throughput.baseline.startswith("current: ")
    assert "/s, p50 " in throughput.measured and "ms server CPU/cycle" in throughput.measured
    assert "failed" not in throughput.baseline + throughput.measured
    n = len(http_servers.PROBES)
    assert behaviour.baseline == f"current: {n} of {n}"

    # the behaviour table: a line per probe, and the broker's server as the tier expects
    # on every one (its refusals its own, no smuggled request reaching the app)
    (table,) = [note for note in section.notes if note.startswith("| probe |")]
    header, _, *lines = table.splitlines()
    assert _cells(header) == ["probe", "the hostile tier expects", "current", CANDIDATE]
    assert len(lines) == n
    for line in lines:
        _, _, current, candidate = _cells(line)
        assert current.startswith("ok: ") and "**smuggled**" not in current, line
        assert candidate.startswith(("ok: ", "**no**: ")), line
    assert f"current {n} of {n}" in " ".join(section.notes)
    assert not any(note.startswith("Cycles that failed") for note in section.notes)
    assert not any("not installed" in note or "did not start" in note
                   for note in section.notes)

    # every server (the probed ones and the timed ones) and every load client is gone, and
    # the broker's server wrote no traceback under the probes
    assert not processes_mentioning(str(tmp_path))
    logs = {log.name for log in (tmp_path / "servers").glob("*.log")}
    assert logs == {"current.log", "current-probes.log", f"{CANDIDATE}.log",
                    f"{CANDIDATE}-probes.log"}
    for name in ("current.log", "current-probes.log"):
        assert "Traceback" not in (tmp_path / "servers" / name).read_text()
