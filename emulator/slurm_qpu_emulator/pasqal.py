"""Pasqal Cloud as the pasqal-cloud SDK (0.24) and qrmi's ``pasqal-cloud`` type see it.

Everything is mounted under ``/pasqal`` (four services sharing one state):

- ``/pasqal/oauth/token``: the Auth0/Keycloak token endpoint. Form-encoded (JSON accepted)
  grants: Auth0 ``password-realm`` and Keycloak ``password`` (EmulatorConfig.pasqal_username /
  pasqal_password), ``client_credentials`` (pasqal_client_id / pasqal_client_secret). Answers a
  JWT with ``exp`` plus ``expires_in``; bad credentials get 403 ``{"error",
  "error_description"}`` as Auth0 does.
- ``/pasqal/account/api/v1/projects``: the project of EmulatorConfig.pasqal_project_id.
- ``/pasqal/core-fast/api/...``: batches, jobs and devices, JSend-wrapped. Bearer token
  required except on ``devices/public-specs`` and ``devices?device_type=``.
- ``/pasqal/results/{key}``: the job results, unauthenticated, standing in for the S3
  presigned URL that ``GET /api/v1/jobs/{id}/results_link`` returns.

SDK: ``Endpoints(core=<url>/pasqal/core-fast, account=<url>/pasqal/account)`` and
``TokenProviderConf(token_endpoint=<url>/pasqal/oauth/token, ...)``. qrmi:
``QRMI_PASQAL_CLOUD_BASE_URL=<url>/pasqal`` (qrmi appends ``/core-fast``), see qrmi_resources.

Devices are EmulatorConfig.pasqal_devices. Their specs are pulser's: ``AnalogDevice`` for
QPU types (FRESNEL...), ``DigitalAnalogDevice`` for EMU_* types; a batch without device_type
goes to the device whose specs name matches the sequence's device. A device under
maintenance reports ``availability: INACTIVE`` / ``status: DOWN``, refuses new batches (503)
and keeps its queued jobs PENDING until it is back.

Jobs run one at a time in a worker thread (a QPU runs one job at a time): queued then running
for half of EmulatorConfig.job_seconds each. Batch tags steer the emulator:
``emulator:seconds=N`` (each job of the batch takes N seconds, nearly all of it RUNNING),
``emulator:error`` (its jobs end in ERROR). qrmi's payload carries no tags: its jobs take
job_seconds.

Results are synthetic, not simulated: ``runs`` random bitstrings, one bit per register atom
(counted with ``pulser.Sequence.from_abstract_repr``, or from the JSON ``register``), as
``counter`` + ``raw`` plus ``"emulator": {"synthetic": true, ...}``, an extra key the SDK
passes through untouched (``full_results``, qrmi's route, carries the counter only).
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from typing import Any

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import HINT, EmulatorDependencyMissing
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import HttpError, Request, Response, Service, bearer

PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
AUDIENCE = "https://apis.pasqal.cloud/account/api/v1"
ISSUER = "slurm-qpu-emulator/pasqal"  # tells our tokens apart from the IBM IAM ones

PENDING, RUNNING, DONE, ERROR, CANCELED = "PENDING", "RUNNING", "DONE", "ERROR", "CANCELED"
FINAL = frozenset({DONE, ERROR, CANCELED})
SYNTHETIC = {"synthetic": True, "note": "slurm-qpu emulator: random bitstrings, not a simulation"}
MAX_BATCHES = 2000  # the emulator may run for days; forget the oldest finished batches
MAX_TAG_SECONDS = 86400.0

Claims = dict[str, object]
AuthedHandler = Callable[[Request, Claims], Response]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _jsend(data: Any, pagination: dict[str, int] | None = None) -> Response:
    body: dict[str, Any] = {"status": "success", "code": 200, "message": "OK.", "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return Response.json(body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def pulser_device_name(device_type: str) -> str:
    """The pulser device whose specs a device type serves (the QPU flavour for real QPUs,
    the digital-analog one for emulators)."""
    return "DigitalAnalogDevice" if device_type.startswith("EMU_") else "AnalogDevice"


@cache
def device_specs(device_name: str) -> str:
    """pulser's abstract representation of ``pulser.devices.<device_name>``."""
    try:
        import pulser.devices
    except ImportError:
        raise EmulatorDependencyMissing(f"Pasqal device specs need pulser-core; {HINT}") from None
    return str(getattr(pulser.devices, device_name).to_abstract_repr())


