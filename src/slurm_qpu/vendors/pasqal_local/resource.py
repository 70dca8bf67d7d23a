"""``pasqal-local``: an on-premises Pasqal QPU behind Pasqal's Warden middleware.

Warden knows users by MUNGE: every request carries a fresh ``X-Munge-Cred`` made on the node,
so the uid it sees is the caller's. Acquiring (done as root in the prolog) opens a Warden
session for the job's user and Slurm job; jobs are then accepted only with that session
(``X-Warden-Session``), only from that user, and only until the session is revoked, which
releasing does. No vendor credential ever reaches the job.

Settings (config ``environment``):
  QRMI_WARDEN_URL   Warden's base URL, e.g. http://warden.example:8006 (QRMI_URL, its
                    deprecated name, is read when it is absent)
Needs munged on the node and the ``munge`` command. The job's uid and id come from Slurm.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu import munge
from slurm_qpu.vendors.common.base import (
    AcquireError,
    MissingSetting,
    PasqalSequence,
    Payload,
    ResourceError,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorClient,
    VendorError,
    VendorNotFound,
    VendorType,
)

URL_KEYS = ("QRMI_WARDEN_URL", "QRMI_URL")
SESSION_HEADER = "X-Warden-Session"
STATUS = {"PENDING": TaskStatus.QUEUED, "RUNNING": TaskStatus.RUNNING,
          "DONE": TaskStatus.COMPLETED, "ERROR": TaskStatus.FAILED,
          "CANCELED": TaskStatus.CANCELLED}
VENDOR = "Warden"


# Warden's access rules (its config.yaml, section ``api``): opening and revoking sessions is
# for the uids in ``admin_users`` (the MUNGE credential's uid: root in a prolog, the broker's
# own user in broker mode); a session may go only to a user in ``authorized_users`` (empty:
# everyone). What each of Warden's refusals means for the admin reading it:
_WHY = {
    "Endpoint restricted to admin user.":
        "uid {caller} asked, and Warden's api.admin_users does not list it",
    "User ID not authorized.": "Warden's api.authorized_users does not list uid {user}",
}


def _refused(exc: VendorAuthError, what: str, user: int | None = None) -> VendorAuthError:
    """Warden's 403s are about sessions and users, not credentials: say what was refused,
    and for the two access rules, which uid Warden's configuration must list."""
    message = f"{VENDOR} refused {what} ({exc.status}): {exc.vendor_message}"
    why = _WHY.get(exc.vendor_message.strip())
    if why:
        message += " (" + why.format(caller=os.getuid(), user=user) + ")"
    return VendorAuthError(message, exc.status, exc.vendor_message)


