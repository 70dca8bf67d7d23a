"""``ibm-quantum-compute-service`` (legacy ``qiskit-runtime-service``): IBM Quantum Platform,
the Qiskit Runtime REST API. Acquiring opens a session on the backend for the job.

Settings (config ``environment``; legacy ``QRMI_IBM_QRS_*`` keys are read as ``QCS``):
  QRMI_IBM_QCS_ENDPOINT        API base, e.g. https://quantum.cloud.ibm.com/api/v1
  QRMI_IBM_QCS_IAM_ENDPOINT    e.g. https://iam.cloud.ibm.com
  QRMI_IBM_QCS_IAM_APIKEY      API key, exchanged for bearer tokens
  QRMI_IBM_QCS_SERVICE_CRN     the instance CRN (sent as Service-CRN)
  QRMI_IBM_QCS_SESSION_MODE    dedicated (default) | batch
  QRMI_IBM_QCS_SESSION_MAX_TTL seconds (default 28800)
  QRMI_IBM_QCS_SESSION_ID      reuse this session instead of opening one
  QRMI_IBM_QCS_TIMEOUT_SECONDS job cost limit (default: the job's time limit)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu.vendors.common.base import (
    MissingSetting,
    Payload,
    QiskitPrimitive,
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
    VendorClient,
    VendorError,
    VendorNotFound,
    VendorType,
)
from slurm_qpu.vendors.common.iam import IamTokenSource
from slurm_qpu.vendors.common.target import loads

P = "QRMI_IBM_QCS_"
SESSION_MODES = ("dedicated", "batch")
DEFAULT_MAX_TTL = 28800
STATUS = {"queued": TaskStatus.QUEUED, "running": TaskStatus.RUNNING,
          "completed": TaskStatus.COMPLETED, "failed": TaskStatus.FAILED,
          "cancelled": TaskStatus.CANCELLED, "cancelled - ran too long": TaskStatus.CANCELLED}
PROGRAMS = ("sampler", "estimator", "noise-learner", "noiselearner", "executor")


@dataclass
class IbmQuantumCompute:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session_id: str | None = None

    def __post_init__(self) -> None:
        env = self.spec.environment
        mode = env.get(P + "SESSION_MODE", "dedicated")
        if mode not in SESSION_MODES:
            raise MissingSetting(f"resource {self.spec.name}: {P}SESSION_MODE={mode!r} is not "
                                 f"one of {', '.join(SESSION_MODES)}")
        self.mode = mode
        try:
            self.max_ttl = int(env.get(P + "SESSION_MAX_TTL", DEFAULT_MAX_TTL))
        except ValueError:
            raise MissingSetting(f"resource {self.spec.name}: {P}SESSION_MAX_TTL must be a "
                                 "number of seconds") from None
        iam = VendorClient(require(self.spec, P + "IAM_ENDPOINT"), "IBM Cloud IAM",
                           self.transport, self.retry)
        self.iam = IamTokenSource(iam, require(self.spec, P + "IAM_APIKEY"))
        self.api = VendorClient(
            require(self.spec, P + "ENDPOINT"), "IBM Quantum", self.transport, self.retry,
            headers={"Service-CRN": require(self.spec, P + "SERVICE_CRN"),
                     "User-Agent": "slurm-qpu"},
            auth=self.iam.headers)
        self.session_id = self.session_id or env.get(P + "SESSION_ID") or None
        self.status_reason: str | None = None  # why the backend is not accessible, if known
        self.queue_depth: int | None = None  # jobs waiting at the backend, at the last check

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def is_accessible(self) -> bool:
        status = self.api.get_json(f"/backends/{self.spec.name}/status")
        state = str(status.get("status", "")).lower()
        depth = status.get("length_queue")
        self.queue_depth = depth if isinstance(depth, int) else None
        if state in ("active", "online"):
            self.status_reason = None
            return True
        self.status_reason = f"IBM Quantum reports {self.spec.name} {state or 'unknown'}" + (
            f": {status['message']}" if status.get("message") else "")
        return False

    def _session(self, session_id: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = self.api.get_json(f"/sessions/{session_id}")
            return body
        except VendorNotFound:
            return None

    def acquire(self) -> str:
        preset = self.session_id
        if preset:
            session = self._session(preset)
            usable = session is not None and session.get("accepting_jobs", True) and \
                int(session.get("active_ttl") or session.get("max_ttl") or 0) > self.max_ttl / 100
            if usable:
                return preset
            if session is not None:
                self.release(preset)
        body = self.api.request("POST", "/sessions", json={
            "mode": self.mode, "max_ttl": self.max_ttl, "backend": self.spec.name,
            "backend_name": self.spec.name}).json()
        self.session_id = str(body["id"])
        return self.session_id

    def release(self, token: str) -> None:
        """Close the session: cancel it if jobs are still pending, else stop it accepting
        jobs so running ones finish. A session the vendor no longer knows is released."""
        try:
            pending = self.api.get_json("/jobs", params={"pending": "true",
                                                         "session_id": token})
            if pending.get("jobs"):
                self.api.request("DELETE", f"/sessions/{token}/close")
            else:
                self.api.request("PATCH", f"/sessions/{token}", json={"accepting_jobs": False})
        except VendorNotFound:
            return

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, QiskitPrimitive):
            raise UnsupportedPayload(f"{self.spec.name} runs Qiskit primitives, not "
                                     f"{type(payload).__name__}")
        if payload.program_id not in PROGRAMS:
            raise UnsupportedPayload(f"unknown program_id {payload.program_id!r}")
        params = payload.params()
        body: dict[str, Any] = {"program_id": payload.program_id, "backend": self.spec.name,
                                "params": params}
        if self.session_id:
            body["session_id"] = self.session_id
        cost = self.spec.environment.get(P + "TIMEOUT_SECONDS") or self.spec.job.timeout_seconds
        if cost:
            body["cost"] = int(cost)
        return str(self.api.request("POST", "/jobs", json=body).json()["id"])

    def _job(self, task_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api.get_json(f"/jobs/{task_id}")
        return job

    def task_status(self, task_id: str) -> TaskStatus:
        job = self._job(task_id)
        state = job.get("state") if isinstance(job.get("state"), dict) else {}
        raw = str((state or {}).get("status") or job.get("status") or "").lower()
        if raw not in STATUS:
            raise VendorError(f"IBM Quantum: job {task_id} has unknown status {raw!r}")
        return STATUS[raw]

    def task_stop(self, task_id: str) -> None:
        if self.task_status(task_id) in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            self.api.request("POST", f"/jobs/{task_id}/cancel", ok=(200, 202, 204, 409))

    def task_result(self, task_id: str) -> TaskResult:
        status = self.task_status(task_id)
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"job {task_id} is {status.value}")
        return TaskResult(self.api.request("GET", f"/jobs/{task_id}/results").text)

    def task_logs(self, task_id: str) -> str:
        return self.api.request("GET", f"/jobs/{task_id}/logs").text

    def target(self) -> Target:
        name = self.spec.name
        return Target(json.dumps({
            "configuration": self.api.get_json(f"/backends/{name}/configuration"),
            "properties": self.api.get_json(f"/backends/{name}/properties")}))

    def metadata(self) -> dict[str, str]:
        meta = {"backend_name": self.spec.name}
        if self.session_id:
            meta["session_id"] = self.session_id
        return meta


class IbmQuantumComputeType(VendorType):
    type_name = "ibm-quantum-compute-service"

    def create(self, spec: ResourceSpec) -> IbmQuantumCompute:
        preset = spec.environment.get("QRMI_JOB_ACQUISITION_TOKEN")
        return IbmQuantumCompute(spec, self.transport, self.retry, preset)


def qubits_in_target(text: str) -> int | None:
    """The backend configuration's ``n_qubits`` in this type's target description."""
    data = loads(text)
    configuration = data.get("configuration") if isinstance(data, dict) else None
    if isinstance(configuration, dict) and isinstance(configuration.get("n_qubits"), int):
        return int(configuration["n_qubits"])
    return None
