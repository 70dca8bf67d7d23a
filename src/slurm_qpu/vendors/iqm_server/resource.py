"""``iqm-server``: an IQM quantum computer behind the IQM Server REST API (``/api/v1``, the
API of IQM Resonance and of on-premises IQM Servers). IQM has no reservation API, so
acquiring only mints a token for the job (as qrmi does); the QPU is not locked.

Settings (config ``environment``):
  QRMI_IQM_ISA_ENDPOINT       server root, e.g. https://resonance.iqm.tech (no /api/v1)
  QRMI_IQM_ISA_TOKEN          IQM API token, sent as ``Authorization: Bearer``
  QRMI_JOB_ACQUISITION_TOKEN  optional: a token already acquired for this job (metadata)

Resource name -> quantum computer, as qrmi does it:
  * ``qc`` or ``qc,calset``: the part after the first comma is the calibration set used by
    ``target()`` (default ``default``, the server's current one). A name in a slurm-qpu
    config cannot contain a comma (names must be shell identifiers), so through slurm-qpu
    the calibration set is always ``default``.
  * In the ``qc`` part the **last** ``_`` becomes ``:``, because IQM aliases such as
    ``garnet:mock`` cannot be environment-variable prefixes: ``garnet_mock`` ->
    ``garnet:mock``, ``emerald_x_mock`` -> ``emerald_x:mock``; a name without ``_`` is used
    as is (``garnet``).

Timeslots: IQM sells booked timeslots (``POST /quantum-computers/{qc}/timeslots``, for users
with the scheduler or admin role, charged at booking). slurm-qpu does not book them; a job
whose site has booked one sends ``use_timeslot=true`` in its IqmJob payload so the job
waits in the timeslot queue instead of the FIFO queue.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu.vendors.common.base import (
    IqmJob,
    Payload,
    ResourceError,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
    require,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorClient,
    VendorError,
    VendorNotFound,
    VendorType,
)
from slurm_qpu.vendors.common.target import loads
from slurm_qpu.vendors.iqm_server import JOB_TYPES, MAX_TAG

P = "QRMI_IQM_ISA_"
VENDOR = "IQM Server"
STATUS = {"waiting": TaskStatus.QUEUED, "processing": TaskStatus.RUNNING,
          "completed": TaskStatus.COMPLETED, "failed": TaskStatus.FAILED,
          "cancelled": TaskStatus.CANCELLED}
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
RESULT_ARTIFACTS = ("measurements", "measurement_counts")


def split_name(name: str) -> tuple[str, str]:
    """(quantum computer alias, calibration set) for a resource name, as qrmi maps it."""
    qc, _, rest = name.partition(",")
    calset = rest.split(",", 1)[0] or "default"
    cut = qc.rfind("_")
    if cut >= 0:
        qc = qc[:cut] + ":" + qc[cut + 1:]
    return qc, calset


def _healthy(body: Any) -> bool:
    """Read the health route's answer. Servers differ: ``{healthy, updated_at}`` (API spec),
    the same with ``operational``, or health nested under ``health`` / ``status.health``;
    no health reading (null during maintenance) means not accessible."""
    if not isinstance(body, dict):
        return False
    operational = body.get("operational", body.get("operational_status", "online"))
    if operational != "online":
        return False
    status = body.get("status")
    for candidate in (body, body.get("health"),
                      status.get("health") if isinstance(status, dict) else None):
        if isinstance(candidate, dict) and isinstance(candidate.get("healthy"), bool):
            return bool(candidate["healthy"])
    return False


def _job_errors(job: dict[str, Any]) -> str:
    parts = []
    for error in job.get("errors") or []:
        if isinstance(error, dict):
            code = f" ({error['error_code']})" if error.get("error_code") else ""
            parts.append(f"{error.get('message', '')}{code}")
        else:
            parts.append(str(error))
    return "; ".join(parts) or "no reason given"


@dataclass
class IqmServer:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    acquisition_token: str | None = None

    def __post_init__(self) -> None:
        self.qc, self.calset = split_name(self.spec.name)
        self.api = VendorClient(
            require(self.spec, P + "ENDPOINT"), VENDOR, self.transport, self.retry,
            headers={"Authorization": f"Bearer {require(self.spec, P + 'TOKEN')}",
                     "Accept": "application/json", "User-Agent": "slurm-qpu"})

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One API call. IQM answers 403 for business refusals (no booked timeslot, not
        enough credits, quota, a job already final), never for a bad token (401), so a 403
        must not be reported as rejected credentials."""
        try:
            return self.api.request(method, path, **kw)
        except VendorAuthError as exc:
            if exc.status != 403:
                raise
            raise VendorError(f"{VENDOR} refused {method} {path} (403): {exc.vendor_message}",
                              403, exc.vendor_message) from None

    def _json(self, path: str) -> Any:
        return self._call("GET", path).json()

    def _optional_json(self, path: str) -> Any:
        """An artifact that may legitimately not exist (404 -> None)."""
        try:
            return self._json(path)
        except VendorNotFound:
            return None

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def is_accessible(self) -> bool:
        return _healthy(self._json(f"/api/v1/quantum-computers/{self.qc}/health"))

    def acquire(self) -> str:
        """No reservation exists at IQM: a fresh token identifies this job's use."""
        self.acquisition_token = str(uuid.uuid4())
        return self.acquisition_token

    def release(self, token: str) -> None:
        """Nothing was reserved, so nothing to give back."""

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, IqmJob):
            raise UnsupportedPayload(f"{self.spec.name} runs IQM jobs, not "
                                     f"{type(payload).__name__}")
        if payload.job_type not in JOB_TYPES:
            raise UnsupportedPayload(f"unknown IQM job_type {payload.job_type!r}; use one of "
                                     f"{', '.join(JOB_TYPES)}")
        try:
            body = json.loads(payload.iqmjson)
        except json.JSONDecodeError as exc:
            raise UnsupportedPayload(f"payload iqmjson is not JSON: {exc.msg}") from None
        params: dict[str, str] = {}
        if payload.use_timeslot is not None:
            params["use_timeslot"] = "true" if payload.use_timeslot else "false"
        if payload.tag:
            if len(payload.tag) > MAX_TAG:
                raise UnsupportedPayload(f"IQM job tag is longer than {MAX_TAG} characters")
            params["tag"] = payload.tag
        job = self._call("POST", f"/api/v1/jobs/{self.qc}/{payload.job_type}", json=body,
                         params=params).json()
        return str(job["id"])

    def _job(self, task_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json(f"/api/v1/jobs/{task_id}")
        return job

    @staticmethod
    def _status(task_id: str, job: dict[str, Any]) -> TaskStatus:
        raw = str(job.get("status", "")).lower()
        if raw not in STATUS:
            raise VendorError(f"{VENDOR}: job {task_id} has unknown status {raw!r}")
        return STATUS[raw]

    def task_status(self, task_id: str) -> TaskStatus:
        return self._status(task_id, self._job(task_id))

    def task_stop(self, task_id: str) -> None:
        """Cancel a waiting or running job. A job already final is left alone, including one
        that finished between our look and the cancel (IQM refuses that with 403)."""
        if self.task_status(task_id) in FINAL:
            return
        try:
            self._call("POST", f"/api/v1/jobs/{task_id}/cancel")
        except VendorError as exc:
            if exc.status != 403 or self.task_status(task_id) not in FINAL:
                raise

    def task_result(self, task_id: str) -> TaskResult:
        job = self._job(task_id)
        status = self._status(task_id, job)
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise ResourceError(f"IQM job {task_id} is {status.value}: {_job_errors(job)}")
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"job {task_id} is {status.value}")
        # Which artifacts exist depends on the job type; a missing one is null, as in qrmi.
        result = {kind: self._optional_json(f"/api/v1/jobs/{task_id}/artifacts/{kind}")
                  for kind in RESULT_ARTIFACTS}
        return TaskResult(json.dumps(result))

    def task_logs(self, task_id: str) -> str:
        job = self._job(task_id)
        lines = [f"status: {job.get('status')}", "timeline:"]
        lines += [f"  {e.get('timestamp')} [{e.get('source')}] {e.get('status')}"
                  for e in job.get("timeline") or []]
        lines.append("messages:")
        lines += [f"  [{m.get('source')}] {m.get('message')}" for m in job.get("messages") or []]
        if job.get("errors"):
            lines.append(f"errors: {_job_errors(job)}")
        return "\n".join(lines) + "\n"

    def target(self) -> Target:
        """The QC's static architecture and the calibration set's dynamic architecture,
        calibration data and quality metrics (metrics may be absent: null)."""
        cal = f"/api/v1/calibration-sets/{self.qc}/{self.calset}"
        return Target(json.dumps({
            "static_quantum_architecture": self._optional_json(
                f"/api/v1/quantum-computers/{self.qc}/artifacts/static-quantum-architectures"),
            "dynamic_quantum_architecture": self._json(cal + "/dynamic-quantum-architecture"),
            "calibration_set": self._json(cal),
            "quality_metrics": self._optional_json(cal + "/metrics")}))

    def metadata(self) -> dict[str, str]:
        meta = {"backend_name": self.qc, "calibration_set": self.calset}
        if self.acquisition_token:
            meta["acquisition_token"] = self.acquisition_token
        return meta


class IqmServerType(VendorType):
    type_name = "iqm-server"

    def create(self, spec: ResourceSpec) -> IqmServer:
        preset = spec.environment.get("QRMI_JOB_ACQUISITION_TOKEN") or None
        return IqmServer(spec, self.transport, self.retry, preset)


def qubits_in_target(text: str) -> int | None:
    """The qubits the quantum computer's architecture lists, in this type's target."""
    data = loads(text)
    for key in ("static_quantum_architecture", "dynamic_quantum_architecture"):
        arch = data.get(key) if isinstance(data, dict) else None
        if isinstance(arch, dict) and isinstance(arch.get("qubits"), list):
            return len(arch["qubits"])
    return None
