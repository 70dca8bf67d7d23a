"""pasqal-cloud against a fake Pasqal Cloud (httpx.MockTransport)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fake_pasqal import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    PASSWORD_GRANT,
    PROJECT,
    SDK_CLIENT_ID,
    USERNAME,
    FakePasqal,
    fail,
    jwt,
    settings,
)
from vendor_fake import ATTEMPT_SECONDS, DEADLINE, stall_every_attempt

from slurm_qpu.vendors.common.base import (
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
from slurm_qpu.vendors.pasqal_cloud.resource import PasqalCloud, PasqalCloudType, jwt_expiry
from slurm_qpu.vendors.registry import get_type

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
SEQUENCE = json.dumps({"version": "1", "device": {"name": "Fresnel"}, "register": []})
NO_LOGIN = {"QRMI_PASQAL_CLOUD_USERNAME": "", "QRMI_PASQAL_CLOUD_PASSWORD": ""}


def qpu(fake: FakePasqal, name: str = "FRESNEL", **env: str) -> PasqalCloud:
    spec = ResourceSpec(name, "pasqal-cloud", settings(**env))
    return PasqalCloudType(fake.transport(), FAST).create(spec)


def static(fake: FakePasqal, name: str = "FRESNEL") -> PasqalCloud:
    """Authenticated with a token the fake accepts, so no token request is made."""
    token = jwt(time.time() + 3600)
    fake.valid_tokens.add(token)
    return qpu(fake, name, QRMI_PASQAL_CLOUD_AUTH_TOKEN=token)


def test_registry_builds_the_pasqal_cloud_type() -> None:
    assert isinstance(get_type("pasqal-cloud"), PasqalCloudType)


def test_missing_project_id_names_the_key() -> None:
    spec = ResourceSpec("FRESNEL", "pasqal-cloud", settings(QRMI_PASQAL_CLOUD_PROJECT_ID=""))
    with pytest.raises(MissingSetting, match="resource FRESNEL: setting "
                                             "QRMI_PASQAL_CLOUD_PROJECT_ID is missing"):
        PasqalCloudType(FakePasqal().transport()).create(spec)


def test_missing_credentials_name_the_three_ways_to_give_them() -> None:
    with pytest.raises(MissingSetting) as exc:
        qpu(FakePasqal(), **NO_LOGIN)
    assert str(exc.value) == (
        "resource FRESNEL: no Pasqal Cloud credentials in its 'environment': set "
        "QRMI_PASQAL_CLOUD_AUTH_TOKEN, or QRMI_PASQAL_CLOUD_CLIENT_ID and "
        "QRMI_PASQAL_CLOUD_CLIENT_SECRET, or QRMI_PASQAL_CLOUD_USERNAME and "
        "QRMI_PASQAL_CLOUD_PASSWORD")


def test_half_given_credentials_say_what_is_missing() -> None:
    with pytest.raises(MissingSetting, match="QRMI_PASQAL_CLOUD_CLIENT_SECRET is set but "
                                             "QRMI_PASQAL_CLOUD_CLIENT_ID is missing"):
        qpu(FakePasqal(), **NO_LOGIN, QRMI_PASQAL_CLOUD_CLIENT_SECRET="x")
    with pytest.raises(MissingSetting, match="QRMI_PASQAL_CLOUD_USERNAME is set but "
                                             r"QRMI_PASQAL_CLOUD_PASSWORD \(or "
                                             "PASQAL_PASSWORD\\) is missing"):
        qpu(FakePasqal(), QRMI_PASQAL_CLOUD_PASSWORD="")


def test_resource_name_must_be_a_device_type() -> None:
    with pytest.raises(MissingSetting, match="resource fresnel: a pasqal-cloud resource is "
                                             "named after its Pasqal device type, one of "
                                             "FRESNEL, FRESNEL_CAN1, EMU_MPS"):
        qpu(FakePasqal(), name="fresnel")


def test_static_token_is_sent_as_is_without_a_token_request() -> None:
    fake = FakePasqal()
    q = static(fake)
    assert q.is_accessible()
    assert fake.tokens_issued == 0 and fake.calls("POST") == []
    assert fake.bearers[-1] in {f"Bearer {t}" for t in fake.valid_tokens}


def test_expired_static_token_is_reported_before_any_call() -> None:
    fake = FakePasqal()
    q = qpu(fake, QRMI_PASQAL_CLOUD_AUTH_TOKEN=jwt(time.time() - 10))
    with pytest.raises(VendorAuthError, match=r"the token in QRMI_PASQAL_CLOUD_AUTH_TOKEN "
                                              r"expired on .* UTC; set a new one"):
        q.is_accessible()
    assert fake.requests == []


def test_refused_static_token_shows_pasqals_message() -> None:
    fake = FakePasqal()
    q = qpu(fake, QRMI_PASQAL_CLOUD_AUTH_TOKEN="revoked-token")
    with pytest.raises(VendorAuthError, match=r"Pasqal Cloud refused the credentials \(401\): "
                                              "Unauthorized."):
        q.task_status("batch-1")
    assert fake.calls() == ["/core-fast/api/v2/batches/batch-1"] * 2  # once more after 401


def test_client_credentials_grant_for_a_service_account() -> None:
    fake = FakePasqal()
    q = qpu(fake, **NO_LOGIN, QRMI_PASQAL_CLOUD_CLIENT_ID=CLIENT_ID,
            QRMI_PASQAL_CLOUD_CLIENT_SECRET=CLIENT_SECRET)
    assert q.is_accessible()
    assert fake.token_forms == [{"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                 "client_secret": CLIENT_SECRET, "audience": AUDIENCE}]


def test_password_grant_uses_the_password_realm_and_the_sdks_client_id() -> None:
    fake = FakePasqal()
    assert qpu(fake).is_accessible()
    assert fake.token_forms == [{"grant_type": PASSWORD_GRANT, "realm": "pcs-users",
                                 "client_id": SDK_CLIENT_ID, "audience": AUDIENCE,
                                 "username": USERNAME, "password": PASSWORD}]
    assert fake.urls[0] == "https://auth.test/oauth/token"


def test_qrmis_unprefixed_pasqal_username_and_password_are_accepted() -> None:
    fake = FakePasqal()
    q = qpu(fake, **NO_LOGIN, PASQAL_USERNAME=USERNAME, PASQAL_PASSWORD=PASSWORD)
    assert q.is_accessible()
    assert fake.token_forms[0]["username"] == USERNAME


def test_auth_endpoint_without_a_scheme_gets_https() -> None:
    fake = FakePasqal()
    assert qpu(fake, QRMI_PASQAL_CLOUD_AUTH_ENDPOINT="auth.test/oauth/token").is_accessible()
    assert fake.urls[0] == "https://auth.test/oauth/token"


def test_api_lives_under_core_fast_of_the_base_url() -> None:
    fake = FakePasqal()
    static(fake).is_accessible()
    assert fake.urls == ["https://pasqal.test/core-fast/api/v1/devices?device_type=FRESNEL"]


def test_wrong_password_is_an_auth_error_with_the_vendors_description() -> None:
    with pytest.raises(VendorAuthError) as exc:
        qpu(FakePasqal(), QRMI_PASQAL_CLOUD_PASSWORD="wrong-pw").is_accessible()
    assert str(exc.value) == ("Pasqal Cloud authentication refused the credentials (403): "
                              "Wrong email or password.")
    assert "wrong-pw" not in str(exc.value)


def test_wrong_client_secret_is_an_auth_error_with_the_vendors_description() -> None:
    q = qpu(FakePasqal(), **NO_LOGIN, QRMI_PASQAL_CLOUD_CLIENT_ID=CLIENT_ID,
            QRMI_PASQAL_CLOUD_CLIENT_SECRET="leaked?")
    with pytest.raises(VendorAuthError, match=r"refused the credentials \(401\): Unauthorized$"):
        q.is_accessible()


def test_a_400_from_the_token_endpoint_is_an_auth_error_too() -> None:
    q = qpu(FakePasqal(), QRMI_PASQAL_CLOUD_AUDIENCE="https://elsewhere")
    with pytest.raises(VendorAuthError, match="Service not found"):
        q.is_accessible()
    fake = FakePasqal()
    fake.faults[("POST", "/oauth/token")] = [httpx.Response(
        400, json={"error": "invalid_request", "error_description": "Missing parameter"})]
    with pytest.raises(VendorAuthError, match=r"refused the credentials \(400\): Missing "
                                              "parameter"):
        qpu(fake).is_accessible()


def test_token_is_reused_while_valid() -> None:
    fake = FakePasqal()
    q = qpu(fake)
    q.is_accessible()
    q.is_accessible()
    assert fake.tokens_issued == 1


def test_token_is_renewed_before_it_expires() -> None:
    fake = FakePasqal(lifetime=30)  # inside the renewal margin from the start
    q = qpu(fake)
    q.is_accessible()
    q.is_accessible()
    assert fake.tokens_issued == 2


def test_token_expiry_is_read_from_the_jwt_when_expires_in_is_absent() -> None:
    fake = FakePasqal(lifetime=30, send_expires_in=False)
    q = qpu(fake)
    q.is_accessible()
    q.is_accessible()
    assert fake.tokens_issued == 2
    long_lived = FakePasqal(send_expires_in=False)
    q = qpu(long_lived)
    q.is_accessible()
    q.is_accessible()
    assert long_lived.tokens_issued == 1


def test_jwt_expiry_reads_exp_and_tolerates_non_jwts() -> None:
    assert jwt_expiry(jwt(1234567890)) == 1234567890.0
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.!!!.c") is None


def test_a_401_gets_a_new_token_once_and_the_call_succeeds() -> None:
    fake = FakePasqal()
    q = qpu(fake)
    q.task_start(PasqalSequence(SEQUENCE, 10))
    fake.valid_tokens.clear()  # revoked early by Pasqal
    assert q.task_status("batch-1") is TaskStatus.QUEUED
    assert fake.tokens_issued == 2


def test_accessible_when_the_device_is_active() -> None:
    assert static(FakePasqal()).is_accessible()


def test_not_accessible_when_retired_or_unknown() -> None:
    q = static(FakePasqal(devices={"FRESNEL": "RETIRED"}))
    assert not q.is_accessible()
    assert q.status_reason == "FRESNEL availability is RETIRED"
    q = static(FakePasqal(devices={}))
    assert not q.is_accessible()
    assert q.status_reason == "Pasqal Cloud lists no device FRESNEL"


def test_acquire_gives_a_fresh_token_and_release_is_a_no_op() -> None:
    fake = FakePasqal()
    q = static(fake)
    first, second = q.acquire(), q.acquire()
    assert first != second and len(first) == 36
    q.release(first)
    assert fake.requests == []


def test_full_task_cycle() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 100))
    batch = fake.batches[task]
    assert batch["device_type"] == "FRESNEL" and batch["project_id"] == PROJECT
    assert batch["sequence_builder"] == SEQUENCE
    assert [fake.jobs[j]["runs"] for j in batch["job_ids"]] == [100]
    assert q.task_status(task) is TaskStatus.QUEUED
    with pytest.raises(TaskNotReady, match=f"batch {task} is Queued"):
        q.task_result(task)
    fake.set_status(task, "RUNNING")
    assert q.task_status(task) is TaskStatus.RUNNING
    fake.set_status(task, "DONE")
    assert q.task_status(task) is TaskStatus.COMPLETED
    assert json.loads(q.task_result(task).value) == {"counter": {"01": 60, "10": 40}}
    assert q.task_logs(task) == f"Pasqal Cloud keeps no logs; batch {task} reported no errors.\n"
    assert q.metadata() == {"backend_name": "FRESNEL"}


def test_failed_batches_and_their_job_errors() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    fake.set_status(task, "ERROR", "Register layout not calibrated")
    assert q.task_status(task) is TaskStatus.FAILED
    job = fake.batches[task]["job_ids"][0]
    assert q.task_logs(task) == f"job {job}: Register layout not calibrated\n"
    fake.set_status(task, "TIMED_OUT")
    assert q.task_status(task) is TaskStatus.FAILED
    fake.set_status(task, "CANCELING")
    assert q.task_status(task) is TaskStatus.CANCELLED


def test_unknown_batch_status_is_an_error() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    fake.set_status(task, "EXPLODED")
    with pytest.raises(VendorError, match="has unknown status 'EXPLODED'"):
        q.task_status(task)


def test_vendor_error_message_reaches_the_user() -> None:
    with pytest.raises(VendorError) as exc:
        static(FakePasqal()).task_start(PasqalSequence("not json", 10))
    assert str(exc.value) == ("Pasqal Cloud error 400: Invalid sequence: the abstract "
                              "representation is not valid JSON")


def test_wrong_project_shows_pasqals_message() -> None:
    fake = FakePasqal()
    token = jwt(time.time() + 3600)
    fake.valid_tokens.add(token)
    q = qpu(fake, QRMI_PASQAL_CLOUD_AUTH_TOKEN=token, QRMI_PASQAL_CLOUD_PROJECT_ID="other")
    with pytest.raises(VendorAuthError, match=r"You are not a member of project other\."):
        q.task_start(PasqalSequence(SEQUENCE, 1))


def test_jsend_data_description_reaches_the_user() -> None:
    fake = FakePasqal()
    fake.faults[("POST", "/core-fast/api/v1/batches")] = [
        fail(422, "Unprocessable Entity.", "runs: must be at most 1000")]
    with pytest.raises(VendorError, match="runs: must be at most 1000"):
        static(fake).task_start(PasqalSequence(SEQUENCE, 5000))


def test_unknown_batch_is_not_found_with_pasqals_message() -> None:
    with pytest.raises(VendorNotFound, match="Batch batch-x not found"):
        static(FakePasqal()).task_status("batch-x")


def test_task_stop_cancels_a_pending_batch_and_ignores_a_finished_one() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    q.task_stop(task)
    assert fake.calls("PATCH") == [f"/core-fast/api/v2/batches/{task}/cancel"]


def test_task_stop_of_a_batch_that_finished_meanwhile_is_not_an_error() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    path = f"/core-fast/api/v2/batches/{task}/cancel"

    def finished(request: httpx.Request) -> httpx.Response:
        fake.set_status(task, "DONE")
        return fail(400, "Bad Request.", "already DONE")

    inner = fake.handle
    fake_transport = httpx.MockTransport(
        lambda r: finished(r) if r.url.path == path else inner(r))
    q.api._http._transport = fake_transport
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.COMPLETED


def test_task_stop_refused_for_a_running_batch_is_an_error() -> None:
    fake = FakePasqal()
    q = static(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    fake.faults[("PATCH", f"/core-fast/api/v2/batches/{task}/cancel")] = [
        fail(409, "Batch cannot be canceled while calibrating.")]
    with pytest.raises(VendorError, match=r"Batch cannot be canceled while calibrating\."):
        q.task_stop(task)


def test_5xx_then_success_is_retried() -> None:
    fake = FakePasqal()
    path = "/core-fast/api/v1/devices"
    fake.faults[("GET", path)] = [fail(503, "Service Unavailable."),
                                  httpx.Response(502, text="bad gateway")]
    assert static(fake).is_accessible()
    assert fake.calls("GET").count(path) == 3


def test_timeouts_stop_at_the_overall_deadline() -> None:
    fake = FakePasqal()
    q = static(fake)
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match=r"Pasqal Cloud unavailable .*no answer within"):
        q.task_status("batch-1")
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline


def test_target_of_a_qpu_comes_from_its_authenticated_specs() -> None:
    fake = FakePasqal()
    target = json.loads(static(fake).target().value)
    assert target == [{"device_type": "FRESNEL",
                       "specs": json.dumps({"name": "FRESNEL", "dimensions": 2,
                                            "max_runs": 1000})}]
    assert fake.calls() == ["/core-fast/api/v1/devices/specs/FRESNEL"]


def test_target_of_an_emulator_comes_from_the_public_specs() -> None:
    fake = FakePasqal()
    target = json.loads(static(fake, "EMU_MPS").target().value)
    assert [t["device_type"] for t in target] == ["EMU_MPS"]
    assert json.loads(target[0]["specs"])["name"] == "EMU_MPS"
    assert fake.bearers == [None]  # public: no token sent


def test_unsupported_payloads_are_refused() -> None:
    q = static(FakePasqal())
    with pytest.raises(UnsupportedPayload, match="runs Pulser sequences, not QiskitPrimitive"):
        q.task_start(QiskitPrimitive("{}", "sampler"))
    with pytest.raises(UnsupportedPayload, match="job_runs must be at least 1, not 0"):
        q.task_start(PasqalSequence(SEQUENCE, 0))
