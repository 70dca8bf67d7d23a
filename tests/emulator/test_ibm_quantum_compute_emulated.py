"""slurm-qpu's own ``ibm-quantum-compute-service`` type against the emulated IBM Quantum
Compute API (real HTTP, real IAM tokens)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from slurm_qpu.vendors.common.base import (
    JobContext,
    QiskitPrimitive,
    ResourceSpec,
    TaskNotReady,
    TaskStatus,
)
from slurm_qpu.vendors.common.http import RetryPolicy, VendorNotFound
from slurm_qpu.vendors.ibm_quantum_compute.resource import IbmQuantumCompute, IbmQuantumComputeType
from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.iam import IamService
from slurm_qpu_emulator.ibm_runtime import IbmRuntimeService, ibm_runtime_services
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Server

Serve = Callable[..., Server]
FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=10.0)
# ISA for ibm_manila (basis cx, id, rz, sx, x): a Bell pair
BELL = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] meas; rz(pi/2) $0; sx $0; rz(pi/2) $0; '
        "cx $0, $1; meas[0] = measure $0; meas[1] = measure $1;")
SAMPLER = QiskitPrimitive(json.dumps({"pubs": [[BELL, None, 100]], "version": 2,
                                      "support_qiskit": True}), "sampler")


@dataclasses.dataclass
class Lab:
    server: Server
    api: IbmRuntimeService
    issuer: TokenIssuer

    def qpu(self, name: str = "ibm_manila", **env: str) -> IbmQuantumCompute:
        entry = next(e for e in self.api.qrmi_resources(self.server.url) if e["name"] == name)
        spec = ResourceSpec(name, entry["type"], {**entry["environment"], **env},
                            JobContext(42, 1000, "alice", 600))
        return IbmQuantumComputeType(retry=FAST).create(spec)

    def session(self, session_id: str) -> Any:
        return self.api.state.session_view(self.api.state.sessions[session_id])

    def iam_calls(self) -> int:
        return sum(1 for r in self.server.log if r.path == "/identity/token")


@pytest.fixture
def lab(serve: Serve, fast_config: EmulatorConfig, issuer: TokenIssuer) -> Lab:
    services = ibm_runtime_services(fast_config, issuer)
    server = serve(IamService(fast_config, issuer), *services)
    api = services[0]
    assert isinstance(api, IbmRuntimeService)
    return Lab(server, api, issuer)


def wait_final(qpu: IbmQuantumCompute, task_id: str, timeout: float = 20.0) -> TaskStatus:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = qpu.task_status(task_id)
        if status not in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            return status
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


def test_an_online_backend_is_accessible(lab: Lab) -> None:
    assert lab.qpu().is_accessible()


def test_acquire_opens_a_dedicated_session_on_the_backend(lab: Lab) -> None:
    token = lab.qpu().acquire()
    session = lab.session(token)
    assert session["backend_name"] == "ibm_manila" and session["mode"] == "dedicated"
    assert session["state"] == "open" and session["max_ttl"] == 28800


def test_the_session_mode_setting_opens_a_batch(lab: Lab) -> None:
    token = lab.qpu(QRMI_IBM_QCS_SESSION_MODE="batch").acquire()
    assert lab.session(token)["mode"] == "batch"


def test_a_task_runs_in_the_session_and_returns_counts(lab: Lab) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    qpu = lab.qpu()
    token = qpu.acquire()
    task = qpu.task_start(SAMPLER)
    assert wait_final(qpu, task) is TaskStatus.COMPLETED
    job = lab.api.state.jobs[task]
    assert job.session_id == token and job.cost == 600  # the Slurm time limit
    counts = json.loads(qpu.task_result(task).value, cls=RuntimeDecoder)[0].data.meas
    assert set(counts.get_counts()) == {"00", "11"} and counts.num_shots == 100
    assert "job completed" in qpu.task_logs(task)
    assert qpu.metadata() == {"backend_name": "ibm_manila", "session_id": token}


def test_results_of_a_queued_task_are_not_ready(lab: Lab) -> None:
    qpu = lab.qpu()
    lab.api.state.config.job_seconds = 60  # jobs stay queued for 30 s
    task = qpu.task_start(SAMPLER)
    with pytest.raises(TaskNotReady) as raised:
        qpu.task_result(task)
    assert str(raised.value) == f"job {task} is Queued"
    qpu.task_stop(task)
    assert qpu.task_status(task) is TaskStatus.CANCELLED


def test_a_failed_task_reports_failed(lab: Lab) -> None:
    qpu = lab.qpu()
    bad = QiskitPrimitive(json.dumps({"pubs": [[BELL]], "version": 1}), "sampler")
    assert wait_final(qpu, qpu.task_start(bad)) is TaskStatus.FAILED


def test_release_closes_an_idle_session(lab: Lab) -> None:
    qpu = lab.qpu()
    token = qpu.acquire()
    qpu.release(token)
    session = lab.session(token)
    assert session["state"] == "closed" and session["accepting_jobs"] is False


def test_release_cancels_the_session_when_jobs_are_pending(lab: Lab) -> None:
    qpu = lab.qpu()
    token = qpu.acquire()
    lab.api.state.config.job_seconds = 60  # still queued at release
    task = qpu.task_start(SAMPLER)
    qpu.release(token)
    assert lab.session(token)["state"] == "closed"
    assert qpu.task_status(task) is TaskStatus.CANCELLED


def test_release_twice_is_harmless(lab: Lab) -> None:
    qpu = lab.qpu()
    token = qpu.acquire()
    qpu.release(token)
    qpu.release(token)
    assert lab.session(token)["state"] == "closed"


def test_a_preset_session_is_reused_by_acquire(lab: Lab) -> None:
    first = lab.qpu().acquire()
    assert lab.qpu(QRMI_IBM_QCS_SESSION_ID=first).acquire() == first
    assert len(lab.api.state.sessions) == 1


def test_an_expired_token_is_replaced_and_the_call_succeeds(lab: Lab) -> None:
    qpu = lab.qpu()
    assert qpu.is_accessible()
    lab.issuer.expire_all()  # IAM revoked every token
    assert qpu.is_accessible()
    assert lab.iam_calls() == 2
    assert [r.status for r in lab.server.log if r.path.endswith("/status")] == [200, 401, 200]


def test_maintenance_makes_the_qpu_not_accessible(lab: Lab) -> None:
    lab.server.set_maintenance("ibm_manila", True)
    assert not lab.qpu().is_accessible()
    assert lab.qpu("ibm_brisbane").is_accessible()
    lab.server.set_maintenance("ibm_manila", False)
    assert lab.qpu().is_accessible()


def test_the_target_is_the_backends_configuration_and_properties(lab: Lab) -> None:
    target = json.loads(lab.qpu().target().value)
    assert target["configuration"]["backend_name"] == "ibm_manila"
    assert target["properties"]["backend_name"] == "ibm_manila"


def test_an_unknown_backend_is_not_found(lab: Lab) -> None:
    entry = lab.api.qrmi_resources(lab.server.url)[0]
    spec = ResourceSpec("ibm_nowhere", entry["type"], entry["environment"])
    with pytest.raises(VendorNotFound) as raised:
        IbmQuantumComputeType(retry=FAST).create(spec).is_accessible()
    assert raised.value.vendor_message == "Backend ibm_nowhere not found."
