"""ibm-quantum-compute-service against a fake IBM Cloud (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_ibm import API_KEY, FakeIbm, settings
from vendor_fake import ATTEMPT_SECONDS, DEADLINE, stall_every_attempt

from slurm_qpu.vendors.common.base import (
    JobContext,
    MissingSetting,
    PasqalSequence,
    QiskitPrimitive,
    ResourceSpec,
    TaskNotReady,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorNotFound,
    VendorUnavailable,
)
from slurm_qpu.vendors.ibm_quantum_compute.resource import IbmQuantumCompute, IbmQuantumComputeType
from slurm_qpu.vendors.registry import get_type
from slurm_qpu.vendors.type_names import current_environment

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)


def qpu(fake: FakeIbm, name: str = "ibm_fez", timeout: int | None = 600,
        **env: str) -> IbmQuantumCompute:
    spec = ResourceSpec(name, "ibm-quantum-compute-service", settings(**env),
                        JobContext(42, 1000, "alice", timeout))
    return IbmQuantumComputeType(fake.transport(), FAST).create(spec)


def test_registry_builds_the_ibm_type_for_current_and_legacy_names() -> None:
    assert isinstance(get_type("ibm-quantum-compute-service"), IbmQuantumComputeType)
    assert isinstance(get_type("qiskit-runtime-service"), IbmQuantumComputeType)


def test_legacy_qrs_settings_are_read_as_qcs() -> None:
    legacy = {k.replace("QCS", "QRS"): v for k, v in settings().items()}
    fake = FakeIbm()
    spec = ResourceSpec("ibm_fez", "ibm-quantum-compute-service",
                        current_environment("qiskit-runtime-service", legacy))
    assert IbmQuantumComputeType(fake.transport(), FAST).create(spec).is_accessible()


def test_api_key_is_exchanged_once_and_the_token_reused() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    assert q.is_accessible()
    assert q.is_accessible()
    assert fake.tokens_issued == 1
    assert fake.calls("POST").count("/identity/token") == 1


def test_token_is_refreshed_before_it_expires() -> None:
    fake = FakeIbm(expires_in=300)  # less than the 6-minute refresh margin
    q = qpu(fake)
    q.is_accessible()
    q.is_accessible()
    assert fake.tokens_issued == 2


def test_expired_token_401_gets_a_new_token_and_the_call_succeeds() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    q.is_accessible()
    fake.valid_tokens.clear()  # IBM revoked/expired it early
    assert q.is_accessible()
    assert fake.tokens_issued == 2


def test_bad_api_key_is_an_auth_error_with_iams_message() -> None:
    fake = FakeIbm()
    with pytest.raises(VendorAuthError) as exc:
        qpu(fake, QRMI_IBM_QCS_IAM_APIKEY="wrong").is_accessible()
    assert "Provided API key could not be found." in str(exc.value)
    assert API_KEY not in str(exc.value) and "wrong" not in str(exc.value)


def test_unknown_backend_404_carries_ibms_message() -> None:
    with pytest.raises(VendorNotFound, match="Backend ibm_nowhere not found"):
        qpu(FakeIbm(), name="ibm_nowhere").is_accessible()


def test_backend_in_maintenance_is_not_accessible() -> None:
    assert not qpu(FakeIbm(backends={"ibm_fez": "maintenance"})).is_accessible()


def test_not_accessible_backend_says_why() -> None:
    q = qpu(FakeIbm(backends={"ibm_fez": "maintenance"}))
    q.is_accessible()
    assert q.status_reason == "IBM Quantum reports ibm_fez maintenance"


def test_5xx_then_success_is_retried() -> None:
    fake = FakeIbm()
    fake.faults[("GET", "/api/v1/backends/ibm_fez/status")] = [
        httpx.Response(503, json={"errors": [{"message": "busy"}]}),
        httpx.Response(502, text="bad gateway")]
    assert qpu(fake).is_accessible()
    assert fake.calls("GET").count("/api/v1/backends/ibm_fez/status") == 3


def test_persistent_5xx_gives_up_with_the_vendors_message() -> None:
    fake = FakeIbm()
    fake.faults[("POST", "/api/v1/sessions")] = [
        httpx.Response(503, json={"errors": [{"message": "Service under maintenance"}]})] * 5
    with pytest.raises(VendorUnavailable, match="Service under maintenance; gave up after 3"):
        qpu(fake).acquire()


def test_timeouts_stop_at_the_overall_deadline() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    q.iam.token()  # authenticate first
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match="no answer within"):
        q.is_accessible()
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline


def test_acquire_opens_a_dedicated_session_with_max_ttl() -> None:
    fake = FakeIbm()
    token = qpu(fake).acquire()
    assert fake.sessions[token]["mode"] == "dedicated"
    assert fake.sessions[token]["max_ttl"] == 28800


def test_batch_mode_and_ttl_come_from_the_settings() -> None:
    fake = FakeIbm()
    token = qpu(fake, QRMI_IBM_QCS_SESSION_MODE="batch",
                QRMI_IBM_QCS_SESSION_MAX_TTL="600").acquire()
    assert fake.sessions[token]["mode"] == "batch"
    assert fake.sessions[token]["max_ttl"] == 600


def test_invalid_session_mode_is_a_setting_error() -> None:
    with pytest.raises(MissingSetting, match="SESSION_MODE='exclusive' is not one of"):
        qpu(FakeIbm(), QRMI_IBM_QCS_SESSION_MODE="exclusive")


def test_missing_setting_names_the_key() -> None:
    env = settings()
    del env["QRMI_IBM_QCS_SERVICE_CRN"]
    spec = ResourceSpec("ibm_fez", "ibm-quantum-compute-service", env)
    with pytest.raises(MissingSetting, match="QRMI_IBM_QCS_SERVICE_CRN is missing"):
        IbmQuantumComputeType(FakeIbm().transport()).create(spec)


def test_preset_session_is_reused_when_still_alive() -> None:
    fake = FakeIbm()
    first = qpu(fake).acquire()
    assert qpu(fake, QRMI_IBM_QCS_SESSION_ID=first).acquire() == first
    assert len(fake.sessions) == 1


def test_preset_session_near_its_end_is_replaced() -> None:
    fake = FakeIbm()
    old = qpu(fake).acquire()
    fake.sessions[old]["active_ttl"] = 10
    new = qpu(fake, QRMI_IBM_QCS_SESSION_ID=old).acquire()
    assert new != old
    assert fake.sessions[old]["accepting_jobs"] is False


def test_release_without_pending_jobs_stops_the_session_accepting_jobs() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    token = q.acquire()
    q.release(token)
    assert fake.sessions[token]["accepting_jobs"] is False
    assert "cancelled" not in fake.sessions[token]


def test_release_with_pending_jobs_closes_the_session() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    token = q.acquire()
    q.task_start(QiskitPrimitive(json.dumps({"pubs": []}), "sampler"))
    q.release(token)
    assert fake.sessions[token]["cancelled"] is True
    assert fake.calls("DELETE") == [f"/api/v1/sessions/{token}/close"]


def test_release_of_an_unknown_session_is_a_no_op() -> None:
    qpu(FakeIbm()).release("session-gone")


def test_tasks_run_in_the_session_with_the_job_timeout_as_cost() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    token = q.acquire()
    task = q.task_start(QiskitPrimitive(json.dumps({"pubs": [], "version": 2}), "sampler"))
    job = fake.jobs[task]
    assert job["session_id"] == token and job["cost"] == 600
    assert job["program"] == {"id": "sampler"}
    assert q.task_status(task) is TaskStatus.QUEUED
    with pytest.raises(TaskNotReady, match="is Queued"):
        q.task_result(task)
    fake.finish(task)
    assert q.task_status(task) is TaskStatus.COMPLETED
    assert q.task_result(task).value == '{"__type__": "PrimitiveResult"}'
    assert q.task_logs(task) == "log line\n"


def test_task_stop_cancels_a_queued_job_and_ignores_a_finished_one() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    task = q.task_start(QiskitPrimitive("{}", "estimator"))
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    q.task_stop(task)  # already final: no cancel call
    assert fake.calls("POST").count(f"/api/v1/jobs/{task}/cancel") == 1


def test_unsupported_payloads_are_refused() -> None:
    q = qpu(FakeIbm())
    with pytest.raises(UnsupportedPayload, match="runs Qiskit primitives, not PasqalSequence"):
        q.task_start(PasqalSequence("{}", 1))
    with pytest.raises(UnsupportedPayload, match="unknown program_id 'qaoa'"):
        q.task_start(QiskitPrimitive("{}", "qaoa"))


def test_target_and_metadata() -> None:
    fake = FakeIbm()
    q = qpu(fake)
    token = q.acquire()
    target = json.loads(q.target().value)
    assert target["configuration"]["n_qubits"] == 156
    assert target["properties"]["backend_name"] == "ibm_fez"
    assert q.metadata() == {"backend_name": "ibm_fez", "session_id": token}
