"""Usage records: the AdminComment text, writing it with sacctmgr, and `slurm-qpu usage`
reading it back from sacct (fake sacct/sacctmgr scripts stand in for Slurm's)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from slurm_qpu.cli import main
from slurm_qpu.usage import (
    MARK,
    QpuUsage,
    decode,
    encode,
    from_sacct,
    parse_sacct,
    record_in_accounting,
    render,
    totals,
)

T0 = 1764057108.0  # 2025-11-25T07:51:48Z
A = QpuUsage("ibm_manila", "ibm-quantum-compute-service", T0, T0 + 3600, 2, 4196, 1.5)
B = QpuUsage("FRESNEL", "pasqal-cloud", T0, T0 + 60.25, 1, None, None)


def test_a_record_survives_the_admin_comment_round_trip() -> None:
    text = encode([A, B])
    assert text == (f"{MARK};qpu=ibm_manila,type=ibm-quantum-compute-service,"
                    "start=2025-11-25T07:51:48Z,end=2025-11-25T08:51:48Z,session_s=3600.0,"
                    "vendor_jobs=2,shots=4196,qpu_s=1.500;qpu=FRESNEL,type=pasqal-cloud,"
                    "start=2025-11-25T07:51:48Z,end=2025-11-25T07:52:48Z,session_s=60.2,"
                    "vendor_jobs=1,shots=,qpu_s=")
    assert '"' not in text and " " not in text  # sacctmgr would mangle quotes
    back = decode(text)
    assert back[0] == A
    assert (back[1].qpu, back[1].shots, back[1].qpu_seconds, back[1].end) == \
        ("FRESNEL", None, None, T0 + 60)  # whole seconds in the text


def test_a_record_says_which_selection_picked_the_qpu() -> None:
    picked = QpuUsage("ibm_manila", "ibm-quantum-compute-service", T0, T0 + 1, 0,
                      selected_by="any:ibm_*&min_qubits=100")
    text = encode([picked, B])
    assert "vendor_jobs=0,shots=,qpu_s=,via=any:ibm_*&min_qubits=100;qpu=FRESNEL" in text
    assert decode(text) == [picked, dataclasses.replace(B, end=T0 + 60)]


def test_other_admin_comments_hold_no_usage() -> None:
    assert decode("") == decode("site note: checked") == decode("slurm-qpu:v1:abc") == []


def test_a_damaged_record_is_skipped_and_the_others_still_count() -> None:
    text = encode([A]) + ";qpu=x,shots=many;nonsense"
    assert decode(text) == [A]


def test_a_job_still_holding_a_qpu_has_no_session_length() -> None:
    assert QpuUsage("q", "t", T0, None).session_seconds is None


SACCT = "\n".join([
    f"101|alice|quantum|quantum|COMPLETED|2025-11-25T07:51:00|2025-11-25T08:52:00|"
    f"{encode([A])}",
    f"102|bob|physics|normal|FAILED|2025-11-25T09:00:00|2025-11-25T09:01:00|{encode([A, B])}",
    "103|alice|quantum|normal|COMPLETED|2025-11-25T09:00:00|2025-11-25T09:01:00|",
    "garbage line",
])


def test_sacct_rows_with_a_usage_record_become_one_row_per_qpu() -> None:
    rows = parse_sacct(SACCT)
    assert [(r.job_id, r.user, r.account, r.qpu) for r in rows] == [
        ("101", "alice", "quantum", "ibm_manila"), ("102", "bob", "physics", "ibm_manila"),
        ("102", "bob", "physics", "FRESNEL")]


def test_totals_add_up_per_user_account_and_qpu_or_any_grouping() -> None:
    rows = parse_sacct(SACCT)
    per_qpu = totals(rows, ["qpu"])
    assert [(t.qpu, t.user, t.jobs, t.vendor_jobs, t.shots) for t in per_qpu] == [
        ("FRESNEL", "*", 1, 1, 0), ("ibm_manila", "*", 2, 4, 8392)]
    assert per_qpu[1].session_hours == pytest.approx(2.0)
    assert per_qpu[1].qpu_seconds == pytest.approx(3.0)
    assert len(totals(rows)) == 3


def test_the_report_renders_as_a_table_csv_and_json() -> None:
    rows = totals(parse_sacct(SACCT), ["user", "qpu"])
    table = render(rows, "table").splitlines()
    assert table[0].split() == ["USER", "ACCOUNT", "QPU", "JOBS", "SESSION_HOURS",
                                "VENDOR_JOBS", "SHOTS", "QPU_SECONDS"]
    assert table[1].split() == ["alice", "*", "ibm_manila", "1", "1.000", "2", "4196",
                                "1.500"]
    csv_lines = render(rows, "csv").splitlines()
    assert csv_lines[0] == "user,account,qpu,jobs,session_hours,vendor_jobs,shots,qpu_seconds"
    assert csv_lines[1] == "alice,*,ibm_manila,1,1.000,2,4196,1.500"
    data = json.loads(render(rows, "json"))
    assert data[0] == {"user": "alice", "account": "*", "qpu": "ibm_manila", "jobs": 1,
                       "session_hours": 1.0, "vendor_jobs": 2, "shots": 4196,
                       "qpu_seconds": 1.5}


def test_an_empty_window_says_so() -> None:
    assert render([], "table").splitlines()[-1] == "(no QPU usage in this window)"


def fake_tool(tmp_path: Path, name: str, body: str) -> Path:
    script = tmp_path / "bin" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/{name}.calls"\n{body}\n')
    script.chmod(0o755)
    return script


def test_usage_asks_sacct_for_every_users_jobs_in_the_window(tmp_path: Path) -> None:
    (tmp_path / "out").write_text(SACCT)
    sacct = fake_tool(tmp_path, "sacct", f"cat {tmp_path}/out")
    rows = from_sacct("2025-11-01", "now", users="alice,bob", sacct=str(sacct))
    assert len(rows) == 3
    assert (tmp_path / "sacct.calls").read_text().split() == [
        "-a", "-X", "-n", "-P", "-S", "2025-11-01", "-E", "now", "-o",
        "JobID,User,Account,Partition,State,Start,End,AdminComment", "-u", "alice,bob"]


def test_slurm_qpu_usage_prints_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").write_text(SACCT)
    fake_tool(tmp_path, "sacct", f"cat {tmp_path}/out")
    monkeypatch.setenv("PATH", f"{tmp_path}/bin:/usr/bin:/bin")
    assert main(["usage", "--since", "2025-11-01", "--by", "account", "--qpu", "FRESNEL",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["*,physics,*,1,0.017,1,0,0.000"]


def test_slurm_qpu_usage_reports_a_failing_sacct(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake_tool(tmp_path, "sacct", "echo 'sacct: error: Problem talking to the database' >&2\n"
                                 "exit 1")
    monkeypatch.setenv("PATH", f"{tmp_path}/bin:/usr/bin:/bin")
    assert main(["usage"]) == 1
    assert capsys.readouterr().err == ("slurm-qpu usage: sacct failed: sacct: error: Problem "
                                       "talking to the database\n")


def test_the_record_is_written_with_sacctmgr(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "sacctmgr", 'echo " Modified jobs..."')
    assert record_in_accounting(42, [A], sacctmgr=str(tool))
    assert (tmp_path / "sacctmgr.calls").read_text() == \
        f"-i modify job jobid=42 set AdminComment={encode([A])}\n"


def test_no_accounting_storage_is_said_at_info_level_with_how_to_stop_trying(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tool = fake_tool(tmp_path, "sacctmgr", "echo \"sacctmgr: error: Only "
                                           "'accounting_storage/slurmdbd' is supported.\" >&2"
                                           "\nexit 1")
    with caplog.at_level(logging.INFO):
        assert not record_in_accounting(42, [A], sacctmgr=str(tool))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(
        logging.INFO, "job 42: QPU usage not written to Slurm accounting: no slurmdbd "
        "(sacctmgr: sacctmgr: error: Only 'accounting_storage/slurmdbd' is supported.); "
        "sacctmgr=no on the spank_qpu.so line stops trying")]


def test_a_failing_sacctmgr_is_a_warning_not_a_failure(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tool = fake_tool(tmp_path, "sacctmgr", "echo 'Unable to connect to slurmdbd' >&2\nexit 1")
    with caplog.at_level(logging.WARNING):
        assert not record_in_accounting(42, [A], sacctmgr=str(tool))
        assert not record_in_accounting(42, [A], sacctmgr=str(tmp_path / "missing"))
    assert caplog.messages[0] == ("job 42: QPU usage not written to Slurm accounting "
                                  "(sacctmgr: Unable to connect to slurmdbd)")
    assert caplog.messages[1].startswith("job 42: QPU usage not written to Slurm accounting: "
                                         "[Errno 2] No such file or directory")
