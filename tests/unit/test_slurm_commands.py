"""scontrol output parsing and the Scontrol client (with a fake scontrol executable)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_qpu.request.selection import Placement
from slurm_qpu.slurm.commands import Scontrol, SlurmCommandError, parse_oneliner, parse_squeue_json

SHOW_JOB = (
    "JobId=5 JobName=qpu demo UserId=alice(1000) GroupId=alice(1000) MCS_label=N/A "
    "Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 "
    "RunTime=00:00:01 TimeLimit=01:30:00 TimeMin=N/A SubmitTime=2025-01-01T10:00:00 "
    "NodeList=node[1-2] BatchHost=node1 NumNodes=2 NumCPUs=2 "
    "TRES=cpu=2,mem=1G,node=2,billing=2 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* "
    "Command=/home/alice/job.sh WorkDir=/home/alice "
    "AdminComment=slurm-qpu:v1:eyJzdGF0ZSI6ImFjcXVpcmVkIn0 Comment=my run "
    "StdErr=/home/alice/slurm-5.out\n"
)


def fake_scontrol(tmp_path: Path, body: str) -> Path:
    """An executable shell script standing in for scontrol; it logs its arguments."""
    script = tmp_path / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\n{body}\n')
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


# ---------------------------------------------------------------- parse_oneliner


def test_parse_oneliner_reads_every_key_of_show_job() -> None:
    fields = parse_oneliner(SHOW_JOB)
    assert fields["JobId"] == "5"
    assert fields["TimeLimit"] == "01:30:00"
    assert fields["NodeList"] == "node[1-2]"
    assert fields["StdErr"] == "/home/alice/slurm-5.out"


def test_parse_oneliner_keeps_parentheses_and_inner_equals_in_values() -> None:
    fields = parse_oneliner(SHOW_JOB)
    assert fields["UserId"] == "alice(1000)"
    assert fields["Account"] == "(null)"
    assert fields["TRES"] == "cpu=2,mem=1G,node=2,billing=2"
    assert fields["ExitCode"] == "0:0"


def test_parse_oneliner_keys_may_contain_slash_and_colon() -> None:
    fields = parse_oneliner(SHOW_JOB)
    assert fields["Socks/Node"] == "*"
    assert fields["NtasksPerN:B:S:C"] == "0:0:*:*"


def test_parse_oneliner_keeps_spaces_inside_values() -> None:
    fields = parse_oneliner(SHOW_JOB)
    assert fields["JobName"] == "qpu demo"
    assert fields["Comment"] == "my run"


def test_parse_oneliner_reads_admin_comment() -> None:
    assert parse_oneliner(SHOW_JOB)["AdminComment"] == "slurm-qpu:v1:eyJzdGF0ZSI6ImFjcXVpcmVkIn0"


def test_parse_oneliner_empty_value_is_empty_string() -> None:
    fields = parse_oneliner("JobId=5 AdminComment= TimeLimit=00:10:00")
    assert fields == {"JobId": "5", "AdminComment": "", "TimeLimit": "00:10:00"}


def test_parse_oneliner_first_occurrence_of_a_key_wins() -> None:
    assert parse_oneliner("JobId=5 Name=a JobId=6")["JobId"] == "5"


def test_parse_oneliner_of_empty_text_is_empty() -> None:
    assert parse_oneliner("") == {}


# ---------------------------------------------------------------- Scontrol


def test_failing_scontrol_raises_with_its_stderr(tmp_path: Path) -> None:
    script = fake_scontrol(tmp_path, "echo 'slurm_load_jobs error: Invalid job id specified' "
                                     ">&2; exit 1")
    with pytest.raises(SlurmCommandError) as excinfo:
        Scontrol(str(script)).set_admin_comment(99, "x")
    assert str(excinfo.value) == (f"{script} update JobId=99 AdminComment=x: "
                                  "slurm_load_jobs error: Invalid job id specified")


def test_failing_scontrol_without_stderr_reports_its_stdout(tmp_path: Path) -> None:
    script = fake_scontrol(tmp_path, "echo 'only stdout'; exit 3")
    with pytest.raises(SlurmCommandError) as excinfo:
        Scontrol(str(script)).set_admin_comment(1, "x")
    assert str(excinfo.value) == f"{script} update JobId=1 AdminComment=x: only stdout"


def test_missing_scontrol_raises_slurm_command_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-scontrol"
    with pytest.raises(SlurmCommandError) as excinfo:
        Scontrol(str(missing)).set_admin_comment(1, "x")
    assert str(excinfo.value).startswith(
        f"{missing} update JobId=1 AdminComment=x: [Errno 2] No such file")


def test_hanging_scontrol_times_out(tmp_path: Path) -> None:
    script = fake_scontrol(tmp_path, "exec sleep 5")
    with pytest.raises(SlurmCommandError) as excinfo:
        Scontrol(str(script), timeout=0.05).set_admin_comment(1, "x")
    assert "timed out after 0.05 seconds" in str(excinfo.value)


def test_set_admin_comment_runs_scontrol_update(tmp_path: Path) -> None:
    script = fake_scontrol(tmp_path, "true")
    Scontrol(str(script)).set_admin_comment(5, "slurm-qpu:v1:abc")
    assert calls(tmp_path) == ["update JobId=5 AdminComment=slurm-qpu:v1:abc"]


@pytest.mark.parametrize("text", ["two words", "tab\there", "new\nline"])
def test_set_admin_comment_rejects_whitespace_without_running_scontrol(
    tmp_path: Path, text: str
) -> None:
    script = fake_scontrol(tmp_path, "true")
    with pytest.raises(ValueError) as excinfo:
        Scontrol(str(script)).set_admin_comment(5, text)
    assert str(excinfo.value) == "AdminComment text must not contain whitespace"
    assert calls(tmp_path) == []


def test_squeue_json_gives_the_job_s_partition_account_and_qos() -> None:
    text = json.dumps({"jobs": [
        {"job_id": 7, "time_limit": {"set": True, "number": 10}, "admin_comment": "",
         "restart_cnt": 0, "user_name": "alice", "job_state": ["RUNNING"],
         "partition": "quantum", "account": "physics", "qos": "normal"}]})
    job = parse_squeue_json(text, 7)
    assert (job.time_limit_seconds, job.user) == (600, "alice")
    assert job.placement == Placement("quantum", "physics", "normal")


@pytest.mark.parametrize(("licenses", "names"), [
    ("qpu_ibm_manila:1,matlab:2", {"qpu_ibm_manila", "matlab"}),
    ("qpu_a*1,qpu_b", {"qpu_a", "qpu_b"}),  # counts written either way, or none
    ("qpu_a:1|qpu_b:1", {"qpu_a", "qpu_b"}),  # either-or request
    (["qpu_a:1", "matlab:1"], {"qpu_a", "matlab"}),
    ("", set()),
    (None, set()),  # the field is there, empty: no license
])
def test_squeue_json_gives_the_names_of_the_job_s_licenses(
        licenses: object, names: set[str]) -> None:
    text = json.dumps({"jobs": [{"job_id": 7, "licenses": licenses}]})
    assert parse_squeue_json(text, 7).placement.licenses == frozenset(names)


@pytest.mark.parametrize("job", [{"job_id": 7}, {"job_id": 7, "licenses": {"odd": 1}}])
def test_licenses_are_unknown_when_squeue_json_does_not_say(job: dict[str, object]) -> None:
    assert parse_squeue_json(json.dumps({"jobs": [job]}), 7).placement.licenses is None


def test_scontrol_lists_slurmctld_s_licenses(tmp_path: Path) -> None:
    script = fake_scontrol(tmp_path, "echo 'LicenseName=qpu_ibm_manila Total=2 Used=0 Free=2 "
                                     "Reserved=0 Remote=no'\n"
                                     "echo 'LicenseName=matlab Total=9 Used=1 Free=8 "
                                     "Reserved=0 Remote=no'")
    assert Scontrol(str(script)).licenses() == {"qpu_ibm_manila", "matlab"}
    assert calls(tmp_path) == ["show licenses -o"]
