"""``slurm-qpu run NAME INPUT [OUTPUT]``: payload files, progress, results, exit codes, and
cancelling the vendor task on SIGTERM/SIGINT.

The local simulator keeps its tasks in the process, so main() runs in-process. FakeQpu (type
``fake-qpu``) is a task that stays Running until stopped, scripted through its settings
(``fq_FAKE_*`` in the job environment)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu.cli import run as runner
from slurm_qpu.vendors import registry
from slurm_qpu.vendors.common import payloads
from slurm_qpu.vendors.common.base import (
    FelisProgram,
    IqmJob,
    PasqalSequence,
    Payload,
    QiskitPrimitive,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
)
from slurm_qpu.vendors.common.http import VendorAuthError, VendorUnavailable

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "payloads"
SAMPLER = {"program_id": "sampler",
           "parameters": {"pubs": [["OPENQASM 3.0; qubit[1] q;", [], 100]], "version": 2}}
PREFIX = "slurm-qpu run: "


# ---- a scripted fake QPU ----------------------------------------------------------------

@dataclass
class FakeQpu:
    """Settings: FAKE_STATUSES (status per poll, the last repeats; default Running),
    FAKE_SIGNAL ("TERM@2": send SIGTERM to this process at poll 2; "@create" at creation),
    FAKE_STATUS_ERRORS ("unavailable,auth": an error per poll before the statuses),
    FAKE_START_ERROR / FAKE_STOP_ERROR / FAKE_LOGS_ERROR / FAKE_RESULT_ERROR,
    FAKE_LOG (file that records start/stop, for a runner in another process)."""

    spec: ResourceSpec
    polls: int = 0
    stopped: bool = False
    payloads: list[Payload] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        FakeQpuType.instances.append(self)
        self._maybe_signal("create")

    def _s(self, key: str) -> str:
        return self.spec.environment.get("FAKE_" + key, "")

    def _record(self, event: str) -> None:
        self.events.append(event)
        if self._s("LOG"):
            with open(self._s("LOG"), "a", encoding="utf-8") as fh:
                fh.write(event + "\n")

    def _maybe_signal(self, when: str) -> None:
        sig, _, at = self._s("SIGNAL").partition("@")
        if sig and at == when:
            os.kill(os.getpid(), getattr(signal, "SIG" + sig))

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def is_accessible(self) -> bool:
        return True

    def acquire(self) -> str:
        return "fake-token"

    def release(self, token: str) -> None:
        pass

    def task_start(self, payload: Payload) -> str:
        if self._s("START_ERROR"):
            raise VendorAuthError(self._s("START_ERROR"))
        self.payloads.append(payload)
        self._record("start T1")
        return "T1"

    def task_stop(self, task_id: str) -> None:
        self._record(f"stop {task_id}")
        if self._s("STOP_ERROR"):
            raise VendorUnavailable(self._s("STOP_ERROR"))
        self.stopped = True

    def task_status(self, task_id: str) -> TaskStatus:
        self.polls += 1
        self._maybe_signal(str(self.polls))
        errors = [e for e in self._s("STATUS_ERRORS").split(",") if e]
        if self.polls <= len(errors):
            kind = errors[self.polls - 1]
            if kind == "auth":
                raise VendorAuthError("Fake refused the credentials (401): expired")
            raise VendorUnavailable(f"Fake unavailable: poll {self.polls}")
        if self.stopped:
            return TaskStatus.CANCELLED
        statuses = (self._s("STATUSES") or "Running").split(",")
        return TaskStatus(statuses[min(self.polls - len(errors), len(statuses)) - 1])

    def task_result(self, task_id: str) -> TaskResult:
        if self._s("RESULT_ERROR"):
            raise TaskNotReady(self._s("RESULT_ERROR"))
        return TaskResult('{"counts": {"0": 3}}')

    def task_logs(self, task_id: str) -> str:
        if self._s("LOGS_ERROR"):
            raise VendorUnavailable(self._s("LOGS_ERROR"))
        return "calibration drifted\nqubit 3 failed"

    def target(self) -> Target:
        return Target("{}")

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name}


class FakeQpuType:
    type_name = "fake-qpu"
    instances: list[FakeQpu] = []  # noqa: RUF012 - the tests' window into what main() built

    def create(self, spec: ResourceSpec) -> FakeQpu:
        return FakeQpu(spec)


class NotAResourceType:
    type_name = "junk-qpu"

    def create(self, spec: ResourceSpec) -> object:
        return object()


# ---- fixtures and helpers -------------------------------------------------------------

@pytest.fixture(autouse=True)
def job(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A job with sim_a (local-simulator) and fq (fake-qpu), and no leftovers from a real job."""
    for key in list(os.environ):
        if key.startswith(("QRMI_", "SLURM_JOB_QPU_", "sim_a_", "fq_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "sim_a,fq")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "local-simulator,fake-qpu")
    monkeypatch.setenv("QRMI_JOB_ID", "7")
    original = registry.get_type
    types: dict[str, Any] = {"fake-qpu": FakeQpuType(), "junk-qpu": NotAResourceType()}
    monkeypatch.setattr(registry, "get_type", lambda name: types.get(name) or original(name))
    FakeQpuType.instances.clear()
    yield


def fake(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    for key, value in settings.items():
        monkeypatch.setenv(f"fq_FAKE_{key}", value)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slurm-qpu")
    runner.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", *argv])


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = runner.main(parse([*argv, "--poll", "0.01"]))
    out, err = capsys.readouterr()
    return code, out, err


def payload_file(tmp_path: Path, data: object, name: str = "in.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def last_fake() -> FakeQpu:
    return FakeQpuType.instances[-1]


# ---- running payloads -------------------------------------------------------------------

def test_sampler_example_runs_on_the_local_simulator_and_prints_the_result(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(capsys, "sim_a", str(EXAMPLES / "ibm_sampler.json"))
    assert code == 0
    assert err.startswith(PREFIX + "sim_a: started task simtask-")
    result = json.loads(out)
    assert result["results"][0]["data"]["meas"]["counts"] == {"0": 1024}
    assert result["metadata"] == {"synthetic": True, "backend": "sim_a"}


def test_estimator_example_runs_on_the_local_simulator(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "sim_a", str(EXAMPLES / "ibm_estimator.json"))
    assert code == 0
    assert json.loads(out)["results"] == [{"data": {"evs": 0.0, "stds": 0.0}}]


def test_result_is_written_to_output_and_not_to_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.json"
    code, out, _ = invoke(capsys, "sim_a", payload_file(tmp_path, SAMPLER), str(output))
    assert (code, out) == (0, "")
    assert json.loads(output.read_text())["results"][0]["shots"] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.json"]  # no temp file


def test_output_that_is_a_fifo_is_written_through_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the same path as /dev/null or /dev/stdout: renaming a temp file over it would turn a
    # device into a plain file (as root, for the whole machine)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    code, _, _ = invoke(capsys, "sim_a", payload_file(tmp_path, SAMPLER), str(fifo))
    reader.join(timeout=10)
    assert code == 0
    assert json.loads(received[0])["results"][0]["shots"] == 100
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_payload_reaches_the_qpu_as_the_vendor_expects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Completed")
    code, out, _ = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (0, '{"counts": {"0": 3}}\n')
    assert last_fake().payloads == [QiskitPrimitive(json.dumps(SAMPLER["parameters"]),
                                                    "sampler")]


def test_a_site_type_receives_any_payload_kind_and_decides_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Completed")
    felis = {"human_qir": "define void @main() {\n  ret void\n}", "input_params": {"nShots": 10}}
    assert invoke(capsys, "fq", payload_file(tmp_path, felis))[0] == 0
    assert last_fake().payloads == [FelisProgram(felis["human_qir"], '{"nShots": 10}')]


def test_queued_then_running_then_completed_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Queued,Running,Running,Completed")
    code, out, _ = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (0, '{"counts": {"0": 3}}\n')
    assert last_fake().polls == 4


# ---- progress output ----------------------------------------------------------------------

def test_progress_without_a_terminal_is_one_plain_line_per_status_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Queued,Running,Running,Running,Completed")
    _, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    lines = err.splitlines()
    assert lines[0] == PREFIX + "fq: started task T1"
    assert [line.rsplit(" after ", 1)[0] for line in lines[1:]] == [
        PREFIX + "fq: task T1 Queued", PREFIX + "fq: task T1 Running",
        PREFIX + "fq: task T1 Completed"]
    assert all(line.rsplit(" after ", 1)[1].count(":") == 2 for line in lines[1:])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_updating_line_with_elapsed_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, STATUSES="Running,Completed")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert runner.main(parse(["fq", payload_file(tmp_path, SAMPLER), str(tmp_path / "out.json"),
                              "--poll", "0.01"])) == 0
    text = terminal.getvalue()
    first, rest = text.split("\n", 1)
    assert first == PREFIX + "fq: started task T1"
    updates = rest.split("\r")
    assert updates[0] == ""
    assert [u.split(" ")[:4] for u in updates[1:]] == [
        ["fq:", "task", "T1", "Running"], ["fq:", "task", "T1", "Completed"]]
    assert all(u.endswith("\x1b[K") for u in updates[1:-1])
    assert text.endswith("\x1b[K\n")  # the status line is ended before exiting


def test_a_message_on_a_terminal_starts_below_the_status_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, STATUSES="Running,Failed")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert runner.main(parse(["fq", payload_file(tmp_path, SAMPLER), "--poll", "0.01"])) == 1
    assert "\x1b[K\n" + PREFIX + "fq: task T1 failed\n" in terminal.getvalue()


def test_quiet_prints_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Running,Completed")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), "--quiet")
    assert (code, out, err) == (0, '{"counts": {"0": 3}}\n', "")


def test_quiet_on_a_terminal_prints_nothing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, STATUSES="Running,Completed")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    output = str(tmp_path / "out.json")
    assert runner.main(parse(["fq", payload_file(tmp_path, SAMPLER), output, "-q",
                              "--poll", "0.01"])) == 0
    assert terminal.getvalue() == ""


def test_json_status_is_one_event_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Queued,Running,Completed")
    output = tmp_path / "out.json"
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), str(output), "--json")
    events = [json.loads(line) for line in err.splitlines()]
    assert code == 0
    assert events[0] == {"event": "started", "resource": "fq", "type": "fake-qpu",
                         "task_id": "T1"}
    assert [(e["event"], e["status"]) for e in events[1:4]] == [
        ("status", "Queued"), ("status", "Running"), ("status", "Completed")]
    assert all(isinstance(e["elapsed"], float) for e in events[1:4])
    assert events[4] == {"event": "finished", "status": "Completed", "exit_code": 0,
                         "output": str(output)}


