"""``ibm-quantum-system`` (legacy ``direct-access``): an on-premises IBM Quantum System through
its REST API (the former Direct Access API). The API has no sessions: acquiring hands out a
token and reserves nothing. Job inputs, results and logs travel through an S3-compatible
bucket: we upload the input, hand the service presigned URLs, and read the results back.

Settings (config ``environment``; legacy ``QRMI_IBM_DA_*`` keys are read as ``QS``):
  QRMI_IBM_QS_ENDPOINT              API base, e.g. http://qs.example.com:8290
  QRMI_IBM_QS_IAM_ENDPOINT          e.g. https://iam.cloud.ibm.com
  QRMI_IBM_QS_IAM_APIKEY            API key, exchanged for bearer tokens
  QRMI_IBM_QS_SERVICE_CRN           the service instance CRN (sent as Service-CRN)
  QRMI_IBM_QS_AWS_ACCESS_KEY_ID     S3 credentials for the job bucket
  QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY
  QRMI_IBM_QS_S3_ENDPOINT           S3-compatible store, e.g. https://s3.us-east.cloud-object-storage.appdomain.cloud
  QRMI_IBM_QS_S3_BUCKET             bucket for input_/results_/logs_<job>.json
  QRMI_IBM_QS_S3_REGION             e.g. us-east
  QRMI_IBM_QS_S3_ENDPOINT_FOR_QSAPI the store's address as the service reaches it, if different
                                    (presigned URLs are signed for this host); default S3_ENDPOINT
  QRMI_IBM_QS_TIMEOUT_SECONDS       job time limit (default: the Slurm job's time limit); a task
                                    cannot start without one of the two
"""

from __future__ import annotations

import contextlib
import json
import uuid
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
    VendorUnavailable,
    vendor_message,
)
from slurm_qpu.vendors.common.iam import IamTokenSource
from slurm_qpu.vendors.common.s3 import MAX_PRESIGN_SECONDS, S3Client, S3Credentials
from slurm_qpu.vendors.common.target import loads

P = "QRMI_IBM_QS_"
VENDOR = "IBM Quantum System"
PROGRAMS = ("sampler", "estimator")
# The API has no Queued state: a job it accepts is Running until it ends.
STATUS = {"Running": TaskStatus.RUNNING, "Completed": TaskStatus.COMPLETED,
          "Failed": TaskStatus.FAILED, "Cancelled": TaskStatus.CANCELLED}
# "Come back later" answers to a job submission: 423 the backend is reserved, 429 every lane
# is in use. Both clear by themselves, so they are waited out (up to the deadline).
BUSY = {423: "the backend is reserved", 429: "all of the backend's lanes are busy"}
LOG_LEVEL = "warning"


@dataclass(frozen=True)
class Lanes:
    """How many jobs the backend runs at once, per kind of client."""

    hpc_workload_manager: int
    ibm_quantum_compute: int


def _lanes(body: dict[str, Any], kind: str) -> int:
    entry = body.get(kind)
    return int(entry.get("lanes") or 0) if isinstance(entry, dict) else 0


