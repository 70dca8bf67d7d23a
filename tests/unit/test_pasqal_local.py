"""pasqal-local against a fake Warden (httpx.MockTransport) and a fake MUNGE."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from fake_warden import SPECS, URL, FakeMunge, FakeWarden, detail
from vendor_fake import ATTEMPT_SECONDS, DEADLINE, stall_every_attempt

from slurm_qpu.munge import MungeError
from slurm_qpu.vendors.common.base import (
    AcquireError,
    JobContext,
    MissingSetting,
    PasqalSequence,
    QiskitPrimitive,
    ResourceError,
    ResourceSpec,
    TaskNotReady,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.http import RetryPolicy, VendorAuthError, VendorUnavailable
from slurm_qpu.vendors.pasqal_local.resource import PasqalLocal, PasqalLocalType
from slurm_qpu.vendors.registry import get_type

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
JOB = JobContext(job_id=42, uid=1000, user="alice", timeout_seconds=600)
SEQUENCE = json.dumps({"version": "1", "device": {"name": "FRESNEL_CAN1"}})


def qpu(fake: FakeWarden, munge: FakeMunge | None = None, job: JobContext = JOB,
        **env: str) -> PasqalLocal:
    settings = {"QRMI_WARDEN_URL": URL, **env}
    spec = ResourceSpec("PASQAL_LOCAL", "pasqal-local",
                        {k: v for k, v in settings.items() if v}, job)
    return PasqalLocalType(fake.transport(), FAST, munge or FakeMunge(uid=0)).create(spec)


def acquired(fake: FakeWarden) -> tuple[str, PasqalLocal]:
    """What the prolog does as root, then the resource as the job's user sees it."""
    token = qpu(fake, FakeMunge(uid=0)).acquire()
    return token, qpu(fake, FakeMunge(uid=1000), QRMI_JOB_ACQUISITION_TOKEN=token)


def test_registry_builds_the_pasqal_local_type() -> None:
    assert isinstance(get_type("pasqal-local"), PasqalLocalType)


def test_missing_warden_url_names_the_key() -> None:
    with pytest.raises(MissingSetting, match="resource PASQAL_LOCAL: setting QRMI_WARDEN_URL "
                                             "is missing from its 'environment'"):
        qpu(FakeWarden(), QRMI_WARDEN_URL="")


def test_deprecated_qrmi_url_is_read_when_warden_url_is_absent() -> None:
    q = qpu(FakeWarden(), QRMI_WARDEN_URL="", QRMI_URL=URL)
    assert q.is_accessible()


def test_accessible_and_not_with_wardens_message() -> None:
    assert qpu(FakeWarden()).is_accessible()
    q = qpu(FakeWarden(accessible=False, message="Scheduled QPU maintenance"))
    assert not q.is_accessible()
    assert q.status_reason == "Scheduled QPU maintenance"


def test_acquire_opens_a_session_for_the_jobs_user_and_job() -> None:
    fake = FakeWarden()
    token = qpu(fake).acquire()
    assert fake.sessions[token]["user_id"] == "1000"
    assert fake.sessions[token]["job"] == "42"
    assert fake.calls("POST") == ["/sessions"]


def test_acquire_speaks_warden_v0_1_too() -> None:
    fake = FakeWarden(api="v0.1")
    token = qpu(fake).acquire()
    assert fake.sessions[token]["job"] == "42"


def test_acquire_needs_the_job_id_and_uid() -> None:
    q = qpu(FakeWarden(), job=JobContext())
    with pytest.raises(AcquireError, match="resource PASQAL_LOCAL: a Warden session belongs "
                                           "to a Slurm job, but this request has no job id "
                                           "and uid"):
        q.acquire()


def test_acquire_for_a_user_warden_does_not_authorize_shows_wardens_message() -> None:
    q = qpu(FakeWarden(authorized_users={"2000"}))
    with pytest.raises(VendorAuthError) as exc:
        q.acquire()
    assert str(exc.value) == ("Warden refused a session for uid 1000 (403): User ID not "
                              "authorized. (Warden's api.authorized_users does not list uid "
                              "1000)")


def test_acquire_by_a_non_admin_uid_names_the_uid_wardens_admin_users_must_list() -> None:
    with pytest.raises(VendorAuthError) as exc:
        qpu(FakeWarden(), FakeMunge(uid=1000)).acquire()
    assert str(exc.value) == (f"Warden refused a session for uid 1000 (403): Endpoint "
                              f"restricted to admin user. (uid {os.getuid()} asked, and "
                              "Warden's api.admin_users does not list it)")


def test_release_revokes_the_session_and_cancels_its_pending_jobs() -> None:
    fake = FakeWarden()
    token, job_side = acquired(fake)
    task = job_side.task_start(PasqalSequence(SEQUENCE, 10))
    qpu(fake).release(token)
    assert fake.sessions[token]["revoked_at"] is not None
    assert fake.jobs[int(task)]["status"] == "CANCELED"
    assert fake.calls("DELETE") == ["/sessions"]
    assert fake.session_headers[-1] == token


def test_release_on_warden_v0_1_uses_the_session_path() -> None:
    fake = FakeWarden(api="v0.1")
    q = qpu(fake)
    token = q.acquire()
    q.release(token)
    assert fake.sessions[token]["revoked_at"] is not None
    assert fake.calls("DELETE") == ["/sessions", f"/sessions/{token}"]


@pytest.mark.parametrize("api", ["current", "v0.1"])
def test_release_of_an_unknown_session_is_fine(api: str) -> None:
    qpu(FakeWarden(api=api)).release("3f1c9a43-0000-4000-8000-000000000000")