def test_json_errors_are_events_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "fq", str(tmp_path / "missing.json"), "--json")
    assert code == 2
    assert [json.loads(line) for line in err.splitlines()] == [
        {"event": "error", "message": f"{tmp_path / 'missing.json'}: no such file"},
        {"event": "finished", "status": None, "exit_code": 2, "output": None}]


# ---- failed tasks ------------------------------------------------------------------------

def test_failed_task_prints_its_logs_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Running,Failed")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (1, "")
    assert err.splitlines()[-4:] == [PREFIX + "fq: task T1 failed", PREFIX + "logs of task T1:",
                                     "calibration drifted", "qubit 3 failed"]


def test_task_cancelled_at_the_vendor_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Cancelled")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert code == 1
    assert PREFIX + "fq: task T1 cancelled\n" in err


def test_failed_task_whose_logs_cannot_be_read_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Failed", LOGS_ERROR="Fake unavailable: logs")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert code == 1
    assert err.splitlines()[-1] == PREFIX + "fq: no logs for task T1: Fake unavailable: logs"


def test_failed_task_logs_in_json_mode_are_an_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Failed")
    _, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), "--json")
    events = [json.loads(line) for line in err.splitlines()]
    assert {"event": "logs", "task_id": "T1",
            "text": "calibration drifted\nqubit 3 failed"} in events
    assert events[-1] == {"event": "finished", "status": "Failed", "exit_code": 1,
                          "output": None}


