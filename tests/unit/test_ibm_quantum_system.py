"""ibm-quantum-system against a fake IAM + IBM Quantum System API + S3 (httpx.MockTransport)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from fake_ibm_system import (
    API_KEY,
    LOGS,
    RESULTS,
    S3_FOR_QSAPI,
    FakeIbmSystem,
    settings,
)
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
    VendorError,
    VendorNotFound,
    VendorUnavailable,
)
from slurm_qpu.vendors.ibm_quantum_system.resource import (
    IbmQuantumSystem,
    IbmQuantumSystemType,
    Lanes,
)
from slurm_qpu.vendors.registry import get_type
from slurm_qpu.vendors.type_names import current_environment

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
SAMPLER = QiskitPrimitive(json.dumps({"pubs": [["OPENQASM 3.0;", None, 100]], "version": 2}),
                          "sampler")
REQUIRED = ["QRMI_IBM_QS_ENDPOINT", "QRMI_IBM_QS_IAM_ENDPOINT", "QRMI_IBM_QS_IAM_APIKEY",
            "QRMI_IBM_QS_SERVICE_CRN", "QRMI_IBM_QS_AWS_ACCESS_KEY_ID",
            "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY", "QRMI_IBM_QS_S3_ENDPOINT",
            "QRMI_IBM_QS_S3_BUCKET", "QRMI_IBM_QS_S3_REGION"]


def qpu(fake: FakeIbmSystem, name: str = "test_eagle", timeout: int | None = 600,
        env: dict[str, str] | None = None, **overrides: str) -> IbmQuantumSystem:
    spec = ResourceSpec(name, "ibm-quantum-system", env or settings(**overrides),
                        JobContext(42, 1000, "alice", timeout))
    return IbmQuantumSystemType(fake.transport(), FAST).create(spec)


def posted_job(fake: FakeIbmSystem) -> dict:  # type: ignore[type-arg]
    (job,) = fake.jobs.values()
    return job


def busy(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": str(status), "message": message}],
                                        "status_code": status})


# --- building the resource ---------------------------------------------------------------


def test_registry_builds_the_system_type_for_current_and_legacy_names() -> None:
    assert isinstance(get_type("ibm-quantum-system"), IbmQuantumSystemType)
    assert isinstance(get_type("direct-access"), IbmQuantumSystemType)


def test_legacy_da_settings_run_a_whole_task() -> None:
    legacy = {k.replace("_QS_", "_DA_"): v for k, v in settings().items()}
    fake = FakeIbmSystem()
    spec = ResourceSpec("test_eagle", "ibm-quantum-system",
                        current_environment("direct-access", legacy),
                        JobContext(timeout_seconds=60))
    q = IbmQuantumSystemType(fake.transport(), FAST).create(spec)
    assert q.is_accessible()
    task = q.task_start(SAMPLER)
    fake.run_pending()
    assert q.task_result(task).value == RESULTS


@pytest.mark.parametrize("key", REQUIRED)
def test_missing_setting_names_the_resource_and_the_key(key: str) -> None:
    env = settings()
    del env[key]
    with pytest.raises(MissingSetting) as exc:
        qpu(FakeIbmSystem(), env=env)
    assert str(exc.value) == (f"resource test_eagle: setting {key} is missing from its "
                              "'environment' in the config")


@pytest.mark.parametrize("value", ["ten", "0", "-5"])
def test_invalid_timeout_setting_is_a_setting_error(value: str) -> None:
    with pytest.raises(MissingSetting) as exc:
        qpu(FakeIbmSystem(), QRMI_IBM_QS_TIMEOUT_SECONDS=value)
    assert str(exc.value) == (f"resource test_eagle: QRMI_IBM_QS_TIMEOUT_SECONDS={value!r} must "
                              "be a positive whole number of seconds")


# --- accessibility, acquire/release, target ----------------------------------------------


def test_online_backend_is_accessible() -> None:
    fake = FakeIbmSystem()
    assert qpu(fake).is_accessible()
    assert fake.calls("GET")[-1] == "/v1/backends/test_eagle"


@pytest.mark.parametrize("status", ["offline", "paused"])
def test_offline_or_paused_backend_is_not_accessible(status: str) -> None:
    assert not qpu(FakeIbmSystem(backends={"test_eagle": status})).is_accessible()


def test_unknown_backend_404_carries_the_services_message() -> None:
    with pytest.raises(VendorNotFound) as exc:
        qpu(FakeIbmSystem(), name="test_nowhere").is_accessible()
    assert str(exc.value) == "IBM Quantum System: not found: Backend test_nowhere not found"


def test_acquire_returns_a_fresh_uuid_without_calling_the_service() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    first, second = q.acquire(), q.acquire()
    assert first != second
    assert uuid.UUID(first).version == 4
    assert fake.requests == []


def test_release_is_a_no_op_for_any_token() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    q.release(q.acquire())
    q.release("not-a-token-we-gave")
    assert fake.requests == []


def test_target_joins_configuration_and_properties() -> None:
    target = json.loads(qpu(FakeIbmSystem()).target().value)
    assert target == {"configuration": {"backend_name": "test_eagle", "n_qubits": 127},
                      "properties": {"backend_name": "test_eagle", "qubits": []}}


def test_metadata_names_the_backend() -> None:
    assert qpu(FakeIbmSystem()).metadata() == {"backend_name": "test_eagle"}


def test_lanes_reports_both_kinds_of_lanes() -> None:
    assert qpu(FakeIbmSystem(lanes=(3, 1))).lanes() == Lanes(3, 1)


# --- the task cycle ----------------------------------------------------------------------


def test_full_task_cycle_start_status_result_and_logs() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    job = posted_job(fake)
    assert job["id"] == task and job["backend"] == "test_eagle"
    assert job["program_id"] == "sampler" and job["log_level"] == "warning"
    assert job["timeout_secs"] == 600
    assert fake.s3.get(f"input_{task}.json") == SAMPLER.input.encode()
    assert q.task_status(task) is TaskStatus.RUNNING
    with pytest.raises(TaskNotReady, match=f"job {task} is Running"):
        q.task_result(task)
    fake.run_pending()
    assert job["input_seen"] == SAMPLER.input
    assert q.task_status(task) is TaskStatus.COMPLETED
    assert q.task_result(task).value == RESULTS
    assert q.task_logs(task) == LOGS


def test_job_post_answers_204_and_the_task_id_is_ours() -> None:
    fake = FakeIbmSystem()
    task = qpu(fake).task_start(SAMPLER)
    assert fake.calls("POST")[-1] == "/v1/jobs"
    assert uuid.UUID(task).version == 4


def test_presigned_urls_expire_with_the_job_and_use_the_right_methods() -> None:
    fake = FakeIbmSystem()
    task = qpu(fake, QRMI_IBM_QS_TIMEOUT_SECONDS="900").task_start(SAMPLER)
    storage = posted_job(fake)["storage"]
    for part in ("input", "results", "logs"):
        url = httpx.URL(storage[part]["presigned_url"])
        assert storage[part]["type"] == "s3_compatible"
        assert url.path == f"/jobs/{part}_{task}.json"
        assert url.params["X-Amz-Expires"] == "900"
    assert posted_job(fake)["timeout_secs"] == 900


def test_presigned_urls_are_signed_for_the_endpoint_the_service_uses() -> None:
    fake = FakeIbmSystem()
    qpu(fake, QRMI_IBM_QS_S3_ENDPOINT_FOR_QSAPI=S3_FOR_QSAPI).task_start(SAMPLER)
    for entry in posted_job(fake)["storage"].values():
        assert entry["presigned_url"].startswith(S3_FOR_QSAPI + "/jobs/")
    fake.run_pending()  # the service reaches the store there
    assert posted_job(fake)["status"] == "Completed"


def test_without_endpoint_for_qsapi_urls_point_at_the_s3_endpoint() -> None:
    fake = FakeIbmSystem()
    qpu(fake).task_start(SAMPLER)
    for entry in posted_job(fake)["storage"].values():
        assert entry["presigned_url"].startswith("http://s3.test:9000/jobs/")


def test_unlimited_job_presigns_for_the_sigv4_maximum_of_seven_days() -> None:
    fake = FakeIbmSystem()
    qpu(fake, timeout=4294967295).task_start(SAMPLER)
    job = posted_job(fake)
    assert job["timeout_secs"] == 4294967295
    assert httpx.URL(job["storage"]["results"]["presigned_url"]).params["X-Amz-Expires"] == \
        str(7 * 24 * 3600)


def test_timeout_setting_wins_over_the_job_time_limit() -> None:
    fake = FakeIbmSystem()
    qpu(fake, timeout=600, QRMI_IBM_QS_TIMEOUT_SECONDS="30").task_start(SAMPLER)
    assert posted_job(fake)["timeout_secs"] == 30


def test_task_start_without_any_time_limit_is_a_clear_error() -> None:
    fake = FakeIbmSystem()
    with pytest.raises(MissingSetting) as exc:
        qpu(fake, timeout=None).task_start(SAMPLER)
    assert str(exc.value) == ("resource test_eagle: a job needs a time limit: set "
                              "QRMI_IBM_QS_TIMEOUT_SECONDS in its 'environment' or give the "
                              "Slurm job a time limit")
    assert fake.requests == []


def test_estimator_is_accepted() -> None:
    fake = FakeIbmSystem()
    qpu(fake).task_start(QiskitPrimitive('{"pubs": [], "version": 2}', "estimator"))
    assert posted_job(fake)["program_id"] == "estimator"


def test_unsupported_payloads_and_programs_are_refused_before_any_upload() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    with pytest.raises(UnsupportedPayload) as exc:
        q.task_start(PasqalSequence("{}", 1))
    assert str(exc.value) == "test_eagle runs Qiskit primitives, not PasqalSequence"
    with pytest.raises(UnsupportedPayload) as exc:
        q.task_start(QiskitPrimitive("{}", "noise-learner"))
    assert str(exc.value) == ("test_eagle runs the programs sampler and estimator, not "
                              "'noise-learner'")
    with pytest.raises(UnsupportedPayload, match="payload input is not JSON"):
        q.task_start(QiskitPrimitive("not json", "sampler"))
    assert fake.requests == []


def test_failed_job_reason_reaches_the_user() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.run_pending("Failed", reason="Circuit depth 9000 exceeds 5000", code=1517)
    assert q.task_status(task) is TaskStatus.FAILED
    with pytest.raises(TaskNotReady) as exc:
        q.task_result(task)
    assert str(exc.value) == (f"job {task} failed: Circuit depth 9000 exceeds 5000 (code 1517). "
                              "Reduce the circuit depth.")


def test_failed_job_without_a_reason_says_so() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.jobs[task]["status"] = "Failed"
    with pytest.raises(TaskNotReady) as exc:
        q.task_result(task)
    assert str(exc.value) == f"job {task} failed: no reason given"


def test_a_failed_jobs_logs_can_be_read() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.run_pending("Failed")
    assert q.task_logs(task) == LOGS


def test_logs_of_a_running_job_are_not_ready() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    with pytest.raises(TaskNotReady) as exc:
        q.task_logs(task)
    assert str(exc.value) == f"job {task} is Running; its logs are written when it ends"


def test_a_job_that_ended_without_logs_says_so() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    q.task_stop(task)
    with pytest.raises(TaskNotReady) as exc:
        q.task_logs(task)
    assert str(exc.value) == f"job {task} (Cancelled) left no logs"


def test_unknown_job_status_is_an_error() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.jobs[task]["status"] = "Queued"  # the API has no such state
    with pytest.raises(VendorError) as exc:
        q.task_status(task)
    assert str(exc.value) == f"IBM Quantum System: job {task} has unknown status 'Queued'"


def test_unknown_job_is_not_found() -> None:
    with pytest.raises(VendorNotFound, match="Job nope not found"):
        qpu(FakeIbmSystem()).task_status("nope")


# --- cancel ------------------------------------------------------------------------------


def test_task_stop_cancels_a_running_job() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    with pytest.raises(TaskNotReady, match=f"job {task} is Cancelled"):
        q.task_result(task)


def test_task_stop_leaves_a_finished_job_alone() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.run_pending()
    q.task_stop(task)
    assert f"/v1/jobs/{task}/cancel" not in fake.calls("POST")
    assert q.task_status(task) is TaskStatus.COMPLETED


def test_task_stop_tolerates_a_job_ending_before_the_cancel() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    task = q.task_start(SAMPLER)
    fake.faults[("POST", f"/v1/jobs/{task}/cancel")] = [
        busy(409, f"Job {task} is already Completed")]
    q.task_stop(task)
    assert fake.calls("POST").count(f"/v1/jobs/{task}/cancel") == 1


# --- authentication ----------------------------------------------------------------------


def test_api_key_is_exchanged_once_and_the_token_reused() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    q.is_accessible()
    q.task_start(SAMPLER)
    assert fake.tokens_issued == 1


def test_expired_token_401_gets_a_new_token_and_the_call_succeeds() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    q.is_accessible()
    fake.valid_tokens.clear()  # IAM expired or revoked it early
    assert q.is_accessible()
    assert fake.tokens_issued == 2


def test_bad_api_key_is_an_auth_error_with_iams_message() -> None:
    with pytest.raises(VendorAuthError) as exc:
        qpu(FakeIbmSystem(), QRMI_IBM_QS_IAM_APIKEY="wrong").is_accessible()
    assert str(exc.value) == ("IBM Cloud IAM refused the API key: Provided API key could not "
                              "be found.")
    assert API_KEY not in str(exc.value) and "wrong" not in str(exc.value)


def test_s3_refusing_the_upload_is_an_auth_error_with_the_stores_message() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake, QRMI_IBM_QS_AWS_ACCESS_KEY_ID="AKIDWRONG")
    with pytest.raises(VendorAuthError) as exc:
        q.task_start(SAMPLER)
    assert str(exc.value) == ("S3 storage refused the credentials (403): AccessDenied: "
                              "no SigV4 Authorization for AKIDEXAMPLE")
    assert fake.jobs == {}


# --- transient failures ------------------------------------------------------------------


def test_5xx_then_success_is_retried() -> None:
    fake = FakeIbmSystem()
    fake.faults[("GET", "/v1/backends/test_eagle")] = [
        busy(503, "busy"), httpx.Response(502, text="bad gateway")]
    assert qpu(fake).is_accessible()
    assert fake.calls("GET").count("/v1/backends/test_eagle") == 3


@pytest.mark.parametrize(("status", "message"), [(423, "Backend test_eagle is reserved"),
                                                 (429, "All lanes are in use")])
def test_busy_answers_to_a_submission_are_waited_out(status: int, message: str) -> None:
    fake = FakeIbmSystem()
    fake.faults[("POST", "/v1/jobs")] = [busy(status, message)] * 5  # more than FAST.attempts
    task = qpu(fake).task_start(SAMPLER)
    assert fake.calls("POST").count("/v1/jobs") == 6
    assert posted_job(fake)["id"] == task


@pytest.mark.parametrize(("status", "why"), [(423, "the backend is reserved"),
                                             (429, "all of the backend's lanes are busy")])
def test_busy_until_the_deadline_gives_up_with_the_services_message(status: int,
                                                                    why: str) -> None:
    fake = FakeIbmSystem()
    now = [0.0]
    posts: list[float] = []

    def tick(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path == "/v1/jobs":
            posts.append(now[0])
            now[0] += 1.0  # each submission "takes" 1 s

    fake.on_request = tick
    fake.faults[("POST", "/v1/jobs")] = [busy(status, "try later")] * 100
    q = qpu(fake)
    q.api.clock = lambda: now[0]
    q.api.sleep = lambda s: now.__setitem__(0, now[0] + s)
    q.retry = RetryPolicy(attempts=3, backoff=0.5, max_backoff=2.0, deadline=10.0)
    with pytest.raises(VendorUnavailable) as exc:
        q.task_start(SAMPLER)
    assert str(exc.value) == (f"IBM Quantum System: {why} ({status}): try later; gave up "
                              "after 10 s")
    # more tries than the policy's 3 attempts, pauses 0.5, 1, 2, 2 (capped), none past 10 s
    assert posts == [0.0, 1.5, 3.5, 6.5, 9.5]
    assert all(not key.startswith("input_") for _, key in fake.s3.objects)  # cleaned up


def test_a_refused_submission_removes_the_uploaded_input() -> None:
    fake = FakeIbmSystem()
    fake.faults[("POST", "/v1/jobs")] = [busy(400, "Invalid storage configuration")]
    with pytest.raises(VendorError) as exc:
        qpu(fake).task_start(SAMPLER)
    assert str(exc.value) == "IBM Quantum System error 400: Invalid storage configuration"
    assert fake.s3.objects == {}
    assert fake.calls("POST").count("/v1/jobs") == 1  # not a busy answer: not retried


def test_timeouts_stop_at_the_overall_deadline() -> None:
    fake = FakeIbmSystem()
    q = qpu(fake)
    q.iam.token()  # authenticate first
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match="no answer within"):
        q.is_accessible()
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline
