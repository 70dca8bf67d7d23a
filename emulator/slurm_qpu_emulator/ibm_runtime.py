"""IBM Quantum Compute (Qiskit Runtime) REST API, served at ``/api/v1`` and at
``/experimental/api/v1`` (the SDK uses a URL containing "experimental" verbatim, so
``QISKIT_IBM_URL=<emulator>/experimental/api/v1`` needs no ``url_resolver``). Both mounts
share one state: a job created through one is visible through the other.

What is emulated (shapes from the verified notes, vendor-apis.md 1.1-1.6, 6.1, 6.4):
- auth: ``Authorization: Bearer <IAM token of this emulator>`` and ``Service-CRN`` equal to
  the configured CRN, else 401 with the IBM Cloud ``errors`` body (also for ``apikey ...``);
- backends (list, status, configuration, properties) from the SDK's fake-provider snapshots;
  ``/instances/usage``; sessions (dedicated/batch, max_ttl, open -> active -> inactive ->
  closed; PATCH accepting_jobs=false closes once the session's jobs are done; DELETE
  ``/close`` cancels its queued jobs); jobs (create, get, list with filters, results and logs
  as text/plain, metrics, cancel (409 once final), tags, delete).
- maintenance: the backend reports ``state: false, status: "maintenance"``, is listed as
  ``paused``, and new jobs for it are refused (400).
- time: a job is Queued for half of ``config.job_seconds`` and Running for the other half
  (at least as long as its simulation takes), in a worker thread per backend, one job at a
  time. The tag ``emulator:seconds=N`` makes a job take N seconds instead; a job that runs
  longer than its ``cost`` (max_execution_time) ends "Cancelled - Ran too long" (code 1305).
- programs: ``sampler`` and ``estimator`` run (see primitives.py); other real program ids
  are refused with 400, unknown ones with 404.
- memory: at most MAX_JOBS jobs are kept; the oldest finished ones are forgotten first.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import Backend, load_backend
from slurm_qpu_emulator.primitives import PrimitiveError, run_primitive
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import HttpError, Request, Response, Service, bearer

MORE_INFO = "https://cloud.ibm.com/apidocs/quantum-computing#error-handling"
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 429: "too_many_requests",
         500: "internal_error", 502: "bad_gateway", 503: "service_unavailable",
         504: "gateway_timeout"}
RUNNABLE = ("sampler", "estimator")
KNOWN_PROGRAMS = (*RUNNABLE, "noise-learner", "executor", "circuit-runner", "qasm3-runner")
FINAL = ("Completed", "Failed", "Cancelled", "Cancelled - Ran too long")
PENDING = ("Queued", "Running")
MAX_TTL = 28800  # the service's limit and default for max_ttl (8 h)
INTERACTIVE_TTL = 60
MAX_JOBS = 5000  # finished jobs beyond this many are forgotten, oldest first
SECONDS_TAG = re.compile(r"^emulator:seconds=(\d+(?:\.\d+)?)$")


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    # the service's ids: 20 lower-case letters and digits
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(20))


@dataclass
class Job:
    id: str
    program_id: str
    backend: str
    params: Any
    created: float
    seconds: float  # queued + running, as configured or asked for by tag
    cost: int
    session_id: str | None = None
    tags: list[str] = field(default_factory=list)
    private: bool = False
    user_id: str = ""
    status: str = "Queued"
    reason: str | None = None
    reason_code: int | None = None
    running: float | None = None
    finished: float | None = None
    result: str | None = None
    logs: list[str] = field(default_factory=list)
    quantum_seconds: float = 0.0

    def log(self, line: str) -> None:
        self.logs.append(f"{_iso(time.time())} {line.rstrip()}\n")


@dataclass
class Session:
    id: str
    backend: str
    mode: str
    max_ttl: int
    created: float
    user_id: str
    accepting_jobs: bool = True
    state: str = "open"
    activated: float | None = None
    closed: float | None = None
    last_job_started: float | None = None
    last_job_completed: float | None = None
    timestamps: list[dict[str, str | None]] = field(default_factory=list)


class RuntimeState:
    """Jobs and sessions of one emulated IBM Quantum Compute instance. ``lock`` guards all
    of it; the per-backend workers wait on it for their next deadline."""

    def __init__(self, config: EmulatorConfig, issuer: TokenIssuer) -> None:
        self.config = config
        self.issuer = issuer
        self.backends: dict[str, Backend] = {name: load_backend(name, snapshot)
                                             for name, snapshot in config.ibm_backends}
        self.maintenance: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Condition()
        self._workers: dict[str, threading.Thread] = {}

    # -- sessions ------------------------------------------------------------------------
    def pending(self, session_id: str) -> list[Job]:
        return [j for j in self.jobs.values()
                if j.session_id == session_id and j.status in PENDING]

    def settle(self, s: Session, now: float) -> None:
        """Bring a session's state up to date (call with the lock held)."""
        if s.closed is None:
            if now >= s.created + s.max_ttl:
                self.close(s, s.created + s.max_ttl, expired=True)
            elif not s.accepting_jobs and not self.pending(s.id):
                self.close(s, max(now if s.last_job_completed is None else
                                  s.last_job_completed, s.created))
        if s.closed is not None:
            state = "closed"
        elif s.activated is None:
            state = "open"
        elif self.pending(s.id):
            state = "active"
        elif s.last_job_completed and now - s.last_job_completed > INTERACTIVE_TTL:
            state = "inactive"
        else:
            state = "active"
        if state != s.state or not s.timestamps:
            s.state = state
            s.timestamps.append({"status": state, "timestamp": _iso(now)})

    def close(self, s: Session, when: float, expired: bool = False,
              cancel_queued: bool = False) -> None:
        s.accepting_jobs = False
        s.closed = when
        for job in self.pending(s.id):
            if job.status == "Queued" and (expired or cancel_queued):
                job.status = "Cancelled" if cancel_queued else "Failed"
                if expired:
                    job.reason, job.reason_code = ("Job is part of a session that's been "
                                                   "closed", 4001)
                job.finished = when
                job.log(f"job {job.status.lower()}: session {s.id} closed")
        self.lock.notify_all()

    def session_view(self, s: Session) -> dict[str, Any]:
        now = time.time()
        self.settle(s, now)
        end = s.closed if s.closed is not None else now
        return {
            "id": s.id, "backend_name": s.backend, "mode": s.mode, "state": s.state,
            "accepting_jobs": s.accepting_jobs, "max_ttl": s.max_ttl,
            "active_ttl": max(int(s.created + s.max_ttl - end), 0),
            "interactive_ttl": INTERACTIVE_TTL, "started_at": _iso(s.created),
            "activated_at": _iso(s.activated), "closed_at": _iso(s.closed),
            "last_job_started": _iso(s.last_job_started),
            "last_job_completed": _iso(s.last_job_completed),
            "elapsed_time": round(end - s.activated, 3) if s.activated else 0,
            "timestamps": list(s.timestamps), "user_id": s.user_id}

    # -- jobs ----------------------------------------------------------------------------
    def job_view(self, job: Job, params: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"status": job.status}
        if job.reason:
            state["reason"] = job.reason
        if job.reason_code:
            state["reason_code"] = job.reason_code
        view = {"id": job.id, "backend": job.backend, "status": job.status, "state": state,
                "program": {"id": job.program_id}, "created": _iso(job.created),
                "cost": job.cost, "session_id": job.session_id, "tags": list(job.tags),
                "private": job.private, "user_id": job.user_id, "runtime": "",
                "usage": {"quantum_seconds": job.quantum_seconds,
                          "seconds": job.quantum_seconds},
                "estimated_running_time_seconds": job.seconds / 2}
        if params:
            view["params"] = job.params
        return view

    def submit(self, job: Job) -> None:
        """Queue ``job`` on its backend's worker (call with the lock held)."""
        self.jobs[job.id] = job
        if len(self.jobs) > MAX_JOBS:  # a lab emulator runs for days: forget the oldest
            final = sorted((j for j in self.jobs.values() if j.status in FINAL),
                           key=lambda j: j.created)
            for old in final[:len(self.jobs) - MAX_JOBS]:
                del self.jobs[old.id]
        job.log(f"job {job.id} queued on {job.backend} ({job.program_id})")
        self.lock.notify_all()  # a waiting worker re-chooses its next job
        worker = self._workers.get(job.backend)
        if worker is None or not worker.is_alive():
            # a worker lives while its backend has work: no idle threads per emulator
            worker = threading.Thread(target=self._work, args=(job.backend,), daemon=True,
                                      name=f"emulator-ibm-{job.backend}")
            self._workers[job.backend] = worker
            worker.start()

    def _next(self, backend_name: str) -> Job | None:
        """Wait (lock held) for the queued job of this backend whose queue time ends first;
        None when none is left. A job asking for a long queue time does not hold up the
        others, but the backend runs one job at a time."""
        while True:
            queued = [j for j in self.jobs.values()
                      if j.backend == backend_name and j.status == "Queued"]
            if not queued:
                return None
            job = min(queued, key=lambda j: j.created + j.seconds / 2)
            left = job.created + job.seconds / 2 - time.time()
            if left <= 0:
                return job
            self.lock.wait(left)  # new jobs and cancellations wake us to choose again

    def _work(self, backend_name: str) -> None:
        while True:
            with self.lock:
                job = self._next(backend_name)
                if job is None:
                    self._workers.pop(backend_name, None)
                    return
                job.status, job.running = "Running", time.time()
                job.log("job running")
                session = self.sessions.get(job.session_id or "")
                if session is not None:
                    session.activated = session.activated or job.running
                    session.last_job_started = job.running
                    self.settle(session, job.running)
                backend = self.backends[backend_name]
            self._execute(job, backend)

    def _execute(self, job: Job, backend: Backend) -> None:
        outcome, error = None, None
        try:
            outcome = run_primitive(job.program_id, job.params, backend, self.config)
        except PrimitiveError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must fail the job, not kill the worker
            error = f"Traceback (most recent call last):\n  emulator\n{type(exc).__name__}: {exc}"
        with self.lock:
            assert job.running is not None
            while job.status == "Running" and time.time() < job.running + job.seconds / 2:
                self.lock.wait(job.running + job.seconds / 2 - time.time())
            if job.status != "Running":
                return  # cancelled (or deleted) while running
            now = time.time()
            if outcome is not None:
                job.quantum_seconds = outcome.quantum_seconds
                for line in outcome.logs.splitlines():
                    job.log(line)
            if now - job.running > job.cost:
                job.status, job.reason_code = "Cancelled - Ran too long", 1305
                job.reason = f"Job was cancelled because it exceeded {job.cost} seconds"
            elif error is not None:
                job.status, job.reason, job.reason_code = "Failed", error, 1002
            else:
                assert outcome is not None
                job.status, job.result = "Completed", outcome.result
            job.finished = now
            job.log(f"job {job.status.lower()}" + (f": {job.reason}" if job.reason else ""))
            session = self.sessions.get(job.session_id or "")
            if session is not None:
                session.last_job_completed = now
                self.settle(session, now)
            self.lock.notify_all()

    def cancel(self, job: Job) -> None:
        job.status, job.finished = "Cancelled", time.time()
        job.log("job cancelled")
        self.lock.notify_all()