# ---- vendor errors: one line, no traceback ------------------------------------------------

def test_vendor_error_at_start_is_one_line_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, START_ERROR="Fake refused the credentials (401): bad key")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (1, "")
    assert err == (PREFIX + "fq: cannot start the task: Fake refused the credentials (401): "
                   "bad key\n")


def test_missing_setting_of_the_qpu_is_one_line_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "ibm_fez")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "qiskit-runtime-service")
    code, _, err = invoke(capsys, "ibm_fez", payload_file(tmp_path, SAMPLER))
    assert code == 1
    assert err.startswith(PREFIX + "ibm_fez: resource ibm_fez: setting QRMI_IBM_QCS_")
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_type_that_builds_no_quantum_resource_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "jq")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "junk-qpu")
    code, _, err = invoke(capsys, "jq", payload_file(tmp_path, SAMPLER))
    assert code == 1
    assert err == (PREFIX + "jq: resource type 'junk-qpu' built object, which is not a "
                   "QuantumResource\n")


def test_transient_status_errors_are_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUS_ERRORS="unavailable,unavailable", STATUSES="Completed")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (0, '{"counts": {"0": 3}}\n')
    assert (PREFIX + "fq: cannot get the status of task T1: Fake unavailable: poll 2; "
            "retrying\n") in err


