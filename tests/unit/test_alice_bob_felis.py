"""alice-bob-felis against a fake Felis API (httpx.MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_felis import API_KEY, NAME, TARGET, FakeFelis, settings
from vendor_fake import ATTEMPT_SECONDS, DEADLINE, stall_every_attempt

from slurm_qpu.vendors.alice_bob_felis.resource import (
    AliceBobFelis,
    AliceBobFelisType,
    name_to_target,
    target_to_name,
)
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
from slurm_qpu.vendors.registry import get_type

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
QIR = "; ModuleID = 'bell'\ndefine void @main() #0 { ret void }\n"
PROGRAM = FelisProgram(QIR, json.dumps({"nbShots": 1000}))


def qpu(fake: FakeFelis, name: str = NAME, env: dict[str, str] | None = None) -> AliceBobFelis:
    return AliceBobFelisType(fake.transport(), FAST).create(
        ResourceSpec(name, "alice-bob-felis", settings() if env is None else env))


def test_registry_builds_the_felis_type() -> None:
    assert isinstance(get_type("alice-bob-felis"), AliceBobFelisType)


@pytest.mark.parametrize(("name", "target"), [
    ("ab_emu_1q_lescanne_2020", "EMU:1Q:LESCANNE_2020"),  # only the first two "_" change
    ("ab_emu_40q_physical_cats", "EMU:40Q:PHYSICAL_CATS"),
    ("qpu_1q_boson", "QPU:1Q:BOSON"),  # the ab_ prefix is optional
])
def test_name_maps_to_felis_target(name: str, target: str) -> None:
    assert name_to_target(name) == target


def test_target_maps_back_to_qrmis_name() -> None:
    assert target_to_name("EMU:40Q:PHYSICAL_CATS") == "ab_emu_40q_physical_cats"


@pytest.mark.parametrize("key", ["QRMI_AB_FELIS_API_KEY", "QRMI_AB_FELIS_BASE_ENDPOINT"])
def test_missing_setting_names_the_key(key: str) -> None:
    env = settings()
    del env[key]
    with pytest.raises(MissingSetting) as exc:
        qpu(FakeFelis(), env=env)
    assert str(exc.value) == (f"resource {NAME}: setting {key} is missing from its "
                              "'environment' in the config")


def test_settings_may_carry_the_resource_name_prefix_as_in_qrmi() -> None:
    env = {f"{NAME}_{k}": v for k, v in settings().items()}
    assert qpu(FakeFelis(), env=env).is_accessible()


def test_api_key_that_is_not_base64_user_password_is_refused_without_echoing_it() -> None:
    for bad in ("not base64!", "bm9jb2xvbg=="):  # the second decodes to "nocolon"
        with pytest.raises(MissingSetting) as exc:
            qpu(FakeFelis(), env=settings(QRMI_AB_FELIS_API_KEY=bad))
        assert str(exc.value) == (f"resource {NAME}: QRMI_AB_FELIS_API_KEY is not a Felis "
                                  "API key (base64 of 'user:password')")


def test_bad_api_key_is_an_auth_error_with_felis_message() -> None:
    other = "b3RoZXI6a2V5"  # base64 of "other:key": well-formed but unknown to Felis
    with pytest.raises(VendorAuthError) as exc:
        qpu(FakeFelis(), env=settings(QRMI_AB_FELIS_API_KEY=other)).is_accessible()
    assert str(exc.value) == "Alice & Bob Felis refused the credentials (401): Invalid API key"
    assert other not in str(exc.value) and API_KEY not in str(exc.value)


def test_requests_use_basic_auth_and_the_mapped_target() -> None:
    fake = FakeFelis()
    assert qpu(fake).is_accessible()
    assert fake.calls("GET") == ["/v1/targets/", f"/v1/targets/{TARGET}/health"]


@pytest.mark.parametrize("health", ["NOK", "OFF"])
def test_target_in_a_bad_state_or_disabled_is_not_accessible(health: str) -> None:
    assert not qpu(FakeFelis(targets={TARGET: health})).is_accessible()


def test_listed_target_without_a_health_route_is_accessible() -> None:
    assert qpu(FakeFelis(health_route=False)).is_accessible()


def test_unknown_target_is_not_found_and_lists_the_offered_names() -> None:
    with pytest.raises(VendorNotFound) as exc:
        qpu(FakeFelis(), name="ab_emu_9q_nowhere").is_accessible()
    assert str(exc.value) == ("Alice & Bob Felis: not found: target EMU:9Q:NOWHERE is not "
                              "offered; available: ab_emu_1q_lescanne_2020, "
                              "ab_emu_40q_physical_cats")


def test_5xx_then_success_is_retried() -> None:
    fake = FakeFelis()
    fake.faults[("GET", "/v1/targets/")] = [
        httpx.Response(503, json={"detail": "Service Unavailable"}),
        httpx.Response(502, text="bad gateway")]
    assert qpu(fake).is_accessible()
    assert fake.calls("GET").count("/v1/targets/") == 3


def test_persistent_5xx_gives_up_with_the_vendors_message() -> None:
    fake = FakeFelis()
    fake.faults[("POST", "/v1/jobs/")] = [
        httpx.Response(500, json={"detail": "Internal Server Error"})] * 5
    with pytest.raises(VendorUnavailable, match="Internal Server Error; gave up after 3"):
        qpu(fake).task_start(PROGRAM)


def test_timeouts_stop_at_the_overall_deadline() -> None:
    q = qpu(FakeFelis())
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match="no answer within"):
        q.is_accessible()
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline


def test_acquire_mints_a_fresh_token_and_release_is_a_no_op() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    first, second = q.acquire(), q.acquire()
    assert first != second and len(first) == 36
    q.release(first)
    assert fake.requests == []  # Felis has no reservation API: nothing is sent


def test_full_task_cycle() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    task = q.task_start(PROGRAM)
    job = fake.jobs[task]
    assert job["target"] == TARGET and job["inputParams"] == {"nbShots": 1000}
    assert (job["inputDataFormat"], job["outputDataFormat"]) == ("HUMAN_QIR", "HISTOGRAM")
    assert fake.inputs[task] == QIR  # uploaded as the multipart field "input"
    assert q.task_status(task) is TaskStatus.QUEUED
    with pytest.raises(TaskNotReady, match="is Queued"):
        q.task_result(task)
    fake.event(task, "EXECUTING")
    assert q.task_status(task) is TaskStatus.RUNNING
    fake.event(task, "SUCCEEDED")
    assert q.task_status(task) is TaskStatus.COMPLETED
    assert q.task_result(task).value == "0,412\n1,588\n"
    logs = q.task_logs(task)
    assert logs.startswith(f"target: {TARGET}\nevents:\n")
    assert "INPUT_READY" in logs and "SUCCEEDED" in logs


def test_failed_jobs_vendor_message_reaches_the_user() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    task = q.task_start(PROGRAM)
    fake.event(task, "COMPILATION_FAILED", "Gate 'ccx' is not supported by this target")
    assert q.task_status(task) is TaskStatus.FAILED
    with pytest.raises(ResourceError) as exc:
        q.task_result(task)
    assert str(exc.value) == (f"Felis job {task} is Failed: Gate 'ccx' is not supported by "
                              "this target")
    assert not isinstance(exc.value, TaskNotReady)  # final: polling again will not help
    assert "errors: Gate 'ccx' is not supported" in q.task_logs(task)


def test_structured_job_error_content_is_shown_by_its_message() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    task = q.task_start(PROGRAM)
    fake.event(task, "TIMED_OUT", {"message": "Job exceeded 600 s"})
    with pytest.raises(ResourceError, match=r"is Failed: Job exceeded 600 s$"):
        q.task_result(task)


def test_failed_upload_cancels_the_created_job_and_reports_felis_message() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    created: list[str] = []

    def refuse_upload(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/input"):
            created.append(request.url.path.split("/")[3])
            return httpx.Response(400, json={"detail": "Input is not valid QIR"})
        return fake.handle(request)

    q.api._http._transport = httpx.MockTransport(refuse_upload)
    with pytest.raises(VendorError) as exc:
        q.task_start(PROGRAM)
    assert str(exc.value) == (f"Alice & Bob Felis: uploading the program of job {created[0]} "
                              "failed: Alice & Bob Felis error 400: Input is not valid QIR")
    assert fake.jobs[created[0]]["events"][-1]["type"] == "CANCELLED"


def test_task_stop_cancels_an_active_job_and_ignores_a_final_one() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    task = q.task_start(PROGRAM)
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    q.task_stop(task)  # already final: no second cancel
    assert fake.calls("DELETE").count(f"/v1/jobs/{task}") == 1


def test_task_stop_tolerates_a_job_finishing_before_the_cancel() -> None:
    fake = FakeFelis()
    q = qpu(fake)
    task = q.task_start(PROGRAM)
    fake.faults[("DELETE", f"/v1/jobs/{task}")] = [
        httpx.Response(409, json={"detail": "Job cannot be cancelled anymore"})]
    q.task_stop(task)  # no error


def test_unknown_job_is_not_found() -> None:
    with pytest.raises(VendorNotFound, match="Job not found"):
        qpu(FakeFelis()).task_status("0000")


def test_unsupported_payloads_are_refused() -> None:
    q = qpu(FakeFelis())
    with pytest.raises(UnsupportedPayload, match="runs Felis programs, not IqmJob"):
        q.task_start(IqmJob("{}", "circuit"))
    with pytest.raises(UnsupportedPayload, match="payload input_params is not JSON"):
        q.task_start(FelisProgram(QIR, "{nbShots"))


def test_target_is_the_felis_description_of_the_target() -> None:
    target = json.loads(qpu(FakeFelis()).target().value)
    assert target["name"] == TARGET and target["numQubits"] == 1


def test_metadata_names_the_felis_target() -> None:
    assert qpu(FakeFelis()).metadata() == {"backend_name": NAME, "felis_target": TARGET}