class IbmRuntimeService(Service):
    def __init__(self, state: RuntimeState, prefix: str, qrmi: bool) -> None:
        super().__init__(prefix)
        self.name = "ibm-quantum-compute" + ("" if qrmi else "-experimental")
        self.state = state
        self.maintenance = state.maintenance  # one set for both mounts
        self.advertise = qrmi
        for method, path, handler in (
                ("GET", "/backends", self.backends),
                ("GET", "/backends/{name}/status", self.backend_status),
                ("GET", "/backends/{name}/configuration", self.configuration),
                ("GET", "/backends/{name}/properties", self.properties),
                ("GET", "/instances/usage", self.usage),
                ("POST", "/sessions", self.create_session),
                ("GET", "/sessions/{id}", self.get_session),
                ("PATCH", "/sessions/{id}", self.patch_session),
                ("DELETE", "/sessions/{id}/close", self.close_session),
                ("POST", "/jobs", self.create_job),
                ("GET", "/jobs", self.list_jobs),
                ("GET", "/jobs/{id}", self.get_job),
                ("DELETE", "/jobs/{id}", self.delete_job),
                ("GET", "/jobs/{id}/results", self.results),
                ("GET", "/jobs/{id}/logs", self.logs),
                ("GET", "/jobs/{id}/metrics", self.metrics),
                ("POST", "/jobs/{id}/cancel", self.cancel_job),
                ("PUT", "/jobs/{id}/tags", self.put_tags)):
            self.route(method, path, handler)

    # -- framework -------------------------------------------------------------------------
    def qpu_names(self) -> list[str]:
        return list(self.state.backends)

    def qrmi_resources(self, base_url: str) -> list[dict[str, Any]]:
        if not self.advertise:
            return []
        config = self.state.config
        base = base_url.rstrip("/")
        return [{"name": name, "type": "ibm-quantum-compute-service", "environment": {
            "QRMI_IBM_QCS_ENDPOINT": f"{base}{self.prefix}",
            "QRMI_IBM_QCS_IAM_ENDPOINT": base,
            "QRMI_IBM_QCS_IAM_APIKEY": config.api_key,
            "QRMI_IBM_QCS_SERVICE_CRN": config.service_crn,
            "QRMI_IBM_QCS_SESSION_MODE": "dedicated"}} for name in self.state.backends]

    def error(self, status: int, message: str) -> Response:
        return Response.json({"errors": [{"code": CODES.get(status, str(status)),
                                          "message": message, "more_info": MORE_INFO}],
                              "trace": secrets.token_hex(10), "status_code": status}, status)

    def dispatch(self, request: Request) -> Response:
        # the API gateway authenticates before routing: unknown paths also answer 401
        claims = self.state.issuer.claims(bearer(request))
        if claims is None:
            return self.error(401, "Unauthorized: the bearer token is missing, invalid or "
                                   "expired; obtain a new one from IBM Cloud IAM")
        if request.header("Service-CRN") != self.state.config.service_crn:
            return self.error(401, "Unauthorized: the Service-CRN header does not name an "
                                   "instance these credentials can use")
        return super().dispatch(request)

    # -- helpers ---------------------------------------------------------------------------
    def _user(self, request: Request) -> str:
        claims = self.state.issuer.claims(bearer(request)) or {}
        return str(claims.get("sub", ""))

    def _backend(self, name: str) -> Backend:
        backend = self.state.backends.get(name)
        if backend is None:
            raise HttpError(404, f"Backend {name} not found.")
        return backend

    def _job(self, job_id: str) -> Job:
        job = self.state.jobs.get(job_id)
        if job is None:
            raise HttpError(404, f"Job {job_id} not found.")
        return job

    def _session(self, session_id: str) -> Session:
        session = self.state.sessions.get(session_id)
        if session is None:
            raise HttpError(404, "unknown session")
        return session

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        return body

    def _queue_length(self, name: str) -> int:
        return sum(1 for j in self.state.jobs.values()
                   if j.backend == name and j.status in PENDING)

    # -- backends --------------------------------------------------------------------------
    def backends(self, request: Request) -> Response:
        with self.state.lock:
            devices = []
            for name, b in self.state.backends.items():
                paused = name in self.maintenance
                status = {"name": "paused", "reason": "maintenance"} if paused else \
                    {"name": "online"}
                devices.append({"name": name, "status": status, "is_simulator": False,
                                "qubits": b.num_qubits,
                                # the list gives revisions as strings (qrmi insists)
                                "processor_type": {k: str(v) for k, v in
                                                   b.processor_type.items()},
                                "clops": {"type": "hardware", "value": 5000},
                                "queue_length": self._queue_length(name)})
        return Response.json({"devices": devices})

    def backend_status(self, request: Request) -> Response:
        name = request.params["name"]
        backend = self._backend(name)
        paused = name in self.maintenance
        with self.state.lock:
            queue = self._queue_length(name)
        return Response.json({
            "state": not paused, "status": "maintenance" if paused else "active",
            "message": "The backend is paused for maintenance." if paused else "",
            "length_queue": queue,
            "backend_version": str(backend.configuration.get("backend_version", "1.0.0"))})

    def configuration(self, request: Request) -> Response:
        return Response.json(self._backend(request.params["name"]).configuration)

    def properties(self, request: Request) -> Response:
        return Response.json(self._backend(request.params["name"]).properties)

    def usage(self, request: Request) -> Response:
        with self.state.lock:
            used = sum(j.quantum_seconds for j in self.state.jobs.values())
        return Response.json({"instance_id": self.state.config.service_crn,
                              "plan_id": "emulator", "usage_consumed_seconds": round(used, 3),
                              "usage_limit_reached": False, "usage_limit_seconds": None})

    # -- sessions --------------------------------------------------------------------------
    def create_session(self, request: Request) -> Response:
        body = self._body(request)
        mode = body.get("mode", "dedicated")
        if mode not in ("dedicated", "batch"):
            raise HttpError(400, f"Invalid session mode {mode!r}: expected dedicated or batch.")
        name = body.get("backend") or body.get("backend_name")
        if not isinstance(name, str):
            raise HttpError(400, "A backend is required to create a session.")
        self._backend(name)
        max_ttl = body.get("max_ttl", MAX_TTL)
        if not isinstance(max_ttl, int) or isinstance(max_ttl, bool) or \
                not 1 <= max_ttl <= MAX_TTL:
            raise HttpError(400, f"max_ttl must be an integer from 1 to {MAX_TTL} seconds.")
        session = Session(_new_id(), name, mode, max_ttl, time.time(),
                          self._user(request))
        with self.state.lock:
            self.state.sessions[session.id] = session
            return Response.json(self.state.session_view(session))

    def get_session(self, request: Request) -> Response:
        with self.state.lock:
            return Response.json(self.state.session_view(self._session(request.params["id"])))

    def patch_session(self, request: Request) -> Response:
        body = self._body(request)
        if not isinstance(body.get("accepting_jobs"), bool):
            raise HttpError(400, "accepting_jobs (true or false) is required.")
        with self.state.lock:
            session = self._session(request.params["id"])
            if session.closed is None:
                session.accepting_jobs = body["accepting_jobs"]
                self.state.settle(session, time.time())
        return Response.empty()

    def close_session(self, request: Request) -> Response:
        with self.state.lock:
            session = self._session(request.params["id"])
            if session.closed is None:
                self.state.close(session, time.time(), cancel_queued=True)
                self.state.settle(session, time.time())
        return Response.empty()

    # -- jobs ------------------------------------------------------------------------------
    def create_job(self, request: Request) -> Response:
        body = self._body(request)
        program = body.get("program_id")
        if not isinstance(program, str) or not program:
            raise HttpError(400, "program_id is required.")
        if program not in KNOWN_PROGRAMS:
            raise HttpError(404, f"Program not found: {program}")
        if program not in RUNNABLE:
            raise HttpError(400, f"Program {program} is not available on the slurm-qpu "
                                 f"emulator (it runs {', '.join(RUNNABLE)}).")
        name = body.get("backend")
        if not isinstance(name, str) or not name:
            raise HttpError(400, "backend is required.")
        self._backend(name)
        if name in self.maintenance:
            raise HttpError(400, f"The Backend is not available: {name} is paused for "
                                 "maintenance.")
        if not isinstance(body.get("params"), dict):
            raise HttpError(400, "params must be a JSON object.")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(400, "tags must be a list of strings.")
        cost = body.get("cost", MAX_TTL)
        if not isinstance(cost, int) or isinstance(cost, bool) or cost <= 0:
            raise HttpError(400, "cost (max_execution_time) must be a positive integer.")
        seconds = self.state.config.job_seconds
        for tag in tags:
            match = SECONDS_TAG.match(tag)
            if match:
                seconds = float(match.group(1))
        with self.state.lock:
            session_id = body.get("session_id")
            if session_id is not None:
                session = self._session(str(session_id))
                self.state.settle(session, time.time())
                if session.closed is not None or not session.accepting_jobs:
                    raise HttpError(400, f"Session {session.id} is closed and no longer "
                                         "accepts jobs.")
                if session.backend != name:
                    raise HttpError(400, f"Session {session.id} runs on {session.backend}, "
                                         f"not on {name}.")
            job = Job(_new_id(), program, name, body["params"], time.time(), seconds, cost,
                      session_id, list(tags), bool(body.get("private", False)),
                      self._user(request))
            self.state.submit(job)
        return Response.json({"id": job.id, "backend": name, "session_id": session_id,
                              "private": job.private})

    def list_jobs(self, request: Request) -> Response:
        q = request.arg
        try:
            limit = min(int(q("limit", "10") or 10), 200)
            offset = int(q("offset", "0") or 0)
        except ValueError:
            raise HttpError(400, "limit and offset must be integers.") from None
        if limit < 0 or offset < 0:
            raise HttpError(400, "limit and offset must not be negative.")
        pending, tags = q("pending"), request.query.get("tags", [])
        with self.state.lock:
            jobs = [j for j in self.state.jobs.values()
                    if (pending is None or (j.status in PENDING) == (pending == "true"))
                    and q("backend") in (None, j.backend)
                    and q("program") in (None, j.program_id)
                    and q("session_id") in (None, j.session_id)
                    and all(t in j.tags for t in tags)]
            jobs.sort(key=lambda j: j.created, reverse=q("sort") != "ASC")
            params = q("exclude_params") != "true"
            page = [self.state.job_view(j, params) for j in jobs[offset:offset + limit]]
        return Response.json({"jobs": page, "count": len(jobs), "offset": offset,
                              "limit": limit})

    def get_job(self, request: Request) -> Response:
        with self.state.lock:
            job = self._job(request.params["id"])
            return Response.json(self.state.job_view(job, request.arg("exclude_params")
                                                     != "true"))

    def delete_job(self, request: Request) -> Response:
        with self.state.lock:
            job = self._job(request.params["id"])
            if job.status in PENDING:
                self.state.cancel(job)
            del self.state.jobs[job.id]
        return Response.empty()

    def results(self, request: Request) -> Response:
        with self.state.lock:
            job = self._job(request.params["id"])
            if job.status == "Completed" and job.result is not None:
                return Response.text(job.result)
            if job.status in ("Failed", "Cancelled - Ran too long"):
                return Response.text(job.reason or job.status)
        raise HttpError(404, f"Job {job.id} has no results: it is {job.status}.")

    def logs(self, request: Request) -> Response:
        with self.state.lock:
            return Response.text("".join(self._job(request.params["id"]).logs))

    def metrics(self, request: Request) -> Response:
        with self.state.lock:
            job = self._job(request.params["id"])
            final = job.status in FINAL
            return Response.json({
                "timestamps": {"created": _iso(job.created), "running": _iso(job.running),
                               "finished": _iso(job.finished)},
                "bss": {"seconds": job.quantum_seconds},
                "usage": {"quantum_seconds": job.quantum_seconds,
                          "seconds": job.quantum_seconds,
                          "qpu_charge_time_seconds": job.quantum_seconds,
                          "status": "completed" if final else "pending"},
                "executions": 1, "num_circuits": len(job.params.get("pubs") or []),
                "qiskit_version": "", "caller": "slurm-qpu-emulator"})

    def cancel_job(self, request: Request) -> Response:
        with self.state.lock:
            job = self._job(request.params["id"])
            if job.status in FINAL:
                raise HttpError(409, f"Job {job.id} cannot be cancelled: it is already "
                                     f"{job.status}.")
            self.state.cancel(job)
        return Response.empty()

    def put_tags(self, request: Request) -> Response:
        tags = self._body(request).get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(400, "tags must be a list of strings.")
        with self.state.lock:
            self._job(request.params["id"]).tags = list(tags)
        return Response.empty()


def ibm_runtime_services(config: EmulatorConfig, issuer: TokenIssuer) -> list[Service]:
    """The API at ``/api/v1`` (advertised to qrmi) and ``/experimental/api/v1``."""
    state = RuntimeState(config, issuer)
    return [IbmRuntimeService(state, "/api/v1", qrmi=True),
            IbmRuntimeService(state, "/experimental/api/v1", qrmi=False)]