def test_status_errors_give_up_after_three_in_a_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUS_ERRORS="unavailable,unavailable,unavailable")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert code == 1
    assert last_fake().polls == runner.MAX_POLL_FAILURES == 3
    assert err.splitlines()[-1] == (PREFIX + "fq: cannot get the status of task T1: Fake "
                                    "unavailable: poll 3; the task may still be running")


def test_a_refused_status_request_fails_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUS_ERRORS="auth")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, last_fake().polls) == (1, 1)
    assert err.splitlines()[-1] == (
        PREFIX + "fq: cannot get the status of task T1: Fake refused the credentials (401): "
        "expired; the task may still be running")


def test_result_that_cannot_be_fetched_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Completed", RESULT_ERROR="result expired")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (PREFIX + "fq: task T1 completed but its result cannot be "
                                    "fetched: result expired")


def test_result_that_cannot_be_written_goes_to_stdout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, STATUSES="Completed")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    output = tmp_path / "out.json"
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), str(output))
    assert (code, out) == (1, '{"counts": {"0": 3}}\n')
    assert err.splitlines()[-1] == (PREFIX + f"cannot write {output}: No space left on device; "
                                    "the result follows on stdout")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


# ---- input and usage errors: exit 2, naming the file and the field -------------------------

def test_outside_a_qpu_job_says_to_submit_with_qpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("QRMI_JOB_QPU_RESOURCES")
    code, _, err = invoke(capsys, "sim_a", payload_file(tmp_path, SAMPLER))
    assert code == 2
    assert err == (PREFIX + "not inside a QPU job: QRMI_JOB_QPU_RESOURCES is not set; submit "
                   "the job with sbatch --qpu=NAME (names: slurm-qpu list)\n")


def test_a_qpu_not_in_the_job_lists_the_job_qpus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "ibm_fez", payload_file(tmp_path, SAMPLER))
    assert code == 2
    assert err == (PREFIX + "QPU 'ibm_fez' is not one of this job's QPUs (sim_a, fq); use one "
                   "of them or submit with sbatch --qpu=ibm_fez\n")


def test_missing_payload_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert invoke(capsys, "sim_a", str(missing)) == (2, "", f"{PREFIX}{missing}: no such file\n")


def test_payload_path_that_is_a_directory(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "sim_a", str(tmp_path)) == (
        2, "", f"{PREFIX}{tmp_path}: is a directory, not a payload file\n")


def test_payload_that_is_not_json_names_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = payload_file(tmp_path, '{\n "program_id": "sampler"\n "parameters": {}\n}')
    assert invoke(capsys, "sim_a", path) == (
        2, "", f"{PREFIX}{path}: not JSON: Expecting ',' delimiter at line 3 column 2\n")


def test_payload_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{}")
    assert invoke(capsys, "sim_a", str(path)) == (
        2, "", f"{PREFIX}{path}: not a JSON file (not UTF-8 text)\n")


def test_unreadable_payload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = payload_file(tmp_path, SAMPLER)

    def denied(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)  # as root, chmod 0 would not stop us
    assert invoke(capsys, "sim_a", path) == (
        2, "", f"{PREFIX}{path}: cannot read: Permission denied\n")


