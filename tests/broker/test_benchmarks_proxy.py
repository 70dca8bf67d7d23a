"""The proxy and reference benchmarks (benchmarks/proxy.py, benchmarks/reference.py) run
their real measurements with tiny counts: every process comes up and goes, every answer
is checked, every row has its numbers. No time is asserted."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from benchmarks import proxy, reference
from benchmarks.processes import munge_answers
from benchmarks.report import Section

pytest.importorskip("qiskit_ibm_runtime")


def _needs_munge() -> None:
    if not munge_answers() and os.geteuid() != 0:
        pytest.skip("needs munged (or root, to start it): the broker authenticates the "
                    "lease with MUNGE")


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[0-9]+(?:\.[0-9]+)?", text)]


def _rows_have_numbers(section: Section) -> None:
    assert section.rows
    for row in section.rows:
        assert _numbers(row.measured) and _numbers(row.baseline) and _numbers(row.difference), row


def test_the_proxy_benchmark_measures_every_route_on_all_three_sides(tmp_path: Path) -> None:
    _needs_munge()
    with proxy.stack(tmp_path, shots=1000) as st:
        assert [r.key for r in st.routes] == ["small", "up", "down"]
        assert all(p.running for p in st.processes)
        lat = [proxy.latency(st, route, rounds=3, warmup=1) for route in st.routes]
        thr = [proxy.throughput(st, route, rounds=1, seconds=0.1, threads=2)
               for route in st.routes]
        with proxy.vendor_delay(st, st.routes[0], 0.01):
            far = [proxy.throughput(st, st.routes[0], rounds=1, seconds=0.1, threads=2,
                                    label="far")]
        audit = (tmp_path / "audit.log").read_text()
    for la in lat:
        assert {side: len(ms) for side, ms in la.ms.items()} == \
            {"direct": 3, "relayed": 3, "proxied": 3}
        assert la.same_answer, la.route.key  # proxied = relayed = direct, byte for byte
        assert {side for side, _ in la.statuses} == {"direct", "relayed", "proxied"}
        assert all(200 <= status < 300 for _, status in la.statuses), la.statuses
    assert lat[1].response_bytes == 0 and lat[2].response_bytes > 10_000  # 204; results
    for th in [*thr, *far]:
        assert th.errors == 0
        assert all(w.requests > 0 for r in th.rounds for w in r.values())
    assert thr[0].cpu_ms("proxied", "broker") > 0
    # the proxied requests really went through the broker, as the job
    assert f'job={proxy.JOB_ID} user=bench qpu={proxy.QPU} route="PUT' in audit
    assert "status=204" in audit and "status=200" in audit
    # every process stopped, cleanly (SIGTERM, as systemd stops them)
    assert [(p.name, p.running, p.proc and p.proc.returncode) for p in st.processes] == \
        [("emulator", False, 0), ("broker", False, 0), ("relay", False, 0)]

    section = proxy.section(lat, thr, far, 0.01)
    _rows_have_numbers(section)
    targets = [r for r in section.rows if r.met is not None]
    assert len(targets) == 6  # added p50 and throughput, for each of the three routes
    assert any("Every answer 2xx: yes" in n and "equal (proxied = relayed = direct): yes" in n
               for n in section.notes)
    assert "| small (GET backend status): latency p50 |" in section.markdown()


def test_the_profile_pass_profiles_the_brokers_request_threads(tmp_path: Path) -> None:
    _needs_munge()
    text = proxy.profile_pass(tmp_path, requests=3)
    assert "By own time:" in text and "Cumulative" in text and "ncalls" in text
    assert "slurm_qpu/broker/server.py" in text  # the broker's code, from its threads
    assert not any(p.name == "broker.log" and "Traceback" in p.read_text()
                   for p in (tmp_path / "profiled").iterdir())


def test_the_reference_benchmark_runs_both_clients_on_one_emulator(tmp_path: Path) -> None:
    pytest.importorskip("qrmi")
    with reference.emulated(tmp_path) as (emu, url, settings):
        assert emu.running
        runs = reference.measure(url, settings, rounds=2,
                                 session_state=reference.closed_at_vendor(url, settings))
        profile = reference.profile_ours(settings, calls=5)
        log = json.loads(_get(f"{url}/_emulator/requests"))
    assert not emu.running and emu.proc is not None and emu.proc.returncode == 0
    assert set(runs.ms) == {"qrmi", "slurm-qpu"}
    for side in runs.ms.values():
        assert {op: len(ms) for op, ms in side.items()} == \
            {"make": 2, "acquire": 2, "release": 2, "sampler": 2, "status": 2}
    for counts in runs.counts.values():  # a Bell pair, sampled: only 00 and 11
        assert sum(counts.values()) == reference.SHOTS and set(counts) <= {"00", "11"}
    assert runs.sessions_closed
    agents = {r["headers"].get("user-agent", "") for r in log
              if r["path"] == "/api/v1/jobs" and r["method"] == "POST"}
    assert agents == {"SLURM-QRMI-QRS", "slurm-qpu"}  # both libraries really ran jobs
    assert "task_status" in profile and "ncalls" in profile

    section = reference.section(runs)
    _rows_have_numbers(section)
    assert [r.met is not None for r in section.rows] == [True] * 4
    assert "ours/qrmi" in section.rows[0].difference


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body
