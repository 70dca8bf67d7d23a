"""The IBM Quantum System REST API (on-premises; formerly "Direct Access"), under
``/quantum-system``, with its S3-compatible storage at the root (``s3.py``).

Routes (relative to ``QRMI_IBM_QS_ENDPOINT`` = ``<base>/quantum-system``):

- ``GET /version``, ``GET /versions`` (no authentication, as upstream)
- ``GET /v1/backends``, ``GET /v1/backends/{name}`` (+ ``/configuration``, ``/properties``,
  ``/lanes``; ``/defaults`` answers 404: there are no pulse defaults)
- ``POST /v1/jobs`` (204; the job id is the client's ``id``), ``GET /v1/jobs``,
  ``GET /v1/jobs/{id}``, ``DELETE /v1/jobs/{id}`` (409 unless final),
  ``POST /v1/jobs/{id}/cancel`` (409 when final)

Authentication: an IAM bearer token issued by the emulator's ``/identity/token`` (same
issuer) plus ``Service-CRN`` equal to config.service_crn; otherwise 401 in the API's error
shape ``{"status_code","title","trace","correlation_id","errors":[{"code","message",
"more_info"}]}``.

Jobs: statuses are ``Running``, ``Completed``, ``Failed``, ``Cancelled`` (no ``Queued``). A
job is ``Running`` from its creation; a worker thread GETs the input through the job's
presigned URL (answered in-process by the S3 service when the URL names this server, else over
HTTP), runs the primitive (slurm_qpu_emulator.primitives), stays ``Running`` until
config.job_seconds after creation, then PUTs the results and logs to their presigned URLs and
ends ``Completed``; or ``Failed`` with ``reason_code``/``reason_message``/``reason_solution``
(1517: unreadable input or rejected program input, 1305: ran longer than ``timeout_secs``,
1518: results could not be stored). There are no tags in this API, so a job's length is always
config.job_seconds.

Capacity: every backend has ``lanes`` execution lanes for HPC workload managers; a new job
while that many jobs of the backend are ``Running`` answers 429 (code 1232), as upstream.
Maintenance: a QPU in ``self.maintenance`` reports ``status: "paused"`` with a message, and a
new job for it answers 423 (code 1233), which qrmi retries like a reservation.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import Backend, load_backend, pin_qiskit, qiskit_ready
from slurm_qpu_emulator.s3 import S3Service
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Handler, HttpError, Request, Response, Service, bearer

API_VERSION = "2025-08-01"
MORE_INFO = "https://cloud.ibm.com/apidocs/quantum-computing#error-handling"
LANES = 4  # HPC workload-manager execution lanes per backend
PROGRAMS = ("sampler", "estimator")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAINTENANCE_MESSAGE = "The backend is paused for maintenance."
_TITLES = {400: "validation failed", 401: "authentication failed", 404: "not found",
           409: "conflict", 423: "backend reserved", 429: "too many requests",
           500: "server error", 503: "service inactive"}
_CODES = {400: "1337", 401: "1200", 404: "1216", 500: "1000", 503: "1000"}


class QsError(HttpError):
    """An error with the API's own numeric code (a string on the wire)."""

    def __init__(self, status: int, code: str, message: str, value: str = "",
                 title: str | None = None) -> None:
        super().__init__(status, message)
        self.code = code
        self.value = value
        self.title = title


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class QsJob:
    id: str
    backend: str
    program_id: str
    log_level: str
    timeout_secs: int
    storage: dict[str, Any]
    created: float
    base_url: str  # how the client reached us (to recognise our own presigned URLs)
    status: str = "Running"
    end: float | None = None
    reason_code: int | None = None
    reason_message: str | None = None
    reason_solution: str | None = None
    quantum_nanoseconds: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "backend": self.backend, "program_id": self.program_id,
            "log_level": self.log_level, "timeout_secs": self.timeout_secs,
            "storage": self.storage, "status": self.status,
            "created_time": _now_iso(self.created), "usage": {}}
        if self.end is not None:
            body["end_time"] = _now_iso(self.end)
        if self.quantum_nanoseconds is not None:
            body["usage"] = {"quantum_nanoseconds": self.quantum_nanoseconds}
        for name in ("reason_code", "reason_message", "reason_solution"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


class _JobFailed(Exception):
    def __init__(self, code: int, message: str, solution: str) -> None:
        super().__init__(message)
        self.code, self.message, self.solution = code, message, solution


class QuantumSystemService(Service):
    name = "ibm-quantum-system"

    def __init__(self, config: EmulatorConfig, issuer: TokenIssuer, storage: S3Service,
                 prefix: str = "/quantum-system") -> None:
        super().__init__(prefix)
        self.config = config
        self.issuer = issuer
        self.storage = storage
        self.lanes = LANES
        self.clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._jobs: dict[str, QsJob] = {}
        self._snapshots = dict(config.qs_backends)
        pin_qiskit()
        self.route("GET", "/version", lambda r: Response.json({"version": API_VERSION}))
        self.route("GET", "/versions", lambda r: Response.json({"versions": [API_VERSION]}))
        for method, path, handler in [
                ("GET", "/v1/backends", self.list_backends),
                ("GET", "/v1/backends/{name}", self.get_backend),
                ("GET", "/v1/backends/{name}/configuration", self.configuration),
                ("GET", "/v1/backends/{name}/properties", self.properties),
                ("GET", "/v1/backends/{name}/lanes", self.lanes_of),
                ("GET", "/v1/backends/{name}/defaults", self.defaults),
                ("POST", "/v1/jobs", self.create_job),
                ("GET", "/v1/jobs", self.list_jobs),
                ("GET", "/v1/jobs/{id}", self.get_job),
                ("DELETE", "/v1/jobs/{id}", self.delete_job),
                ("POST", "/v1/jobs/{id}/cancel", self.cancel_job)]:
            self.route(method, path, self._guarded(handler))

    # -- Service hooks ---------------------------------------------------------------------
    def qpu_names(self) -> list[str]:
        return list(self._snapshots)

    def qrmi_resources(self, base_url: str) -> list[dict[str, Any]]:
        base = base_url.rstrip("/")
        c = self.config
        return [{"name": name, "type": "ibm-quantum-system", "environment": {
            "QRMI_IBM_QS_ENDPOINT": f"{base}{self.prefix}",
            "QRMI_IBM_QS_IAM_ENDPOINT": base,
            "QRMI_IBM_QS_IAM_APIKEY": c.api_key,
            "QRMI_IBM_QS_SERVICE_CRN": c.service_crn,
            "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": c.s3_access_key,
            "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": c.s3_secret_key,
            "QRMI_IBM_QS_S3_ENDPOINT": base,
            "QRMI_IBM_QS_S3_BUCKET": c.s3_bucket,
            "QRMI_IBM_QS_S3_REGION": c.s3_region}} for name in self.qpu_names()]

    def error(self, status: int, message: str) -> Response:
        return self._error(QsError(status, _CODES.get(status, str(status)), message))

    def _error(self, exc: QsError) -> Response:
        entry: dict[str, Any] = {"code": exc.code, "message": exc.message,
                                 "more_info": MORE_INFO}
        if exc.value:
            entry["value"] = exc.value
        return Response.json({"status_code": exc.status,
                              "title": exc.title or _TITLES.get(exc.status, "error"),
                              "trace": str(uuid.uuid4()),
                              "correlation_id": secrets.token_hex(10),
                              "errors": [entry]}, exc.status)

    def _guarded(self, handler: Handler) -> Handler:
        def run(request: Request) -> Response:
            try:
                self._authenticate(request)
                return handler(request)
            except QsError as exc:
                return self._error(exc)
        return run

    def _authenticate(self, request: Request) -> None:
        if self.issuer.claims(bearer(request)) is None:
            raise QsError(401, "1200", "You are not authorized to perform this action.",
                          title="authentication failed")
        crn = request.header("Service-CRN")
        if crn != self.config.service_crn:
            raise QsError(401, "1200", f"Invalid Service-CRN {crn!r}: not a provisioned "
                                       "IBM Quantum System instance.",
                          title="authentication failed")

    # -- backends ----------------------------------------------------------------------------
    @cached_property
    def _backends(self) -> dict[str, Backend]:
        # loaded on first use: it needs qiskit-ibm-runtime's fake-provider snapshots
        qiskit_ready()
        return {name: load_backend(name, snap) for name, snap in self._snapshots.items()}

    def _backend(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            raise QsError(404, "1216", f"Backend {name} not found.", value=name)
        return backend

    def _backend_view(self, backend: Backend) -> dict[str, Any]:
        view: dict[str, Any] = {"name": backend.name,
                                "version": str(backend.configuration.get("backend_version",
                                                                         "1.0.0"))}
        if backend.name in self.maintenance:
            view.update(status="paused", message=MAINTENANCE_MESSAGE)
        else:
            view.update(status="online", locked=False)
        return view

    def list_backends(self, request: Request) -> Response:
        return Response.json({"backends": [self._backend_view(b)
                                           for b in self._backends.values()]})

    def get_backend(self, request: Request) -> Response:
        return Response.json(self._backend_view(self._backend(request.params["name"])))

    def configuration(self, request: Request) -> Response:
        conf = dict(self._backend(request.params["name"]).configuration)
        processor = conf.get("processor_type")
        if isinstance(processor, dict) and "revision" in processor:
            # the API's schema types the revision as a string; snapshots hold an integer
            conf["processor_type"] = {**processor, "revision": str(processor["revision"])}
        return Response.json(conf)

    def properties(self, request: Request) -> Response:
        return Response.json(self._backend(request.params["name"]).properties)

    def lanes_of(self, request: Request) -> Response:
        self._backend(request.params["name"])
        return Response.json({"hpc_workload_manager": {"lanes": self.lanes},
                              "ibm_quantum_compute": {"lanes": 0}})

    def defaults(self, request: Request) -> Response:
        name = request.params["name"]
        self._backend(name)
        raise QsError(404, "1216", f"Pulse defaults are not available for backend {name}.",
                      value=name)

    # -- jobs --------------------------------------------------------------------------------
    def _job(self, job_id: str) -> QsJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise QsError(404, "1291", f"Job not found. Job ID: {job_id}.", value=job_id)
        return job

    def create_job(self, request: Request) -> Response:
        spec = _validate(request.json())
        backend = self._backend_for_job(spec["backend"])
        if backend.name in self.maintenance:
            raise QsError(423, "1233", f"The requested backend {backend.name} is paused for "
                                       "maintenance and cannot run jobs.",
                          title=MAINTENANCE_MESSAGE)
        job = QsJob(spec["id"], backend.name, spec["program_id"],
                    spec.get("log_level", "warning"), spec["timeout_secs"], spec["storage"],
                    self.clock(), request.base_url)
        with self._lock:
            if job.id in self._jobs:
                raise QsError(409, "1231", f"Job with duplicate id already exists. Job ID: "
                                           f"{job.id}", value=job.id)
            running = sum(1 for j in self._jobs.values()
                          if j.backend == job.backend and j.status == "Running")
            if running >= self.lanes:
                message = (f"The maximum number of execution lanes for backend {job.backend} "
                           "has been reached.")
                raise QsError(429, "1232", message, title=message)
            self._jobs[job.id] = job
        threading.Thread(target=self._work, args=(job, backend), daemon=True,
                         name=f"qs-job-{job.id[:8]}").start()
        return Response.empty(204)

    def _backend_for_job(self, name: str) -> Backend:
        try:
            return self._backend(name)
        except QsError:
            raise QsError(400, "1216", f"backend: {name} is not available.", value=name) \
                from None

    def list_jobs(self, request: Request) -> Response:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created)
            return Response.json({"jobs": [j.view() for j in jobs]})

    def get_job(self, request: Request) -> Response:
        job = self._job(request.params["id"])
        with self._lock:
            return Response.json(job.view())

    def delete_job(self, request: Request) -> Response:
        job = self._job(request.params["id"])
        with self._lock:
            if job.status == "Running":
                raise QsError(409, "1337", "Deleting a job in a non-terminal state is not "
                                           f"possible. Job ID: {job.id}.", value=job.id)
            self._jobs.pop(job.id, None)
        return Response.empty(204)

    def cancel_job(self, request: Request) -> Response:
        job = self._job(request.params["id"])
        with self._lock:
            if job.status != "Running":
                raise QsError(409, "1306", f"Job is not cancellable. Job ID: {job.id}.",
                              value=job.id)
            job.status, job.end = "Cancelled", self.clock()
        job.stop.set()
        return Response.empty(204)

    # -- the worker --------------------------------------------------------------------------
    def _work(self, job: QsJob, backend: Backend) -> None:
        try:
            outcome = self._execute(job, backend)
            deadline = job.created + min(self.config.job_seconds, job.timeout_secs)
            if job.stop.wait(max(0.0, deadline - self.clock())):
                return  # cancelled
            if self.config.job_seconds > job.timeout_secs:
                raise _JobFailed(1305, f"Job {job.id} ran longer than its timeout of "
                                       f"{job.timeout_secs} seconds and was stopped.",
                                 "Raise timeout_secs or submit a shorter job.")
            result, logs, quantum_seconds = outcome
            self._store(job, "results", result, "application/json")
            self._store(job, "logs", logs, "text/plain")
        except Exception as exc:
            failure = exc if isinstance(exc, _JobFailed) else _JobFailed(
                1000, f"Internal error: {exc}", "Try again or contact support.")
            self._fail(job, failure)
            return
        with self._lock:
            job.quantum_nanoseconds = int(quantum_seconds * 1e9)
        self._finish(job, "Completed", None)

    def _execute(self, job: QsJob, backend: Backend) -> tuple[str, str, float]:
        from slurm_qpu_emulator.primitives import PrimitiveError, run_primitive

        qiskit_ready()
        raw = self._transfer(job, "input", "GET")
        try:
            params = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _JobFailed(1517, f"The job input is not JSON: {exc}",
                             "Upload the primitive input as JSON.") from None
        try:
            outcome = run_primitive(job.program_id, params, backend, self.config)
        except PrimitiveError as exc:
            raise _JobFailed(1517, str(exc), "Check the job input against the primitive's "
                                             "schema and the backend's target.") from None
        return outcome.result, outcome.logs, outcome.quantum_seconds

    def _store(self, job: QsJob, what: str, text: str, content_type: str) -> None:
        if what == "logs" and "logs" not in job.storage:
            return  # the logs location is optional
        self._transfer(job, what, "PUT", text.encode(), content_type)

    def _transfer(self, job: QsJob, what: str, method: str, body: bytes = b"",
                  content_type: str = "") -> bytes:
        url = job.storage[what]["presigned_url"]
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        if base == job.base_url or base in self.storage.seen_bases:
            response = self.storage.serve_url(method, url, body)
            status, data = response.status, response.body
        else:
            status, data = _http(method, url, body, content_type)
        if not 200 <= status < 300:
            code, solution = (1517, "Check the input presigned URL and that it has not "
                                    "expired.") if what == "input" else \
                (1518, "Check the results and logs presigned URLs.")
            raise _JobFailed(code, f"Could not {method} the job {what} at its presigned URL: "
                                   f"HTTP {status} {data[:300].decode('utf-8', 'replace')}",
                             solution)
        return data

    def _fail(self, job: QsJob, failure: _JobFailed) -> None:
        if job.stop.is_set():
            return
        if failure.code != 1518:  # the logs say why, as the service's own logs would
            with contextlib.suppress(_JobFailed):  # the job fails for its first reason
                self._store(job, "logs", f"ERROR {failure.code}: {failure.message}\n",
                            "text/plain")
        self._finish(job, "Failed", failure)

    def _finish(self, job: QsJob, status: str, failure: _JobFailed | None) -> None:
        with self._lock:
            if job.status != "Running":
                return  # cancelled meanwhile: the client's decision wins
            job.status, job.end = status, self.clock()
            if failure is not None:
                job.reason_code = failure.code
                job.reason_message = failure.message
                job.reason_solution = failure.solution


def _http(method: str, url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    import httpx

    headers = {"Content-Type": content_type} if content_type and method == "PUT" else {}
    try:
        with httpx.Client(timeout=30.0) as client:
            response = client.request(method, url, content=body or None, headers=headers)
    except httpx.HTTPError as exc:
        return 599, f"{type(exc).__name__}: {exc}".encode()
    return response.status_code, response.content


def _validate(spec: Any) -> dict[str, Any]:
    """The POST /v1/jobs body, checked like the API's schema (400 ``validation failed``)."""

    def bad(message: str, value: Any = "") -> QsError:
        return QsError(400, "1337", message, value=str(value))

    if not isinstance(spec, dict):
        raise bad("The request body must be a JSON object.")
    for name in ("id", "backend", "program_id"):
        value = spec.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= 256:
            raise bad(f"Field required: {name} (a string of 1 to 256 characters).", value or "")
    if spec["program_id"] not in PROGRAMS:
        raise bad("Invalid program_id specified.", spec["program_id"])
    timeout = spec.get("timeout_secs")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise bad("Field required: timeout_secs (an integer >= 1).", timeout or "")
    if spec.get("log_level", "warning") not in LOG_LEVELS:
        raise bad(f"log_level must be one of {', '.join(LOG_LEVELS)}.", spec["log_level"])
    storage = spec.get("storage")
    if not isinstance(storage, dict):
        raise bad("Field required: storage.")
    for part in ("input", "results", "logs"):
        option = storage.get(part)
        if option is None and part == "logs":
            continue
        if not isinstance(option, dict):
            raise bad(f"Field required: storage.{part}.")
        if option.get("type") == "ibmcloud_cos":
            raise bad(f"storage.{part}: ibmcloud_cos is for IBM internal use only; use "
                      "s3_compatible.", "ibmcloud_cos")
        if option.get("type") != "s3_compatible":
            raise bad(f"storage.{part}.type must be s3_compatible or ibmcloud_cos.",
                      option.get("type", ""))
        if not isinstance(option.get("presigned_url"), str) or \
                urlsplit(option["presigned_url"]).scheme not in ("http", "https"):
            raise bad(f"storage.{part}.presigned_url is required for s3_compatible storage.")
    return spec


def ibm_system_services(config: EmulatorConfig, issuer: TokenIssuer) -> list[Service]:
    storage = S3Service(config)
    return [QuantumSystemService(config, issuer, storage), storage]