SHAPES = ("program_id + parameters (an IBM Qiskit primitive); sequence + job_runs (a Pasqal "
          "sequence); human_qir + input_params (an Alice & Bob Felis program); iqmjson + "
          "job_type (an IQM job)")
BAD_PAYLOADS = [
    ([SAMPLER], "a payload is a JSON object, not an array"),
    ("3", "a payload is a JSON object, not 3"),
    ({}, f"not a QRMI payload: expected the fields {SHAPES}; found: none"),
    ({"circuit": "x", "shots": 1}, f"not a QRMI payload: expected the fields {SHAPES}; "
                                   "found: circuit, shots"),
    ({"program_id": "sampler"}, "field 'parameters' is missing (an IBM Qiskit primitive "
                                "payload needs program_id and parameters)"),
    ({"job_runs": 5}, "field 'sequence' is missing (a Pasqal sequence payload needs sequence "
                      "and job_runs)"),
    ({**SAMPLER, "sequence": {}, "job_runs": 1}, "has the fields of an IBM Qiskit primitive "
                                                 "and of a Pasqal sequence payload; keep one"),
    ({"program_id": 3, "parameters": {}}, "field 'program_id' must be a program name such as "
                                          '"sampler" or "estimator", not 3'),
    ({"program_id": "sampler", "parameters": "{}"}, "field 'parameters' must be an object (the "
                                                    "SamplerV2/EstimatorV2 input), not a string"),
    ({"sequence": [], "job_runs": 1}, "field 'sequence' must be a Pulser abstract "
                                      "representation (object), not an array"),
    ({"sequence": "not json", "job_runs": 1}, "field 'sequence' must be a Pulser abstract "
                                              "representation (object), not a string"),
    ({"sequence": {}, "job_runs": 0}, "field 'job_runs' must be an integer >= 1, not 0"),
    ({"sequence": {}, "job_runs": True}, "field 'job_runs' must be an integer >= 1, not true"),
    ({"sequence": {}, "job_runs": 2.5}, "field 'job_runs' must be an integer >= 1, not 2.5"),
    ({"human_qir": None, "input_params": {}}, "field 'human_qir' must be a string of "
                                              "human-readable QIR, not null"),
    ({"human_qir": "qir", "input_params": 5}, "field 'input_params' must be an object, not 5"),
    ({"iqmjson": "", "job_type": "circuit"}, "field 'iqmjson' must be an IQM JSON object (or "
                                             "its JSON text), not a string"),
    ({"iqmjson": "[1]", "job_type": "circuit"}, "field 'iqmjson' must be an IQM JSON object "
                                                "(or its JSON text), not a string"),
    ({"iqmjson": 7, "job_type": "circuit"}, "field 'iqmjson' must be an IQM JSON object (or "
                                            "its JSON text), not 7"),
    ({"iqmjson": {}, "job_type": "batch"}, "field 'job_type' must be one of circuit, run, "
                                           "sweep, not a string"),
    ({"iqmjson": {}, "job_type": "run", "use_timeslot": "yes"},
     "field 'use_timeslot' must be true or false, not a string"),
    ({"iqmjson": {}, "job_type": "run", "tag": "x" * 51},
     "field 'tag' must be a string of at most 50 characters, not a string"),
]


