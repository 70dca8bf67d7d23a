"""iqm-server against a fake IQM Server API (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_iqm import TOKEN, FakeIqm, _qc, settings
from vendor_fake import ATTEMPT_SECONDS, DEADLINE, stall_every_attempt

from slurm_qpu.vendors.common.base import (
    FelisProgram,
    IqmJob,
    MissingSetting,
    ResourceError,
    ResourceSpec,
    TaskNotReady,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorError,
    VendorNotFound,
    VendorUnavailable,
)
from slurm_qpu.vendors.iqm_server.resource import IqmServer, IqmServerType, split_name
from slurm_qpu.vendors.registry import get_type

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
CIRCUIT = json.dumps({"circuits": [{"name": "bell", "instructions": []}], "shots": 8})


def qpu(fake: FakeIqm, name: str = "garnet_mock", **env: str) -> IqmServer:
    return IqmServerType(fake.transport(), FAST).create(
        ResourceSpec(name, "iqm-server", settings(**env)))


def test_registry_builds_the_iqm_type() -> None:
    assert isinstance(get_type("iqm-server"), IqmServerType)


@pytest.mark.parametrize(("name", "qc", "calset"), [
    ("garnet_mock", "garnet:mock", "default"),
    ("emerald_x_mock", "emerald_x:mock", "default"),  # only the last "_" changes
    ("garnet", "garnet", "default"),
    ("garnet_mock,cal-1", "garnet:mock", "cal-1"),
    ("sirius,", "sirius", "default"),
])
def test_name_maps_to_quantum_computer_and_calibration_set(name: str, qc: str,
                                                           calset: str) -> None:
    assert split_name(name) == (qc, calset)


def test_requests_use_the_mapped_alias_and_bearer_token() -> None:
    fake = FakeIqm()
    assert qpu(fake).is_accessible()
    assert fake.calls("GET") == ["/api/v1/quantum-computers/garnet:mock/health"]


@pytest.mark.parametrize("key", ["QRMI_IQM_ISA_ENDPOINT", "QRMI_IQM_ISA_TOKEN"])
def test_missing_setting_names_the_key(key: str) -> None:
    env = settings()
    del env[key]
    with pytest.raises(MissingSetting) as exc:
        IqmServerType().create(ResourceSpec("garnet_mock", "iqm-server", env))
    assert str(exc.value) == (f"resource garnet_mock: setting {key} is missing from its "
                              "'environment' in the config")


def test_bad_token_is_an_auth_error_with_iqms_message() -> None:
    with pytest.raises(VendorAuthError) as exc:
        qpu(FakeIqm(), QRMI_IQM_ISA_TOKEN="wrong").is_accessible()
    assert str(exc.value) == ("IQM Server refused the credentials (401): Invalid or expired "
                              "API token")
    assert "wrong" not in str(exc.value) and TOKEN not in str(exc.value)


def test_unhealthy_quantum_computer_is_not_accessible() -> None:
    assert not qpu(FakeIqm(qcs={"garnet:mock": _qc(healthy=False)})).is_accessible()


def test_quantum_computer_in_maintenance_is_not_accessible() -> None:
    fake = FakeIqm(qcs={"garnet:mock": _qc(healthy=None, operational="maintenance")})
    assert not qpu(fake).is_accessible()


def test_older_health_shape_nested_under_status_is_read() -> None:
    fake = FakeIqm()
    fake.faults[("GET", "/api/v1/quantum-computers/garnet:mock/health")] = [
        httpx.Response(200, json={"status": {"health": {"healthy": True,
                                                        "updated_at": "x"}}})]
    assert qpu(fake).is_accessible()


def test_unknown_quantum_computer_404_carries_iqms_message() -> None:
    with pytest.raises(VendorNotFound) as exc:
        qpu(FakeIqm(), name="nowhere_mock").is_accessible()
    assert str(exc.value) == "IQM Server: not found: Quantum computer 'nowhere:mock' not found"


def test_5xx_then_success_is_retried() -> None:
    fake = FakeIqm()
    fake.faults[("GET", "/api/v1/quantum-computers/garnet:mock/health")] = [
        httpx.Response(503, json={"message": "Service temporarily unavailable"}),
        httpx.Response(502, text="bad gateway")]
    assert qpu(fake).is_accessible()
    assert fake.calls("GET").count("/api/v1/quantum-computers/garnet:mock/health") == 3


def test_persistent_5xx_gives_up_with_the_vendors_message() -> None:
    fake = FakeIqm()
    fake.faults[("GET", "/api/v1/quantum-computers/garnet:mock/health")] = [
        httpx.Response(503, json={"message": "Server under maintenance"})] * 5
    with pytest.raises(VendorUnavailable, match="Server under maintenance; gave up after 3"):
        qpu(fake).is_accessible()


def test_timeouts_stop_at_the_overall_deadline() -> None:
    q = qpu(FakeIqm())
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match="no answer within"):
        q.is_accessible()
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline


def test_acquire_mints_a_fresh_token_and_release_is_a_no_op() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    first, second = q.acquire(), q.acquire()
    assert first != second and len(first) == 36
    q.release(first)
    assert fake.requests == []  # IQM has no reservation API: nothing is sent
    assert q.metadata()["acquisition_token"] == second


def test_preset_acquisition_token_is_reported_in_metadata() -> None:
    q = qpu(FakeIqm(), QRMI_JOB_ACQUISITION_TOKEN="tok-7")
    assert q.metadata() == {"backend_name": "garnet:mock", "calibration_set": "default",
                            "acquisition_token": "tok-7"}


def test_full_task_cycle() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    task = q.task_start(IqmJob(CIRCUIT, "circuit", use_timeslot=False, tag="run-42"))
    assert fake.payloads[task] == json.loads(CIRCUIT)
    assert fake.requests[-1] == ("POST", "/api/v1/jobs/garnet:mock/circuit",
                                 "use_timeslot=false&tag=run-42")
    assert q.task_status(task) is TaskStatus.QUEUED
    with pytest.raises(TaskNotReady, match="is Queued"):
        q.task_result(task)
    fake.jobs[task]["status"] = "processing"
    assert q.task_status(task) is TaskStatus.RUNNING
    fake.finish(task)
    assert q.task_status(task) is TaskStatus.COMPLETED
    # measurement_counts exists for this job; measurements does not (null, as in qrmi)
    assert json.loads(q.task_result(task).value) == {
        "measurements": None, "measurement_counts": [{"counts": {"00": 3, "11": 5}}]}
    logs = q.task_logs(task)
    assert "status: completed" in logs
    assert "[station-control] execution_completed" in logs
    assert "[compiler] 2 circuits compiled" in logs


def test_query_parameters_are_left_out_when_not_given() -> None:
    fake = FakeIqm()
    qpu(fake).task_start(IqmJob(CIRCUIT, "sweep"))
    assert fake.requests[-1] == ("POST", "/api/v1/jobs/garnet:mock/sweep", "")


def test_failed_jobs_vendor_message_reaches_the_user() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    task = q.task_start(IqmJob(CIRCUIT, "circuit"))
    fake.finish(task, "failed", [{"error_code": "compilation_failed", "source": "compiler",
                                  "message": "Gate cz not calibrated for QB1-QB2"}])
    assert q.task_status(task) is TaskStatus.FAILED
    with pytest.raises(ResourceError) as exc:
        q.task_result(task)
    assert str(exc.value) == (f"IQM job {task} is Failed: Gate cz not calibrated for QB1-QB2 "
                              "(compilation_failed)")
    assert not isinstance(exc.value, TaskNotReady)  # final: polling again will not help
    assert "errors: Gate cz not calibrated" in q.task_logs(task)


def test_timeslot_refusal_403_is_not_reported_as_bad_credentials() -> None:
    fake = FakeIqm(qcs={"garnet:mock": _qc(timeslot_required=True)})
    q = qpu(fake)
    with pytest.raises(VendorError) as exc:
        q.task_start(IqmJob(CIRCUIT, "circuit"))
    assert not isinstance(exc.value, VendorAuthError)
    assert str(exc.value) == ("IQM Server refused POST /api/v1/jobs/garnet:mock/circuit (403): "
                              "This quantum computer only accepts jobs in a booked timeslot")
    assert q.task_start(IqmJob(CIRCUIT, "circuit", use_timeslot=True))


def test_task_stop_cancels_a_waiting_job_and_ignores_a_final_one() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    task = q.task_start(IqmJob(CIRCUIT, "circuit"))
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    q.task_stop(task)  # already final: no second cancel
    assert fake.calls("POST").count(f"/api/v1/jobs/{task}/cancel") == 1


def test_task_stop_tolerates_a_job_finishing_before_the_cancel() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    task = q.task_start(IqmJob(CIRCUIT, "circuit"))
    path = f"/api/v1/jobs/{task}/cancel"
    fake.jobs[task]["status"] = "processing"

    def racing(request: httpx.Request) -> httpx.Response:
        if request.url.path != path:
            return fake.handle(request)
        fake.finish(task)  # the job completes just before our cancel arrives
        return httpx.Response(403, json={"error_code": "illegal_job_status",
                                         "message": "Job is completed"})

    q.api._http._transport = httpx.MockTransport(racing)
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.COMPLETED


def test_task_stop_reports_a_refused_cancel_of_a_running_job() -> None:
    fake = FakeIqm()
    q = qpu(fake)
    task = q.task_start(IqmJob(CIRCUIT, "circuit"))
    fake.faults[("POST", f"/api/v1/jobs/{task}/cancel")] = [httpx.Response(403, json={
        "error_code": "forbidden", "message": "Not your job"})]
    with pytest.raises(VendorError, match=r"\(403\): Not your job"):
        q.task_stop(task)


def test_unknown_job_is_not_found() -> None:
    with pytest.raises(VendorNotFound, match="Job 0000 not found"):
        qpu(FakeIqm()).task_status("0000")


def test_unsupported_payloads_are_refused() -> None:
    q = qpu(FakeIqm())
    with pytest.raises(UnsupportedPayload, match="runs IQM jobs, not FelisProgram"):
        q.task_start(FelisProgram("qir", "{}"))
    with pytest.raises(UnsupportedPayload, match="unknown IQM job_type 'pulse'; use one of "
                                                 "circuit, run, sweep"):
        q.task_start(IqmJob(CIRCUIT, "pulse"))
    with pytest.raises(UnsupportedPayload, match="payload iqmjson is not JSON"):
        q.task_start(IqmJob("{oops", "circuit"))
    with pytest.raises(UnsupportedPayload, match="tag is longer than 50 characters"):
        q.task_start(IqmJob(CIRCUIT, "circuit", tag="x" * 51))


def test_target_combines_architecture_and_calibration_set() -> None:
    fake = FakeIqm()
    target = json.loads(qpu(fake, name="garnet_mock,cal-1").target().value)
    assert target["static_quantum_architecture"][0]["qubits"] == ["QB1", "QB2"]
    assert target["dynamic_quantum_architecture"]["calibration_set_id"] == "cal-1"
    assert target["calibration_set"]["calibration_set_id"] == "cal-1"
    assert target["quality_metrics"] is None  # the server has none for this set: 404
    assert "/api/v1/calibration-sets/garnet:mock/cal-1/dynamic-quantum-architecture" in \
        fake.calls("GET")


def test_target_of_an_unknown_calibration_set_is_not_found() -> None:
    with pytest.raises(VendorNotFound, match="Calibration set cal-9 not found"):
        qpu(FakeIqm(), name="garnet_mock,cal-9").target()