@dataclass
class IbmQuantumSystem:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        spec = self.spec
        iam = VendorClient(require(spec, P + "IAM_ENDPOINT"), "IBM Cloud IAM", self.transport,
                           self.retry)
        self.iam = IamTokenSource(iam, require(spec, P + "IAM_APIKEY"))
        self.api = VendorClient(
            require(spec, P + "ENDPOINT"), VENDOR, self.transport, self.retry,
            headers={"Service-CRN": require(spec, P + "SERVICE_CRN"),
                     "Accept": "application/json", "User-Agent": "slurm-qpu"},
            auth=self.iam.headers)
        self.s3 = S3Client(
            require(spec, P + "S3_ENDPOINT"), require(spec, P + "S3_BUCKET"),
            require(spec, P + "S3_REGION"),
            S3Credentials(require(spec, P + "AWS_ACCESS_KEY_ID"),
                          require(spec, P + "AWS_SECRET_ACCESS_KEY")),
            self.transport, self.retry)
        self.s3_for_service = spec.environment.get(P + "S3_ENDPOINT_FOR_QSAPI") or None
        self.timeout = self._timeout_setting()

    def _timeout_setting(self) -> int | None:
        raw = self.spec.environment.get(P + "TIMEOUT_SECONDS") or self.spec.job.timeout_seconds
        if raw is None:
            return None
        try:
            seconds = int(raw)
        except ValueError:
            seconds = 0
        if seconds <= 0:
            raise MissingSetting(f"resource {self.spec.name}: {P}TIMEOUT_SECONDS={raw!r} must be "
                                 "a positive whole number of seconds")
        return seconds

    @property
    def resource_id(self) -> str:
        return self.spec.name

    status_reason: str | None = None  # why the backend is not accessible, at the last check

    def _backend(self, suffix: str = "") -> Any:
        return self.api.get_json(f"/v1/backends/{self.spec.name}{suffix}")

    def is_accessible(self) -> bool:
        backend = self._backend()
        state = str(backend.get("status", "")).lower()
        self.status_reason = None if state == "online" else (
            f"IBM Quantum System reports {self.spec.name} {state or 'unknown'}"
            + (f": {backend['message']}" if backend.get("message") else ""))
        return self.status_reason is None

    def acquire(self) -> str:
        """The API has nothing to reserve; the token only tells jobs apart in our records."""
        return str(uuid.uuid4())

    def release(self, token: str) -> None:
        """Nothing was reserved, so there is nothing to give back."""

    def lanes(self) -> Lanes:
        body = self._backend("/lanes")
        return Lanes(_lanes(body, "hpc_workload_manager"), _lanes(body, "ibm_quantum_compute"))

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, QiskitPrimitive):
            raise UnsupportedPayload(f"{self.spec.name} runs Qiskit primitives, not "
                                     f"{type(payload).__name__}")
        if payload.program_id not in PROGRAMS:
            raise UnsupportedPayload(f"{self.spec.name} runs the programs "
                                     f"{' and '.join(PROGRAMS)}, not {payload.program_id!r}")
        payload.params()  # refuse what is not JSON before uploading it
        if self.timeout is None:
            raise MissingSetting(f"resource {self.spec.name}: a job needs a time limit: set "
                                 f"{P}TIMEOUT_SECONDS in its 'environment' or give the Slurm "
                                 "job a time limit")
        job_id = str(uuid.uuid4())
        names = {part: f"{part}_{job_id}.json" for part in ("input", "results", "logs")}
        self.s3.put_object(names["input"], payload.input.encode())
        # The service must still be able to write results when the job ends, but SigV4 caps
        # a presigned URL's life at 7 days (an unlimited Slurm job reports ~136 years).
        expires = min(self.timeout, MAX_PRESIGN_SECONDS)

        def storage(part: str, method: str) -> dict[str, str]:
            url = self.s3.presign(method, names[part], expires, self.s3_for_service)
            return {"type": "s3_compatible", "presigned_url": url}

        body = {"id": job_id, "backend": self.spec.name, "program_id": payload.program_id,
                "log_level": LOG_LEVEL, "timeout_secs": self.timeout,
                "storage": {"input": storage("input", "GET"),
                            "results": storage("results", "PUT"),
                            "logs": storage("logs", "PUT")}}
        try:
            self._submit(body)
        except VendorError:
            self._forget(names["input"])
            raise
        return job_id

    def _submit(self, body: dict[str, Any]) -> None:
        """POST the job, waiting out 423/429 with backoff until the call's deadline. Busy
        answers are taken back from VendorClient (listed as ok) so that they count against
        the deadline rather than against its few attempts."""
        api = self.api
        deadline = api.clock() + self.retry.deadline
        pause = self.retry.backoff
        while True:
            response = api.request("POST", "/v1/jobs", json=body, ok=(200, 201, 202, 204, *BUSY))
            status = response.status_code
            if status not in BUSY:
                return
            left = deadline - api.clock()
            if left <= 0:
                message = vendor_message(response)
                raise VendorUnavailable(f"{VENDOR}: {BUSY[status]} ({status}): {message}; gave "
                                        f"up after {self.retry.deadline:.0f} s", status, message)
            api.sleep(min(pause, self.retry.max_backoff, left))
            pause *= 2

    def _forget(self, key: str) -> None:
        # a stray input object is harmless; the submission's error is what matters
        with contextlib.suppress(VendorError):
            self.s3.delete_object(key)

    def _job(self, task_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api.get_json(f"/v1/jobs/{task_id}")
        return job

    def _status(self, task_id: str, job: dict[str, Any]) -> TaskStatus:
        raw = str(job.get("status", ""))
        if raw not in STATUS:
            raise VendorError(f"{VENDOR}: job {task_id} has unknown status {raw!r}")
        return STATUS[raw]

    def task_status(self, task_id: str) -> TaskStatus:
        return self._status(task_id, self._job(task_id))

    def task_stop(self, task_id: str) -> None:
        if self.task_status(task_id) is TaskStatus.RUNNING:
            # 409: it ended between our look and the cancel, which is what we wanted anyway
            self.api.request("POST", f"/v1/jobs/{task_id}/cancel", ok=(200, 202, 204, 409))

    def task_result(self, task_id: str) -> TaskResult:
        job = self._job(task_id)
        status = self._status(task_id, job)
        if status is TaskStatus.FAILED:
            raise TaskNotReady(_failure(task_id, job))
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"job {task_id} is {status.value}")
        return TaskResult(self.s3.get_object(f"results_{task_id}.json").decode(errors="replace"))

    def task_logs(self, task_id: str) -> str:
        """The service writes logs when a job ends, however it ends (a failed job's logs
        are the ones users want)."""
        status = self.task_status(task_id)
        if status is TaskStatus.RUNNING:
            raise TaskNotReady(f"job {task_id} is Running; its logs are written when it ends")
        try:
            return self.s3.get_object(f"logs_{task_id}.json").decode(errors="replace")
        except VendorNotFound:
            raise TaskNotReady(f"job {task_id} ({status.value}) left no logs") from None

    def target(self) -> Target:
        return Target(json.dumps({"configuration": self._backend("/configuration"),
                                  "properties": self._backend("/properties")}))

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name}


def _failure(task_id: str, job: dict[str, Any]) -> str:
    """The service's own account of why a job failed, which is what the user needs."""
    message = f"job {task_id} failed: {job.get('reason_message') or 'no reason given'}"
    if job.get("reason_code") is not None:
        message += f" (code {job['reason_code']})"
    if job.get("reason_solution"):
        message += f". {job['reason_solution']}"
    return message


class IbmQuantumSystemType(VendorType):
    type_name = "ibm-quantum-system"

    def create(self, spec: ResourceSpec) -> IbmQuantumSystem:
        return IbmQuantumSystem(spec, self.transport, self.retry)


def qubits_in_target(text: str) -> int | None:
    """The backend configuration's ``n_qubits`` in this type's target description."""
    data = loads(text)
    configuration = data.get("configuration") if isinstance(data, dict) else None
    if isinstance(configuration, dict) and isinstance(configuration.get("n_qubits"), int):
        return int(configuration["n_qubits"])
    return None