@pytest.mark.parametrize(("data", "message"), BAD_PAYLOADS)
def test_bad_payload_names_the_file_and_the_field(
        data: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = payload_file(tmp_path, data)
    code, out, err = invoke(capsys, "fq", path)
    assert (code, out, err) == (2, "", f"{PREFIX}{path}: {message}\n")
    assert FakeQpuType.instances == []  # refused before anything reached the QPU


def test_payload_kind_the_qpu_type_cannot_run_is_refused_before_the_vendor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = payload_file(tmp_path, {"sequence": {"version": "1"}, "job_runs": 10})
    assert invoke(capsys, "sim_a", path) == (
        2, "", f"{PREFIX}{path}: a Pasqal sequence payload cannot run on sim_a, a "
               "local-simulator QPU: it runs an IBM Qiskit primitive payload "
               "(program_id + parameters)\n")


@pytest.mark.parametrize(("type_name", "data"), [
    ("ibm-quantum-system", {"human_qir": "q", "input_params": {}}),
    ("pasqal-cloud", SAMPLER),
    ("pasqal-local", {"iqmjson": {}, "job_type": "run"}),
    ("iqm-server", {"sequence": {}, "job_runs": 1}),
    ("alice-bob-felis", SAMPLER),
])
def test_every_builtin_type_refuses_other_payload_kinds(
        type_name: str, data: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "q")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", type_name)
    code, _, err = invoke(capsys, "q", payload_file(tmp_path, data))
    assert code == 2
    assert f"payload cannot run on q, a {type_name} QPU" in err


def test_payload_the_qpu_itself_refuses_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = payload_file(tmp_path, {"program_id": "transpiler", "parameters": {}})
    assert invoke(capsys, "sim_a", path) == (
        2, "", f"{PREFIX}{path}: sim_a refused the payload: unknown program_id 'transpiler'\n")


def test_output_in_a_missing_directory_is_refused_before_the_task_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "no" / "out.json"
    assert invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), str(output)) == (
        2, "", f"{PREFIX}cannot write {output}: directory {output.parent} does not exist\n")
    assert FakeQpuType.instances == []


def test_output_that_is_a_directory_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), str(tmp_path)) == (
        2, "", f"{PREFIX}{tmp_path}: is a directory; OUTPUT must be a file name\n")


def test_output_in_a_read_only_directory_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    output = locked / "out.json"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), str(output)) == (
        2, "", f"{PREFIX}cannot write {output}: directory {locked} is not writable\n")
    assert FakeQpuType.instances == []


# ---- payload decoding -------------------------------------------------------------------

def test_pasqal_sequence_given_as_an_object_or_as_a_string_is_passed_as_json() -> None:
    seq = {"version": "1", "register": []}
    as_object = payloads.decode_payload({"sequence": seq, "job_runs": 3}, "f")
    as_string = payloads.decode_payload({"sequence": json.dumps(seq), "job_runs": 3}, "f")
    assert as_object == as_string == PasqalSequence(json.dumps(seq), 3)


def test_felis_human_qir_is_passed_verbatim() -> None:
    qir = "; ModuleID = 'bell'\ndefine void @main() {\n  ret void\n}"
    assert payloads.decode_payload({"human_qir": qir, "input_params": {"nShots": 5}}, "f") == \
        FelisProgram(qir, '{"nShots": 5}')


def test_iqm_job_accepts_json_object_and_optional_fields() -> None:
    data = {"iqmjson": {"circuits": []}, "job_type": "circuit", "use_timeslot": True,
            "tag": "exp-1"}
    assert payloads.decode_payload(data, "f") == IqmJob('{"circuits": []}', "circuit", True,
                                                      "exp-1")
    # qrmi's own generator writes "tag": null
    assert payloads.decode_payload({"iqmjson": "{}", "job_type": "run", "tag": None}, "f") == \
        IqmJob("{}", "run", None, None)


def test_pasqal_example_is_a_real_pulser_sequence() -> None:
    payload = payloads.read_payload(str(EXAMPLES / "pasqal_sequence.json"))
    assert isinstance(payload, PasqalSequence)
    assert payload.job_runs == 100
    pulser = pytest.importorskip("pulser")
    sequence = pulser.Sequence.from_abstract_repr(payload.sequence)
    assert sequence.get_duration() == 1000


@pytest.mark.parametrize("name", ["ibm_sampler.json", "ibm_estimator.json"])
def test_ibm_examples_carry_openqasm3_circuits(name: str) -> None:
    payload = payloads.read_payload(str(EXAMPLES / name))
    assert isinstance(payload, QiskitPrimitive)
    params = json.loads(payload.input)
    assert params["version"] == 2
    assert params["pubs"][0][0].startswith("OPENQASM 3.0;")


# ---- signals: cancel the vendor task, then exit 128+N --------------------------------------

def test_sigterm_cancels_the_vendor_task_and_exits_143(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, SIGNAL="TERM@2")
    code, out, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (code, out) == (143, "")
    assert last_fake().events == ["start T1", "stop T1"]
    assert err.splitlines()[-2:] == [PREFIX + "SIGTERM received: cancelling task T1 on fq",
                                     PREFIX + "task T1 on fq cancelled"]