def count_atoms(sequence: str, variables: dict[str, Any] | None) -> int:
    """Bits per sample: the job's ``qubits`` (mappable registers), else the register size
    (pulser when it parses the sequence, the JSON ``register`` list otherwise)."""
    qubits = (variables or {}).get("qubits")
    if isinstance(qubits, list | dict) and qubits:
        return len(qubits)
    try:
        from pulser import Sequence

        seq = Sequence.from_abstract_repr(sequence)
        return len(seq.get_register(include_mappable=True).qubit_ids)
    except Exception:  # no pulser, or a sequence pulser rejects: try the JSON register
        pass
    try:
        register = json.loads(sequence).get("register")
    except (ValueError, AttributeError):
        register = None
    if isinstance(register, list) and register:
        return len(register)
    raise HttpError(422, "sequence is not a pulser abstract representation with a register")


def _atoms_of(spec: dict[str, Any], batch_sequence: str | None) -> int:
    return count_atoms(spec.get("sequence") or batch_sequence or "", spec.get("variables"))


def _sample(job_id: str, atoms: int, runs: int) -> dict[str, Any]:
    rng = random.Random(job_id)  # the same job always gives the same bitstrings
    raw = ["".join("1" if rng.random() < 0.3 else "0" for _ in range(atoms))
           for _ in range(runs)]
    return {"counter": dict(Counter(raw)), "raw": raw, "emulator": dict(SYNTHETIC)}


@dataclass
class Job:
    id: str
    batch_id: str
    project_id: str
    runs: int
    atoms: int
    queued_seconds: float
    running_seconds: float
    fail: bool
    variables: dict[str, Any] | None = None
    sequence: str | None = None
    status: str = PENDING
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    start_timestamp: str | None = None
    end_timestamp: str | None = None
    errors: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    results_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def set_status(self, status: str) -> None:
        self.status, self.updated_at = status, _now()
        if status == RUNNING:
            self.start_timestamp = self.updated_at
        elif status in FINAL:
            self.end_timestamp = self.updated_at

    def to_json(self, with_sequence: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "batch_id": self.batch_id, "project_id": self.project_id,
            "runs": self.runs, "status": self.status, "created_at": self.created_at,
            "updated_at": self.updated_at, "start_timestamp": self.start_timestamp,
            "end_timestamp": self.end_timestamp, "errors": list(self.errors),
            "variables": self.variables, "parent_id": None}
        if with_sequence:
            out["sequence"] = self.sequence  # the job's own sequence; None if it uses the batch's
        return out


@dataclass
class Batch:
    id: str
    project_id: str
    user_id: str
    device_type: str
    sequence_builder: str | None
    open: bool
    webhook: str | None = None
    tags: list[str] = field(default_factory=list)
    configuration: Any = None
    backend_configuration: str | None = None
    job_ids: list[str] = field(default_factory=list)
    canceled: bool = False
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


def batch_status(batch: Batch, jobs: list[Job]) -> str:
    """A batch's status follows its jobs; an open batch is never finished."""
    statuses = {job.status for job in jobs}
    if batch.canceled:
        return CANCELED
    if RUNNING in statuses or (PENDING in statuses and statuses & FINAL):
        return RUNNING
    if PENDING in statuses:
        return PENDING
    if batch.open:
        return RUNNING if jobs else PENDING
    if statuses == {CANCELED}:
        return CANCELED
    return ERROR if ERROR in statuses else DONE


def _tag_settings(tags: list[str], default_seconds: float) -> tuple[float, bool]:
    seconds, fail = default_seconds, False
    for tag in tags:
        if tag.startswith("emulator:seconds="):
            try:
                seconds = float(tag.split("=", 1)[1])
            except ValueError:
                raise HttpError(422, f"tag {tag!r}: emulator:seconds= needs a number") from None
            if not 0 <= seconds <= MAX_TAG_SECONDS:
                raise HttpError(422, f"tag {tag!r}: seconds must be within 0..{MAX_TAG_SECONDS:g}")
        elif tag == "emulator:error":
            fail = True
    return seconds, fail