def test_release_refused_shows_wardens_message() -> None:
    fake = FakeWarden()
    token = qpu(fake).acquire()
    with pytest.raises(VendorAuthError) as exc:
        qpu(fake, FakeMunge(uid=1000)).release(token)
    assert str(exc.value) == (f"Warden refused to revoke the session (403): Endpoint "
                              f"restricted to admin user. (uid {os.getuid()} asked, and "
                              "Warden's api.admin_users does not list it)")


def test_full_task_cycle_as_the_jobs_user() -> None:
    fake = FakeWarden()
    token, q = acquired(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 250))
    job = fake.jobs[int(task)]
    assert (job["sequence"], job["shots"], job["session_id"]) == (SEQUENCE, 250, token)
    assert q.task_status(task) is TaskStatus.QUEUED
    with pytest.raises(TaskNotReady, match=f"job {task} is Queued"):
        q.task_result(task)
    fake.finish(int(task), "RUNNING")
    assert q.task_status(task) is TaskStatus.RUNNING
    fake.finish(int(task), "DONE", logs="shot loop done\n")
    assert q.task_status(task) is TaskStatus.COMPLETED
    assert json.loads(q.task_result(task).value) == {"counter": {"00": 250}}
    assert q.task_logs(task) == "shot loop done\n"
    assert json.loads(q.target().value) == [{"device_type": "FRESNEL_CAN1", "specs": SPECS}]
    assert q.metadata() == {"backend_name": "PASQAL_LOCAL", "session_id": token}


def test_failed_job_and_empty_logs() -> None:
    fake = FakeWarden()
    _, q = acquired(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    fake.finish(int(task), "ERROR")
    assert q.task_status(task) is TaskStatus.FAILED
    assert q.task_logs(task) == "There are no logs for this job"


def test_the_munge_credential_is_fresh_on_every_call() -> None:
    fake = FakeWarden()
    token, q = acquired(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    q.is_accessible()
    q.task_status(task)
    q.task_stop(task)
    q.task_logs(task)
    q.target()
    qpu(fake).release(token)
    assert len(fake.requests) == 8
    assert all(c and c.startswith("MUNGE:") for c in fake.credentials)
    assert len(set(fake.credentials)) == len(fake.credentials)


def test_an_expired_munge_credential_is_replaced_once() -> None:
    fake = FakeWarden()
    fake.faults[("POST", "/sessions")] = [detail(401, "MUNGE credential expired")]
    assert qpu(fake).acquire() in fake.sessions


def test_a_job_in_a_revoked_session_is_refused_with_wardens_message() -> None:
    fake = FakeWarden()
    token, q = acquired(fake)
    qpu(fake).release(token)
    with pytest.raises(VendorAuthError) as exc:
        q.task_start(PasqalSequence(SEQUENCE, 1))
    assert str(exc.value) == "Warden refused the job (403): Session has been revoked."


def test_a_job_in_another_users_session_is_refused() -> None:
    fake = FakeWarden()
    token, _ = acquired(fake)
    intruder = qpu(fake, FakeMunge(uid=2000), QRMI_JOB_ACQUISITION_TOKEN=token)
    with pytest.raises(VendorAuthError, match=r"Session belongs to another user\."):
        intruder.task_start(PasqalSequence(SEQUENCE, 1))


def test_task_start_without_a_session_says_where_jobs_can_run() -> None:
    q = qpu(FakeWarden(), FakeMunge(uid=1000))
    with pytest.raises(ResourceError, match="resource PASQAL_LOCAL: no Warden session; jobs "
                                            "can only be sent from a Slurm job that holds it "
                                            r"\(--qpu=PASQAL_LOCAL\)"):
        q.task_start(PasqalSequence(SEQUENCE, 1))


def test_task_stop_cancels_and_tolerates_a_finished_job() -> None:
    fake = FakeWarden()
    _, q = acquired(fake)
    task = q.task_start(PasqalSequence(SEQUENCE, 1))
    q.task_stop(task)
    assert q.task_status(task) is TaskStatus.CANCELLED
    q.task_stop(task)  # 409 from Warden: already final
    assert fake.calls("POST").count(f"/jobs/{task}/cancel") == 2


def test_munge_failure_reaches_the_user() -> None:
    munge = FakeMunge(error="cannot create a MUNGE credential: munge: Error: Failed to access "
                            "\"/run/munge/munge.socket.2\": No such file or directory "
                            "(Did you start munged?)")
    with pytest.raises(MungeError, match=r"Did you start munged\?"):
        qpu(FakeWarden(), munge).acquire()


def test_5xx_then_success_is_retried() -> None:
    fake = FakeWarden()
    fake.faults[("POST", "/sessions")] = [detail(503, "Service Unavailable"),
                                          httpx.Response(502, text="bad gateway")]
    assert qpu(fake).acquire() in fake.sessions
    assert fake.calls("POST") == ["/sessions"] * 3


def test_timeouts_stop_at_the_overall_deadline() -> None:
    q = qpu(FakeWarden())
    now = stall_every_attempt(q.api)
    with pytest.raises(VendorUnavailable, match=r"Warden unavailable .*no answer within"):
        q.acquire()
    assert now[0] <= DEADLINE + ATTEMPT_SECONDS  # never starts an attempt past the deadline


def test_unsupported_payloads_are_refused() -> None:
    _, q = acquired(FakeWarden())
    with pytest.raises(UnsupportedPayload, match="runs Pulser sequences, not QiskitPrimitive"):
        q.task_start(QiskitPrimitive("{}", "sampler"))