def test_sigint_cancels_the_vendor_task_and_exits_130(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, SIGNAL="INT@1")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), "--quiet")
    assert code == 130
    assert last_fake().events == ["start T1", "stop T1"]
    assert err.splitlines() == [PREFIX + "SIGINT received: cancelling task T1 on fq",
                                PREFIX + "task T1 on fq cancelled"]


def test_cancel_that_fails_is_reported_and_still_exits_143(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, SIGNAL="TERM@1", STOP_ERROR="Fake unavailable: cancel")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert code == 143
    assert err.splitlines()[-1] == PREFIX + "fq: could not cancel task T1: Fake unavailable: cancel"


def test_signal_before_the_task_starts_starts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, SIGNAL="TERM@create")
    code, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert code == 143
    assert last_fake().events == []
    assert err == PREFIX + "SIGTERM received before the task started; nothing to cancel\n"


def test_json_mode_reports_the_cancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake(monkeypatch, SIGNAL="TERM@1")
    _, _, err = invoke(capsys, "fq", payload_file(tmp_path, SAMPLER), "--json")
    events = [json.loads(line) for line in err.splitlines()]
    assert events[-3:] == [
        {"event": "notice", "message": "SIGTERM received: cancelling task T1 on fq"},
        {"event": "notice", "message": "task T1 on fq cancelled"},
        {"event": "finished", "status": "Cancelled", "exit_code": 143, "output": None}]


def test_signal_handlers_are_restored_after_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    fake(monkeypatch, STATUSES="Completed")
    invoke(capsys, "fq", payload_file(tmp_path, SAMPLER))
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


CHILD = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {tests!r})
    from slurm_qpu.vendors import builtin, record
    builtin.vendors()["fake-qpu"] = record.Vendor("fake-qpu", "test_runner:FakeQpuType")
    from slurm_qpu.cli import run as runner
    from test_runner import parse
    sys.exit(runner.main(parse(sys.argv[1:])))
    """)


def test_scancel_sigterm_to_a_runner_process_cancels_the_vendor_task(tmp_path: Path) -> None:
    log = tmp_path / "vendor.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("sim_a_")}
    env.update(QRMI_JOB_QPU_RESOURCES="fq", QRMI_JOB_QPU_TYPES="fake-qpu",
               fq_FAKE_LOG=str(log))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent)), "fq",
         payload_file(tmp_path, SAMPLER), "--poll", "0.05"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr is not None
        first = child.stderr.readline()
        assert first == PREFIX + "fq: started task T1\n"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 143
    assert out == ""
    assert PREFIX + "SIGTERM received: cancelling task T1 on fq\n" in err
    assert err.endswith(PREFIX + "task T1 on fq cancelled\n")
    assert log.read_text().splitlines() == ["start T1", "stop T1"]


# ---- command line -------------------------------------------------------------------------

def test_help_describes_payloads_signals_and_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse(["--help"])
    assert excinfo.value.code == 0
    text = capsys.readouterr().out
    assert "usage: slurm-qpu run [-h] [--poll SECONDS] [-q] [--json] NAME INPUT [OUTPUT]" in text
    for needle in ['{"program_id": "sampler" | "estimator"', '{"sequence":',
                   '{"human_qir":', '{"iqmjson":', "SIGTERM (scancel, time limit)",
                   "0 completed, 1 failed", "130 on SIGINT, 143 on SIGTERM"]:
        assert needle in text


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "argument --poll: 'soon' is not a number of seconds"),
    ("0", "argument --poll: 0 must be more than 0 and at most 3600"),
    ("7200", "argument --poll: 7200 must be more than 0 and at most 3600"),
])
def test_bad_poll_interval_is_a_usage_error(
        value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse(["sim_a", "in.json", "--poll", value])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.endswith(f"slurm-qpu run: error: {message}\n")


def test_missing_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse(["sim_a"])
    assert excinfo.value.code == 2
    assert "the following arguments are required: INPUT" in capsys.readouterr().err


def test_parser_dispatches_to_main() -> None:
    assert parse(["sim_a", "in.json"]).func is runner.main