class PasqalState:
    """Batches and jobs of all Pasqal services, and the worker that runs the jobs."""

    def __init__(self, config: EmulatorConfig, issuer: TokenIssuer) -> None:
        self.config = config
        self.issuer = issuer
        self.lock = threading.Condition()
        self.batches: dict[str, Batch] = {}
        self.jobs: dict[str, Job] = {}
        self.by_results_key: dict[str, str] = {}
        self.maintenance: set[str] = set()  # the core service's set (Server toggles it)
        self._worker: threading.Thread | None = None

    # -- authentication --------------------------------------------------------------------
    def authenticate(self, request: Request) -> Claims:
        claims = self.issuer.claims(bearer(request))
        if claims is None or claims.get("iss") != ISSUER:
            raise HttpError(401, "Missing, invalid or expired bearer token.")
        return claims

    # -- batches and jobs (callers hold the lock) -------------------------------------------
    def new_job(self, batch: Batch, spec: dict[str, Any], atoms: int) -> Job:
        seconds, fail = _tag_settings(batch.tags, self.config.job_seconds)
        queued = self.config.job_seconds / 2  # a longer job (tag) runs longer, queues alike
        job = Job(str(uuid.uuid4()), batch.id, batch.project_id, spec["runs"], atoms,
                  queued, max(seconds - queued, 0.0), fail, spec.get("variables"),
                  spec.get("sequence"))
        self.jobs[job.id] = job
        self.by_results_key[job.results_key] = job.id
        batch.job_ids.append(job.id)
        batch.updated_at = _now()
        self._kick()
        return job

    def batch_jobs(self, batch: Batch) -> list[Job]:
        return [self.jobs[j] for j in batch.job_ids]

    def batch_json(self, batch: Batch, with_jobs: bool = False) -> dict[str, Any]:
        jobs = self.batch_jobs(batch)
        counts = Counter(job.status for job in jobs)
        status = batch_status(batch, jobs)
        starts = [j.start_timestamp for j in jobs if j.start_timestamp]
        ends = [j.end_timestamp for j in jobs if j.end_timestamp]
        out: dict[str, Any] = {
            "id": batch.id, "open": batch.open, "complete": not batch.open,
            "created_at": batch.created_at, "updated_at": batch.updated_at,
            "device_type": batch.device_type, "project_id": batch.project_id,
            "user_id": batch.user_id, "status": status, "priority": 10,
            "webhook": batch.webhook, "tags": list(batch.tags),
            "configuration": batch.configuration,
            "backend_configuration": batch.backend_configuration,
            "sequence_builder": batch.sequence_builder, "job_ids": list(batch.job_ids),
            "jobs_count": len(jobs), "jobs_count_per_status": dict(counts),
            "start_datetime": min(starts) if starts else None,
            "end_datetime": max(ends) if status in FINAL and ends else None,
            "device_status": self.device_status(batch.device_type), "parent_id": None}
        if with_jobs:
            out["jobs"] = [job.to_json() for job in jobs]
        return out

    def cancel_job(self, job: Job) -> bool:
        if job.status in FINAL:
            return False
        job.set_status(CANCELED)
        self.lock.notify_all()  # the worker may be waiting on this job
        return True

    def prune(self) -> None:
        if len(self.batches) <= MAX_BATCHES:
            return
        for batch in list(self.batches.values())[: len(self.batches) - MAX_BATCHES]:
            if batch_status(batch, self.batch_jobs(batch)) in FINAL:
                for job in self.batch_jobs(batch):
                    self.by_results_key.pop(job.results_key, None)
                    del self.jobs[job.id]
                del self.batches[batch.id]

    # -- devices ---------------------------------------------------------------------------
    def device_status(self, device_type: str) -> str:
        return "DOWN" if device_type in self.maintenance else "UP"

    def device_json(self, device_type: str) -> dict[str, Any]:
        down = device_type in self.maintenance
        return {"device_type": device_type, "status": self.device_status(device_type),
                "availability": "INACTIVE" if down else "ACTIVE",
                "maintenance": down}

    # -- the worker --------------------------------------------------------------------------
    def _kick(self) -> None:
        """Start the worker if it is not running (it stops when there is nothing to do, so
        idle emulators in a test run hold no threads)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, daemon=True,
                                            name="slurm-qpu-emulator-pasqal")
            self._worker.start()
        self.lock.notify_all()

    def _next_job(self) -> Job | None:
        for job in self.jobs.values():
            if job.status == PENDING and \
                    self.batches[job.batch_id].device_type not in self.maintenance:
                return job
        return None

    def _hold(self, job: Job, status: str, seconds: float) -> bool:
        """Wait ``seconds`` (the lock released meanwhile) while ``job`` keeps ``status``;
        False as soon as it changes (cancelled)."""
        end = time.monotonic() + seconds
        while job.status == status:
            left = end - time.monotonic()
            if left <= 0:
                return True
            self.lock.wait(left)
        return False

    def _work(self) -> None:
        with self.lock:
            while True:
                job = self._next_job()
                if job is None:
                    if any(j.status == PENDING for j in self.jobs.values()):
                        self.lock.wait(0.05)  # blocked by maintenance: look again soon
                        continue
                    self._worker = None
                    return
                if not self._hold(job, PENDING, job.queued_seconds) or \
                        self.batches[job.batch_id].device_type in self.maintenance:
                    continue
                job.set_status(RUNNING)
                if not self._hold(job, RUNNING, job.running_seconds):
                    continue
                if job.fail:
                    job.errors.append("emulated failure requested by the tag emulator:error")
                    job.set_status(ERROR)
                else:
                    job.result = _sample(job.id, job.atoms, job.runs)
                    job.set_status(DONE)


# -- services ---------------------------------------------------------------------------------

class _JSendService(Service):
    def __init__(self, prefix: str, state: PasqalState) -> None:
        super().__init__(prefix)
        self.state = state

    def error(self, status: int, message: str) -> Response:
        return Response.json({"status": "fail" if status < 500 else "error", "code": status,
                              "message": _phrase(status), "data": {"description": message}},
                             status)

    def authed(self, handler: AuthedHandler) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            return handler(request, self.state.authenticate(request))
        return wrapped


class PasqalAuthService(Service):
    """``POST /oauth/token`` in Auth0's (and Keycloak's) shapes."""

    name = "pasqal-auth"

    def __init__(self, prefix: str, state: PasqalState) -> None:
        super().__init__(prefix)
        self.state = state
        self.route("POST", "/token", self.token)

    def error(self, status: int, message: str) -> Response:
        code = {400: "invalid_request", 401: "access_denied", 403: "access_denied"}
        return Response.json({"error": code.get(status, "server_error"),
                              "error_description": message}, status)

    def _oauth_error(self, status: int, error: str, description: str) -> Response:
        return Response.json({"error": error, "error_description": description}, status)

    def token(self, request: Request) -> Response:
        if request.header("Content-Type").startswith("application/json"):
            body = request.json()
            form = {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        else:
            form = request.form()
        config, grant = self.state.config, form.get("grant_type", "")
        if grant in (PASSWORD_REALM, "password"):
            for key in ("username", "password"):
                if not form.get(key):
                    return self._oauth_error(400, "invalid_request",
                                             f"Missing required parameter: {key}")
            if (form["username"], form["password"]) != (config.pasqal_username,
                                                        config.pasqal_password):
                return self._oauth_error(403, "invalid_grant", "Wrong email or password.")
            subject = form["username"]
        elif grant == "client_credentials":
            if (form.get("client_id"), form.get("client_secret")) != (
                    config.pasqal_client_id, config.pasqal_client_secret):
                return self._oauth_error(403, "access_denied", "Unauthorized")
            subject = f"{config.pasqal_client_id}@clients"
        else:
            return self._oauth_error(403, "unauthorized_client",
                                     f"Grant type '{grant}' not allowed for the client.")
        lifetime = self.state.issuer.lifetime
        token = self.state.issuer.issue(subject, lifetime, iss=ISSUER,
                                        aud=form.get("audience") or AUDIENCE,
                                        azp=form.get("client_id", ""))
        return Response.json({"access_token": token, "expires_in": lifetime,
                              "token_type": "Bearer", "scope": "openid profile email"})


class PasqalAccountService(_JSendService):
    """The account API: only the project list the SDK's ``get_all_projects`` reads."""

    name = "pasqal-account"

    def __init__(self, prefix: str, state: PasqalState) -> None:
        super().__init__(prefix, state)
        self.route("GET", "/api/v1/projects", self.authed(self.projects))

    def projects(self, request: Request, claims: Claims) -> Response:
        config = self.state.config
        wanted = request.arg("project_status")
        project = {"id": config.pasqal_project_id, "project_id": config.pasqal_project_id,
                   "name": "slurm-qpu emulator project", "project_status": "ACTIVE",
                   "allowed_device_types": list(config.pasqal_devices),
                   "queue_priority": "LOW"}
        return _jsend([project] if wanted in (None, "ACTIVE") else [])


