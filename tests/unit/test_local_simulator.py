"""The network-free local-simulator QPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_qpu.vendors.common.base import (
    AcquireError,
    JobContext,
    NotAccessible,
    PasqalSequence,
    QiskitPrimitive,
    QuantumResource,
    ReleaseError,
    ResourceSpec,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.local_simulator.resource import LocalSimulator


def sim(env: dict[str, str] | None = None, name: str = "sim_a", job_id: int = 7) -> LocalSimulator:
    return LocalSimulator(ResourceSpec(name, "local-simulator", env or {}, JobContext(job_id)))


def ledger_rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_local_simulator_is_a_quantum_resource() -> None:
    assert isinstance(sim(), QuantumResource)


def test_acquire_returns_a_fresh_token_each_time() -> None:
    s = sim()
    first, second = s.acquire(), s.acquire()
    assert first.startswith("sim-")
    assert first != second


def test_acquire_and_release_are_written_to_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "v" / "ledger.jsonl"
    s = sim({"QRMI_LOCAL_SIM_LEDGER": str(ledger)})
    token = s.acquire()
    s.release(token)
    rows = ledger_rows(ledger)
    assert [(r["event"], r["resource"], r["token"], r["job_id"]) for r in rows] == [
        ("acquire", "sim_a", token, 7), ("release", "sim_a", token, 7)]
    assert all(isinstance(r["pid"], int) and isinstance(r["time"], float) for r in rows)


def test_without_ledger_nothing_is_written(tmp_path: Path) -> None:
    s = sim()
    s.release(s.acquire())
    assert list(tmp_path.iterdir()) == []


def test_release_of_unknown_token_is_safe(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    sim({"QRMI_LOCAL_SIM_LEDGER": str(ledger)}).release("never-acquired")
    assert [r["event"] for r in ledger_rows(ledger)] == ["release"]


def test_acquire_error_injection_fails_with_the_given_message(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    s = sim({"QRMI_LOCAL_SIM_ACQUIRE_ERROR": "quota exceeded",
             "QRMI_LOCAL_SIM_LEDGER": str(ledger)})
    with pytest.raises(AcquireError) as excinfo:
        s.acquire()
    assert str(excinfo.value) == "quota exceeded"
    assert not ledger.exists()


def test_release_error_injection_fails_with_the_given_message() -> None:
    with pytest.raises(ReleaseError) as excinfo:
        sim({"QRMI_LOCAL_SIM_RELEASE_ERROR": "session gone"}).release("t")
    assert str(excinfo.value) == "session gone"


@pytest.mark.parametrize(("status", "shown"), [("online", "online"), ("ONLINE", "online"),
                                               ("offline", "offline"),
                                               ("maintenance", "maintenance"),
                                               ("weird", "offline")])
def test_status_setting(status: str, shown: str) -> None:
    s = sim({"QRMI_LOCAL_SIM_STATUS": status})
    assert s.status() == shown
    assert s.is_accessible() is (shown == "online")


def test_default_status_is_online() -> None:
    assert sim().is_accessible() is True


def test_acquire_of_inaccessible_simulator_says_why() -> None:
    with pytest.raises(NotAccessible) as excinfo:
        sim({"QRMI_LOCAL_SIM_STATUS": "maintenance"}).acquire()
    assert str(excinfo.value) == "sim_a is maintenance"


def test_sampler_task_returns_synthetic_counts() -> None:
    s = sim()
    payload = QiskitPrimitive(json.dumps({"pubs": [["circ", None, 100], ["circ2"]],
                                          "shots": 10}), "sampler")
    task = s.task_start(payload)
    assert s.task_status(task) is TaskStatus.COMPLETED
    result = json.loads(s.task_result(task).value)
    assert result == {
        "results": [{"data": {"meas": {"counts": {"0": 100}}}, "shots": 100},
                    {"data": {"meas": {"counts": {"0": 10}}}, "shots": 10}],
        "metadata": {"synthetic": True, "backend": "sim_a"},
    }


def test_sampler_default_shots_is_1024() -> None:
    s = sim()
    task = s.task_start(QiskitPrimitive(json.dumps({"pubs": [["c"]]}), "sampler"))
    assert json.loads(s.task_result(task).value)["results"][0]["shots"] == 1024


def test_estimator_task_returns_zero_expectation_values() -> None:
    s = sim()
    task = s.task_start(QiskitPrimitive(json.dumps({"pubs": [["c", "obs"]]}), "estimator"))
    assert json.loads(s.task_result(task).value)["results"] == [{"data": {"evs": 0.0,
                                                                          "stds": 0.0}}]


def test_task_logs_mention_the_synthetic_result() -> None:
    s = sim()
    task = s.task_start(QiskitPrimitive('{"pubs": []}', "sampler"))
    assert s.task_logs(task) == "Completed: synthetic result from local-simulator"


def test_task_stop_of_completed_task_keeps_it_completed() -> None:
    s = sim()
    task = s.task_start(QiskitPrimitive('{"pubs": []}', "sampler"))
    s.task_stop(task)
    assert s.task_status(task) is TaskStatus.COMPLETED
    assert isinstance(s.task_result(task), TaskResult)


def test_non_qiskit_payload_is_unsupported() -> None:
    with pytest.raises(UnsupportedPayload) as excinfo:
        sim().task_start(PasqalSequence("seq", 10))
    assert str(excinfo.value) == ("local-simulator runs Qiskit primitive payloads only, not "
                                  "PasqalSequence")


def test_unknown_program_id_is_unsupported() -> None:
    with pytest.raises(UnsupportedPayload) as excinfo:
        sim().task_start(QiskitPrimitive("{}", "circuit-runner"))
    assert str(excinfo.value) == "unknown program_id 'circuit-runner'"


def test_payload_input_that_is_not_json_is_unsupported() -> None:
    with pytest.raises(UnsupportedPayload) as excinfo:
        sim().task_start(QiskitPrimitive("not json", "sampler"))
    assert str(excinfo.value) == "payload input is not JSON: Expecting value"


@pytest.mark.parametrize("call", ["task_status", "task_result", "task_logs", "task_stop"])
def test_unknown_task_is_not_ready(call: str) -> None:
    with pytest.raises(TaskNotReady) as excinfo:
        getattr(sim(), call)("simtask-nope")
    assert str(excinfo.value) == "no task simtask-nope on sim_a"


def test_target_describes_the_device() -> None:
    target = json.loads(sim({"QRMI_LOCAL_SIM_NUM_QUBITS": "20"}).target().value)
    assert target == {"backend_name": "sim_a", "num_qubits": 20, "simulator": True}


def test_default_device_has_five_qubits() -> None:
    assert sim().num_qubits == 5


def test_metadata_names_the_backend() -> None:
    assert sim(name="sim_b").metadata() == {"backend_name": "sim_b"}


def test_sampler_with_null_shots_uses_the_default() -> None:
    s = sim()
    task = s.task_start(QiskitPrimitive(json.dumps({"pubs": [["c"]], "shots": None}),
                                        "sampler"))
    assert json.loads(s.task_result(task).value)["results"][0]["shots"] == 1024
