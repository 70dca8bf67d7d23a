"""A fake IBM Cloud IAM + IBM Quantum (Qiskit Runtime) API for httpx.MockTransport,
written from the documented API (shared research notes, vendor-apis.md section 1)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs

import httpx
from vendor_fake import take_fault

API_KEY = "good-key"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/1:2::"
IAM = "https://iam.test"
API = "https://quantum.test/api/v1"


@dataclass
class FakeIbm:
    backends: dict[str, str] = field(default_factory=lambda: {"ibm_fez": "active"})
    sessions: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    jobs: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens_issued: int = 0
    expires_in: int = 3600
    valid_tokens: set[str] = field(default_factory=set)
    # fault injection: (method, path) -> list of responses served first, in order
    faults: dict[tuple[str, str], list[httpx.Response | Exception]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        fault = take_fault(self.faults, request)
        if fault is not None:
            return fault
        if request.url.host == "iam.test":
            return self._iam(request)
        if request.headers.get("Service-CRN") != CRN:
            return _error(400, "Service-CRN header missing or wrong")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return _error(401, "Invalid or expired token")
        route: Callable[[httpx.Request, list[str]], httpx.Response] | None = None
        parts = path.removeprefix("/api/v1/").split("/")
        route = {"backends": self._backends, "sessions": self._sessions,
                 "jobs": self._jobs}.get(parts[0])
        return route(request, parts[1:]) if route else _error(404, "no such route")

    def _iam(self, request: httpx.Request) -> httpx.Response:
        return iam_token(self, request)

    def _backends(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        name = rest[0]
        if name not in self.backends:
            return _error(404, f"Backend {name} not found")
        if rest[1:] == ["status"]:
            return httpx.Response(200, json={"state": True, "status": self.backends[name],
                                             "message": "", "length_queue": 3})
        if rest[1:] == ["configuration"]:
            return httpx.Response(200, json={"backend_name": name, "n_qubits": 156})
        if rest[1:] == ["properties"]:
            return httpx.Response(200, json={"backend_name": name, "qubits": []})
        return _error(404, "no such route")

    def _sessions(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if request.method == "POST" and not rest:
            body = json.loads(request.content)
            sid = f"session-{next(self._ids)}"
            self.sessions[sid] = {"id": sid, "backend_name": body["backend"], "mode": body["mode"],
                                  "max_ttl": body["max_ttl"], "active_ttl": body["max_ttl"],
                                  "accepting_jobs": True, "state": "open"}
            return httpx.Response(200, json=self.sessions[sid])
        session = self.sessions.get(rest[0])
        if session is None:
            return _error(404, f"Session {rest[0]} not found")
        if request.method == "GET":
            return httpx.Response(200, json=session)
        if request.method == "PATCH":
            session.update(json.loads(request.content))
            session["state"] = "closed"
            return httpx.Response(204)
        if request.method == "DELETE" and rest[1:] == ["close"]:
            session.update(state="closed", accepting_jobs=False, cancelled=True)
            return httpx.Response(204)
        return _error(404, "no such route")

    def _jobs(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if not rest and request.method == "GET":
            q = request.url.params
            jobs = [j for j in self.jobs.values()
                    if q.get("session_id") in (None, j.get("session_id"))
                    and (q.get("pending") != "true" or j["status"] in ("Queued", "Running"))]
            return httpx.Response(200, json={"jobs": jobs, "count": len(jobs), "offset": 0,
                                             "limit": 200})
        if not rest and request.method == "POST":
            body = json.loads(request.content)
            if body["backend"] not in self.backends:
                return _error(404, f"Backend {body['backend']} not found")
            jid = f"job-{next(self._ids)}"
            self.jobs[jid] = {"id": jid, "backend": body["backend"], "status": "Queued",
                              "state": {"status": "Queued"}, "program": {"id": body["program_id"]},
                              "session_id": body.get("session_id"), "cost": body.get("cost"),
                              "params": body["params"]}
            return httpx.Response(200, json={"id": jid, "backend": body["backend"]})
        job = self.jobs.get(rest[0])
        if job is None:
            return _error(404, f"Job {rest[0]} not found")
        if rest[1:] == [] and request.method == "GET":
            return httpx.Response(200, json=job)
        if rest[1:] == ["cancel"]:
            if job["status"] not in ("Queued", "Running"):
                return _error(409, "job already final")
            job["status"] = job["state"]["status"] = "Cancelled"
            return httpx.Response(204)
        if rest[1:] == ["results"]:
            return httpx.Response(200, text='{"__type__": "PrimitiveResult"}')
        if rest[1:] == ["logs"]:
            return httpx.Response(200, text="log line\n")
        return _error(404, "no such route")

    def finish(self, job_id: str, status: str = "Completed") -> None:
        self.jobs[job_id]["status"] = self.jobs[job_id]["state"]["status"] = status


class IamState(Protocol):
    tokens_issued: int
    valid_tokens: set[str]
    expires_in: int


def iam_token(state: IamState, request: httpx.Request) -> httpx.Response:
    """IBM Cloud IAM's API-key exchange, shared by the fakes of the IBM APIs."""
    form = parse_qs(request.content.decode())
    if form.get("grant_type") != ["urn:ibm:params:oauth:grant-type:apikey"]:
        return httpx.Response(400, json={"errorCode": "BXNIM0103E",
                                         "errorMessage": "grant_type missing"})
    if form.get("apikey") != [API_KEY]:
        return httpx.Response(400, json={
            "errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."})
    state.tokens_issued += 1
    token = f"tok{state.tokens_issued}"
    state.valid_tokens.add(token)
    return httpx.Response(200, json={"access_token": token, "token_type": "Bearer",
                                     "expires_in": state.expires_in, "expiration": 0})


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": str(status), "message": message}],
                                        "status_code": status})


def settings(**overrides: str) -> dict[str, str]:
    env = {"QRMI_IBM_QCS_ENDPOINT": API, "QRMI_IBM_QCS_IAM_ENDPOINT": IAM,
           "QRMI_IBM_QCS_IAM_APIKEY": API_KEY, "QRMI_IBM_QCS_SERVICE_CRN": CRN}
    env.update(overrides)
    return env
