"""A fake Pasqal Warden (the on-premises QPU middleware) for httpx.MockTransport, written
from Warden's documented routes (pasqal-io/warden: warden/api/routes/{sessions,jobs,
accessible,qpu}.py and routes/dependencies/auth.py), and a fake MUNGE credential source.

Two API generations exist: ``v0.1`` (session body ``slurm_job_id``, ``DELETE /sessions/{id}``,
what qrmi 0.26 speaks) and ``current`` (``scheduler_job_id``, ``DELETE /sessions`` with the
session in ``X-Warden-Session``)."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from vendor_fake import take_fault

from slurm_qpu.munge import MungeError

URL = "http://warden.test:8006"
FINAL = ("DONE", "ERROR", "CANCELED")
SPECS = json.dumps({"name": "FRESNEL_CAN1", "dimensions": 2, "max_runs": 1000})


@dataclass
class FakeMunge:
    """Credentials ``MUNGE:uid=<uid>:<random>:``; ``uid`` can change between calls (root in the
    prolog, the user in the job) and ``error`` makes the next calls fail as munge would."""

    uid: int = 0
    error: str | None = None
    issued: int = 0

    def __call__(self) -> str:
        if self.error:
            raise MungeError(self.error)
        self.issued += 1
        return f"MUNGE:uid={self.uid}:{uuid.uuid4().hex}:"  # unique, as real ones are


def detail(status: int, text: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": text})


@dataclass
class FakeWarden:
    api: str = "current"  # or "v0.1"
    accessible: bool = True
    message: str = "QPU available"
    admin_uids: set[str] = field(default_factory=lambda: {"0"})
    authorized_users: set[str] = field(default_factory=set)  # empty: everyone
    sessions: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    jobs: dict[int, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    requests: list[tuple[str, str]] = field(default_factory=list)
    credentials: list[str | None] = field(default_factory=list)  # X-Munge-Cred per request
    session_headers: list[str | None] = field(default_factory=list)
    faults: dict[tuple[str, str], list[httpx.Response | Exception]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    _seen: set[str] = field(default_factory=set)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        self.credentials.append(request.headers.get("X-Munge-Cred"))
        self.session_headers.append(request.headers.get("X-Warden-Session"))
        fault = take_fault(self.faults, request)
        if fault is not None:
            return fault
        if path == "/accessible" and request.method == "GET":  # open to all in Warden
            return httpx.Response(200, json={"is_accessible": self.accessible,
                                             "message": self.message})
        uid = self._identify(request)
        if isinstance(uid, httpx.Response):
            return uid
        parts = path.strip("/").split("/")
        if parts[0] == "sessions":
            return self._sessions(request, uid, parts[1:])
        if parts[0] == "jobs":
            return self._jobs(request, uid, parts[1:])
        if parts == ["qpu", "specs"]:
            return httpx.Response(200, json={"specs": SPECS})
        return detail(404, "Not Found")

    def _identify(self, request: httpx.Request) -> str | httpx.Response:
        cred = request.headers.get("X-Munge-Cred")
        if not cred:
            return detail(401, "Missing MUNGE credential")
        if cred in self._seen:
            return detail(401, "MUNGE credential replayed")
        self._seen.add(cred)
        return str(cred.split(":")[1].removeprefix("uid="))

    def _sessions(self, request: httpx.Request, uid: str, rest: list[str]) -> httpx.Response:
        if uid not in self.admin_uids:
            return detail(403, "Endpoint restricted to admin user.")
        if request.method == "POST" and not rest:
            body = json.loads(request.content)
            job_key = "slurm_job_id" if self.api == "v0.1" else "scheduler_job_id"
            if "user_id" not in body or job_key not in body:
                return detail(422, [{"type": "missing", "loc": ["body", job_key],
                                     "msg": "Field required"}])
            if self.authorized_users and body["user_id"] not in self.authorized_users:
                return detail(403, "User ID not authorized.")
            sid = str(uuid.uuid4())
            self.sessions[sid] = {"id": sid, "user_id": body["user_id"], "job": body[job_key],
                                  "created_at": "2026-01-01T00:00:00Z", "revoked_at": None,
                                  "qpu_slots": 1}
            return httpx.Response(200, json=self.sessions[sid])
        if request.method == "DELETE":
            if self.api == "v0.1":
                if not rest:
                    return detail(405, "Method Not Allowed")
                sid = rest[0]
            else:
                if rest:
                    return detail(404, "Not Found")
                sid = request.headers.get("X-Warden-Session") or ""
            return self._revoke(sid)
        return detail(405, "Method Not Allowed")

    def _revoke(self, sid: str) -> httpx.Response:
        session = self.sessions.get(sid)
        if session is None:
            return detail(404, "Session not found.")
        session["revoked_at"] = "2026-01-01T01:00:00Z"
        for job in self.jobs.values():
            if job["session_id"] == sid and job["status"] == "PENDING":
                job["status"] = "CANCELED"
        return httpx.Response(200, json=session)

    def _jobs(self, request: httpx.Request, uid: str, rest: list[str]) -> httpx.Response:
        if request.method == "POST" and not rest:
            return self._create_job(request, uid)
        job = self.jobs.get(int(rest[0])) if rest and rest[0].isdigit() else None
        if job is None or job["user_id"] != uid:
            return detail(404, "Job not found")
        if request.method == "GET" and rest[1:] == []:
            return httpx.Response(200, json=_public(job))
        if request.method == "POST" and rest[1:] == ["cancel"]:
            if job["status"] in FINAL:
                return detail(409, f"Job with status '{job['status']}' can't be canceled")
            job["status"] = "CANCELED"
            return httpx.Response(200, json=_public(job))
        if request.method == "GET" and rest[1:] == ["logs"]:
            return httpx.Response(200, json={"logs": job["logs"] or
                                             "There are no logs for this job"})
        return detail(404, "Not Found")

    def _create_job(self, request: httpx.Request, uid: str) -> httpx.Response:
        sid = request.headers.get("X-Warden-Session")
        if sid is None:
            return detail(403, "Missing 'X-Warden-Session' header.")
        session = self.sessions.get(sid)
        if session is None:
            return detail(403, "Invalid session.")
        if session["revoked_at"] is not None:
            return detail(403, "Session has been revoked.")
        if session["user_id"] != uid:
            return detail(403, "Session belongs to another user.")
        body = json.loads(request.content)
        jid = next(self._ids)
        self.jobs[jid] = {"id": jid, "user_id": uid, "created_at": "2026-01-01T00:00:00Z",
                          "status": "PENDING", "results": None, "logs": "",
                          "sequence": body["sequence"], "shots": body["shots"],
                          "session_id": sid}
        return httpx.Response(200, json=_public(self.jobs[jid]))

    def finish(self, job_id: int, status: str = "DONE", logs: str = "") -> None:
        job = self.jobs[job_id]
        job["status"], job["logs"] = status, logs
        if status == "DONE":
            job["results"] = json.dumps({"counter": {"00": job["shots"]}})


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job[k] for k in ("id", "user_id", "created_at", "status", "results")}