@dataclass
class PasqalLocal:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session_id: str | None = None
    munge_source: munge.MungeSource = munge.credential

    def __post_init__(self) -> None:
        url = next((self.spec.environment[k] for k in URL_KEYS if self.spec.environment.get(k)),
                   None)
        if not url:
            raise MissingSetting(f"resource {self.spec.name}: setting QRMI_WARDEN_URL is "
                                 "missing from its 'environment' in the config")
        self.url = url
        self.api = self._client()
        self.status_reason: str | None = None  # Warden's message when not accessible

    def _credential(self, force: bool = False) -> dict[str, str]:
        # a credential decodes once only (Warden rejects replays): one per attempt
        return {"X-Munge-Cred": self.munge_source()}

    def _client(self) -> VendorClient:
        return VendorClient(self.url, VENDOR, self.transport, self.retry,
                            headers={"User-Agent": "slurm-qpu"}, auth=self._credential)

    def _with_session(self, session: str, method: str, path: str,
                      **kw: Any) -> httpx.Response:
        return self.api.request(method, path, extra_headers={SESSION_HEADER: session}, **kw)

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def is_accessible(self) -> bool:
        body = self.api.get_json("/accessible")
        accessible = isinstance(body, dict) and body.get("is_accessible") is True
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
        self.status_reason = None if accessible else (message or "Warden is not accessible")
        return accessible

    def acquire(self) -> str:
        job = self.spec.job
        if job.uid is None or job.job_id is None:
            raise AcquireError(f"resource {self.spec.name}: a Warden session belongs to a Slurm "
                               "job, but this request has no job id and uid")
        # Warden v0.1 (and qrmi 0.26) name the job slurm_job_id, later Warden
        # scheduler_job_id; each ignores the other field.
        body = {"user_id": str(job.uid), "slurm_job_id": str(job.job_id),
                "scheduler_job_id": str(job.job_id)}
        try:
            session = self.api.request("POST", "/sessions", json=body).json()
        except VendorAuthError as exc:
            raise _refused(exc, f"a session for uid {job.uid}", job.uid) from None
        if not isinstance(session, dict) or not session.get("id"):
            raise VendorError(f"{VENDOR} opened a session but returned no id")
        self.session_id = str(session["id"])
        return self.session_id

    def release(self, token: str) -> None:
        """Revoke the session: Warden cancels its pending jobs and refuses new ones."""
        try:
            try:
                self._with_session(token, "DELETE", "/sessions")
            except VendorError as exc:
                if exc.status != 405:
                    raise
                # Warden v0.1 (the API qrmi 0.26 speaks) takes the id in the path
                self.api.request("DELETE", f"/sessions/{token}")
        except VendorNotFound:
            return  # unknown to Warden: already revoked and purged, nothing to give back
        except VendorAuthError as exc:
            raise _refused(exc, "to revoke the session") from None

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, PasqalSequence):
            raise UnsupportedPayload(f"{self.spec.name} runs Pulser sequences, not "
                                     f"{type(payload).__name__}")
        if not self.session_id:
            raise ResourceError(f"resource {self.spec.name}: no Warden session; jobs can only "
                                f"be sent from a Slurm job that holds it (--qpu={self.spec.name})")
        try:
            job = self._with_session(self.session_id, "POST", "/jobs", json={
                "sequence": payload.sequence, "shots": payload.job_runs}).json()
        except VendorAuthError as exc:
            raise _refused(exc, "the job") from None
        if not isinstance(job, dict) or job.get("id") is None:
            raise VendorError(f"{VENDOR} accepted the job but returned no id")
        return str(job["id"])

    def _job(self, task_id: str) -> dict[str, Any]:
        job = self.api.get_json(f"/jobs/{task_id}")
        if not isinstance(job, dict):
            raise VendorError(f"{VENDOR}: job {task_id} has no description")
        return job

    def _status(self, job: dict[str, Any], task_id: str) -> TaskStatus:
        raw = str(job.get("status", ""))
        if raw not in STATUS:
            raise VendorError(f"{VENDOR}: job {task_id} has unknown status {raw!r}")
        return STATUS[raw]

    def task_status(self, task_id: str) -> TaskStatus:
        return self._status(self._job(task_id), task_id)

    def task_stop(self, task_id: str) -> None:
        # 409: already final, or a stop was already asked for: either way nothing to do
        self.api.request("POST", f"/jobs/{task_id}/cancel", ok=(200, 202, 204, 409))

    def task_result(self, task_id: str) -> TaskResult:
        job = self._job(task_id)
        status = self._status(job, task_id)
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"job {task_id} is {status.value}")
        if job.get("results") is None:
            raise VendorError(f"{VENDOR}: job {task_id} is done but has no results")
        return TaskResult(str(job["results"]))

    def task_logs(self, task_id: str) -> str:
        body = self.api.get_json(f"/jobs/{task_id}/logs")
        return str(body.get("logs", "")) if isinstance(body, dict) else str(body)

    def target(self) -> Target:
        """The QPU's Pulser specs as ``[{"device_type", "specs"}]``, like pasqal-cloud's, the
        shape QRMI's Pulser integration parses."""
        body = self.api.get_json("/qpu/specs")
        specs = body.get("specs") if isinstance(body, dict) else None
        if not isinstance(specs, str):
            raise VendorError(f"{VENDOR} returned no QPU specs")
        try:
            parsed = json.loads(specs)
        except json.JSONDecodeError:
            parsed = None
        name = parsed.get("name") if isinstance(parsed, dict) else None
        return Target(json.dumps([{"device_type": str(name or self.spec.name), "specs": specs}]))

    def metadata(self) -> dict[str, str]:
        meta = {"backend_name": self.spec.name}
        if self.session_id:
            meta["session_id"] = self.session_id
        return meta


class PasqalLocalType(VendorType):
    type_name = "pasqal-local"

    def __init__(self, transport: httpx.BaseTransport | None = None,
                 retry: RetryPolicy | None = None,
                 munge_source: munge.MungeSource | None = None) -> None:
        super().__init__(transport, retry)
        self.munge_source = munge_source or munge.credential

    def create(self, spec: ResourceSpec) -> PasqalLocal:
        preset = spec.environment.get("QRMI_JOB_ACQUISITION_TOKEN") or None
        return PasqalLocal(spec, self.transport, self.retry, preset, self.munge_source)