class PasqalResultsService(Service):
    """The results download, unauthenticated like an S3 presigned URL."""

    name = "pasqal-results"

    def __init__(self, prefix: str, state: PasqalState) -> None:
        super().__init__(prefix)
        self.state = state
        self.route("GET", "/{key}", self.download)

    def error(self, status: int, message: str) -> Response:
        code = "NoSuchKey" if status == 404 else "InternalError"
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        return Response(status, body.encode(), "application/xml")

    def download(self, request: Request) -> Response:
        with self.state.lock:
            job_id = self.state.by_results_key.get(request.params["key"])
            job = self.state.jobs.get(job_id) if job_id else None
            if job is None or job.result is None:
                raise HttpError(404, "The specified key does not exist.")
            return Response.json(job.result)


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.arg(name)
    try:
        return default if value is None else max(0, int(value))
    except ValueError:
        raise HttpError(422, f"query parameter {name} must be an integer") from None


class PasqalCoreService(_JSendService):
    """The core API (``/core-fast``): batches, jobs and devices."""

    name = "pasqal-cloud"

    def __init__(self, prefix: str, state: PasqalState, results_prefix: str) -> None:
        super().__init__(prefix, state)
        self.results_prefix = results_prefix
        state.maintenance = self.maintenance
        a = self.authed
        for method, path, handler in [
            ("POST", "/api/v1/batches", a(self.create_batch)),
            ("GET", "/api/v1/batches", a(self.list_batches)),
            ("PATCH", "/api/v1/batches/cancel", a(self.cancel_batches)),
            ("PATCH", "/api/v2/batches/cancel", a(self.cancel_batches)),
            ("GET", "/api/v2/batches/{id}", a(self.get_batch)),
            ("GET", "/api/v1/batches/{id}/status", a(self.get_batch_status)),
            ("GET", "/api/v1/batches/{id}/full_results", a(self.full_results)),
            ("PATCH", "/api/v2/batches/{id}/complete", a(self.complete_batch)),
            ("PATCH", "/api/v2/batches/{id}/cancel", a(self.cancel_batch)),
            ("PATCH", "/api/v2/batches/{id}/cancel/jobs", a(self.cancel_batch_jobs)),
            ("POST", "/api/v2/batches/{id}/jobs", a(self.add_jobs)),
            ("PATCH", "/api/v1/batches/{id}/tags", a(self.set_tags)),
            ("GET", "/api/v2/jobs", a(self.list_jobs)),
            ("GET", "/api/v2/jobs/{id}", a(self.get_job)),
            ("GET", "/api/v1/jobs/{id}/status", a(self.get_job_status)),
            ("PATCH", "/api/v2/jobs/{id}/cancel", a(self.cancel_job)),
            ("GET", "/api/v1/jobs/{id}/results_link", a(self.results_link)),
            ("GET", "/api/v1/devices", self.devices),  # auth checked inside
            ("GET", "/api/v1/devices/public-specs", self.public_specs),
            ("GET", "/api/v1/devices/specs", a(self.specs)),
            ("GET", "/api/v1/devices/specs/{device_type}", a(self.specs_of)),
        ]:
            self.route(method, path, handler)

    def qpu_names(self) -> list[str]:
        return list(self.state.config.pasqal_devices)

    def qrmi_resources(self, base_url: str) -> list[dict[str, Any]]:
        root = base_url.rstrip("/") + self.prefix.removesuffix("/core-fast")
        config = self.state.config
        env = {"QRMI_PASQAL_CLOUD_BASE_URL": root,
               "QRMI_PASQAL_CLOUD_AUTH_ENDPOINT": f"{root}/oauth/token",
               "QRMI_PASQAL_CLOUD_PROJECT_ID": config.pasqal_project_id,
               "QRMI_PASQAL_CLOUD_CLIENT_ID": config.pasqal_client_id,
               "QRMI_PASQAL_CLOUD_CLIENT_SECRET": config.pasqal_client_secret}
        return [{"name": device, "type": "pasqal-cloud", "environment": dict(env)}
                for device in config.pasqal_devices]

    # -- helpers (callers hold the lock) ----------------------------------------------------
    def _batch(self, request: Request) -> Batch:
        batch = self.state.batches.get(request.params["id"])
        if batch is None:
            raise HttpError(404, f"Batch {request.params['id']} not found.")
        return batch

    def _job(self, request: Request) -> Job:
        job = self.state.jobs.get(request.params["id"])
        if job is None:
            raise HttpError(404, f"Job {request.params['id']} not found.")
        return job

    def _check_device(self, device_type: str) -> None:
        if device_type not in self.state.config.pasqal_devices:
            raise HttpError(400, f"Device type {device_type} is not available; available: "
                                 f"{', '.join(self.state.config.pasqal_devices)}.")
        if device_type in self.maintenance:
            raise HttpError(503, f"Device {device_type} is under maintenance and does not "
                                 f"accept new batches.")

    def _infer_device(self, sequence: str | None) -> str:
        """The device type whose specs carry the sequence's device name (the SDK sends no
        device_type when pulser's QPUBackend submits)."""
        try:
            name = json.loads(sequence or "").get("device", {}).get("name")
        except (ValueError, AttributeError):
            name = None
        for device_type in self.state.config.pasqal_devices:
            if pulser_device_name(device_type) == name:
                return device_type
        raise HttpError(422, f"device_type is required: the sequence's device {name!r} is "
                             f"none of {', '.join(self.state.config.pasqal_devices)}.")

    @staticmethod
    def _job_specs(value: Any, sequence: str | None) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise HttpError(422, "jobs must be a list")
        for spec in value:
            if not isinstance(spec, dict):
                raise HttpError(422, "each job must be an object")
            runs = spec.get("runs")
            if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
                raise HttpError(422, f"job runs must be a positive integer, got {runs!r}")
            if not isinstance(spec.get("variables") or {}, dict):
                raise HttpError(422, "job variables must be an object")
            if spec.get("sequence") is None and sequence is None:
                raise HttpError(422, "a job without its own sequence needs the batch's "
                                     "sequence_builder")
        return value

    # -- batches ---------------------------------------------------------------------------
    def create_batch(self, request: Request, claims: Claims) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(422, "the request body must be a JSON object")
        config = self.state.config
        if body.get("project_id") != config.pasqal_project_id:
            raise HttpError(403, f"You are not a member of project {body.get('project_id')}.")
        sequence = body.get("sequence_builder")
        if sequence is not None and not isinstance(sequence, str):
            raise HttpError(422, "sequence_builder must be a string")
        specs = self._job_specs(body.get("jobs") or [], sequence)
        is_open = bool(body.get("open", False))
        if not specs and not is_open:
            raise HttpError(422, "a closed batch needs at least one job")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(422, "tags must be a list of strings")
        _tag_settings(tags, config.job_seconds)  # reject bad emulator tags before anything
        device_type = body.get("device_type") or self._infer_device(sequence)
        # outside the lock: pulser's first import takes a second or so
        atoms = [_atoms_of(spec, sequence) for spec in specs]
        with self.state.lock:
            self._check_device(device_type)
            batch = Batch(str(uuid.uuid4()), config.pasqal_project_id, str(claims.get("sub")),
                          device_type, sequence, is_open, body.get("webhook"), tags,
                          body.get("configuration"), body.get("backend_configuration"))
            self.state.batches[batch.id] = batch
            for spec, n in zip(specs, atoms, strict=True):
                self.state.new_job(batch, spec, n)
            self.state.prune()
            return _jsend(self.state.batch_json(batch, with_jobs=True))

    def list_batches(self, request: Request, claims: Claims) -> Response:
        offset, limit = _int_arg(request, "offset", 0), _int_arg(request, "limit", 100)
        ids, statuses = request.query.get("id"), request.query.get("status")
        devices = request.query.get("device_type")
        with self.state.lock:
            rows = [self.state.batch_json(b) for b in reversed(self.state.batches.values())]
        rows = [r for r in rows if (not ids or r["id"] in ids)
                and (not statuses or r["status"] in statuses)
                and (not devices or r["device_type"] in devices)]
        page = rows[offset:offset + limit]
        return _jsend(page, {"total": len(rows), "offset": offset, "end": offset + len(page)})

    def get_batch(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            return _jsend(self.state.batch_json(self._batch(request)))

    def get_batch_status(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            full = self.state.batch_json(self._batch(request))
        return _jsend({k: full[k] for k in ("id", "status", "jobs_count_per_status")})

    def full_results(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            jobs = self.state.batch_jobs(self._batch(request))
            return _jsend({job.id: {"counter": job.result["counter"]}
                           for job in jobs if job.result is not None})

    def complete_batch(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            batch = self._batch(request)
            if batch.open and not batch.job_ids:
                raise HttpError(400, f"Batch {batch.id} has no jobs and cannot be closed.")
            batch.open, batch.updated_at = False, _now()
            return _jsend(self.state.batch_json(batch))

    def _cancel_batch(self, batch: Batch) -> str | None:
        """Cancel ``batch``; why it cannot be, or None."""
        status = batch_status(batch, self.state.batch_jobs(batch))
        if status in FINAL:
            return f"Batch {batch.id} is already {status} and cannot be cancelled."
        for job in self.state.batch_jobs(batch):
            self.state.cancel_job(job)
        batch.canceled, batch.open, batch.updated_at = True, False, _now()
        return None

    def cancel_batch(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            batch = self._batch(request)
            problem = self._cancel_batch(batch)
            if problem:
                raise HttpError(400, problem)
            return _jsend(self.state.batch_json(batch))

    def cancel_batches(self, request: Request, claims: Claims) -> Response:
        body = request.json()
        ids = body.get("batch_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise HttpError(422, "batch_ids must be a list of batch ids")
        done, errors = [], {}
        with self.state.lock:
            for batch_id in map(str, ids):
                batch = self.state.batches.get(batch_id)
                problem = self._cancel_batch(batch) if batch else f"Batch {batch_id} not found."
                if batch is None or problem:
                    errors[batch_id] = problem or ""
                else:
                    done.append(self.state.batch_json(batch))
        return _jsend({"batches": done, "errors": errors})

    def cancel_batch_jobs(self, request: Request, claims: Claims) -> Response:
        ids = request.query.get("id")
        low, high = _int_arg(request, "min_runs", 0), _int_arg(request, "max_runs", 2**62)
        cancelled, errors = [], {}
        with self.state.lock:
            for job in self.state.batch_jobs(self._batch(request)):
                if (ids and job.id not in ids) or not low <= job.runs <= high:
                    continue
                if self.state.cancel_job(job):
                    cancelled.append(job.to_json())
                else:
                    errors[job.id] = f"Job is already {job.status} and cannot be cancelled."
        return _jsend({"jobs": cancelled, "errors": errors})

    def add_jobs(self, request: Request, claims: Claims) -> Response:
        body = request.json()
        with self.state.lock:
            sequence = self._batch(request).sequence_builder
        specs = self._job_specs(body, sequence)
        atoms = [_atoms_of(spec, sequence) for spec in specs]
        with self.state.lock:
            batch = self._batch(request)
            if not batch.open:
                raise HttpError(400, f"Batch {batch.id} is closed: it accepts no more jobs.")
            self._check_device(batch.device_type)
            for spec, n in zip(specs, atoms, strict=True):
                self.state.new_job(batch, spec, n)
            return _jsend(self.state.batch_json(batch, with_jobs=True))

    def set_tags(self, request: Request, claims: Claims) -> Response:
        tags = request.json()
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(422, "tags must be a list of strings")
        _tag_settings(tags, self.state.config.job_seconds)
        with self.state.lock:
            batch = self._batch(request)
            batch.tags, batch.updated_at = tags, _now()
            return _jsend(self.state.batch_json(batch))

    # -- jobs ------------------------------------------------------------------------------
    def list_jobs(self, request: Request, claims: Claims) -> Response:
        offset, limit = _int_arg(request, "offset", 0), _int_arg(request, "limit", 100)
        q = request.query
        with self.state.lock:
            jobs = [j.to_json() for j in self.state.jobs.values()
                    if (not q.get("batch_id") or j.batch_id in q["batch_id"])
                    and (not q.get("id") or j.id in q["id"])
                    and (not q.get("status") or j.status in q["status"])]
        if request.arg("order_by_direction", "DESC") != "ASC":
            jobs.reverse()  # the API lists newest first unless asked otherwise
        page = jobs[offset:offset + limit]
        return _jsend(page, {"total": len(jobs), "offset": offset, "end": offset + len(page)})

    def get_job(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            return _jsend(self._job(request).to_json(with_sequence=True))

    def get_job_status(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            job = self._job(request)
            return _jsend({"id": job.id, "status": job.status})

    def cancel_job(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            job = self._job(request)
            if not self.state.cancel_job(job):
                raise HttpError(400, f"Job {job.id} is already {job.status} and cannot be "
                                     f"cancelled.")
            return _jsend(job.to_json())

    def results_link(self, request: Request, claims: Claims) -> Response:
        with self.state.lock:
            job = self._job(request)
            link = None
            if job.result is not None:
                link = f"{request.base_url}{self.results_prefix}/{job.results_key}"
            return _jsend({"results_link": link})

    # -- devices ---------------------------------------------------------------------------
    def devices(self, request: Request) -> Response:
        wanted = request.query.get("device_type")
        if not wanted:
            self.state.authenticate(request)  # only the per-type lookup is public
        types = [d for d in self.state.config.pasqal_devices if not wanted or d in wanted]
        return _jsend([self.state.device_json(d) for d in types])

    def public_specs(self, request: Request) -> Response:
        return _jsend([{"device_type": d, "specs": device_specs(pulser_device_name(d))}
                       for d in self.state.config.pasqal_devices])

    def specs(self, request: Request, claims: Claims) -> Response:
        return _jsend({d: device_specs(pulser_device_name(d))
                       for d in self.state.config.pasqal_devices})

    def specs_of(self, request: Request, claims: Claims) -> Response:
        device_type = request.params["device_type"]
        if device_type not in self.state.config.pasqal_devices:
            raise HttpError(404, f"Device {device_type} not found.")
        return _jsend({"device_type": device_type,
                       "specs": device_specs(pulser_device_name(device_type))})


def pasqal_services(config: EmulatorConfig, issuer: TokenIssuer | None = None,
                    prefix: str = "/pasqal") -> list[Service]:
    """Pasqal Cloud's token endpoint, account API, core API and results download, mounted
    under ``prefix``. Pass the emulator's issuer so expire_tokens() reaches Pasqal too."""
    state = PasqalState(config, issuer or TokenIssuer(lifetime=config.token_lifetime))
    return [PasqalAuthService(f"{prefix}/oauth", state),
            PasqalAccountService(f"{prefix}/account", state),
            PasqalCoreService(f"{prefix}/core-fast", state, f"{prefix}/results"),
            PasqalResultsService(f"{prefix}/results", state)]
