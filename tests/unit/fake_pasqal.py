"""A fake Pasqal Cloud (Auth0-style token endpoint + the core-fast JSend API) for
httpx.MockTransport, written from the documented API (shared research notes,
vendor-apis.md section 3)."""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from vendor_fake import take_fault

AUTH = "https://auth.test"
API = "https://pasqal.test"
PROJECT = "project-1"
USERNAME, PASSWORD = "alice@example.org", "s3cret-pw"
CLIENT_ID, CLIENT_SECRET = "svc-client", "svc-s3cret"
SDK_CLIENT_ID = "PeZvo7Atx7IVv3iel59asJSb4Ig7vuSB"
AUDIENCE = "https://apis.pasqal.cloud/account/api/v1"
PASSWORD_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
FINAL = ("DONE", "ERROR", "CANCELED", "TIMED_OUT")


def jwt(exp: float) -> str:
    """An unsigned JWT-shaped token carrying ``exp`` (clients only read its claims)."""
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'exp': int(exp), 'sub': 'alice'})}.sig"


def specs(device_type: str) -> str:
    """Stand-in for a Pulser device's abstract representation (a JSON string)."""
    return json.dumps({"name": device_type, "dimensions": 2, "max_runs": 1000})


def jsend(data: Any, code: int = 200) -> httpx.Response:
    return httpx.Response(code, json={"status": "success", "code": code, "message": "OK.",
                                      "data": data})


def fail(code: int, message: str, description: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"status": "fail", "code": code, "message": message, "data": {}}
    if description is not None:
        body["data"] = {"description": description}
    return httpx.Response(code, json=body)


@dataclass
class FakePasqal:
    devices: dict[str, str] = field(default_factory=lambda: {
        "FRESNEL": "ACTIVE", "EMU_MPS": "ACTIVE", "EMU_FREE": "ACTIVE"})
    batches: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    jobs: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    requests: list[tuple[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    bearers: list[str | None] = field(default_factory=list)  # Authorization per API request
    tokens_issued: int = 0
    lifetime: int = 86400
    send_expires_in: bool = True  # False: the client must read the JWT's exp
    valid_tokens: set[str] = field(default_factory=set)
    # fault injection: (method, path) -> responses or exceptions served first, in order
    faults: dict[tuple[str, str], list[httpx.Response | Exception]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        self.urls.append(str(request.url))
        fault = take_fault(self.faults, request)
        if fault is not None:
            return fault
        if request.url.host == "auth.test":
            return self._token(request)
        if not path.startswith("/core-fast/"):
            return fail(404, "Not Found")
        route = path.removeprefix("/core-fast")
        self.bearers.append(request.headers.get("Authorization"))
        public = route in ("/api/v1/devices", "/api/v1/devices/public-specs")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not public and token not in self.valid_tokens:
            return fail(401, "Unauthorized.", "Invalid or expired token")
        return self._route(request, route)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_forms.append(form)
        grant = form.get("grant_type")
        if form.get("audience") != AUDIENCE:
            return httpx.Response(403, json={"error": "access_denied",
                                             "error_description": "Service not found"})
        if grant == "client_credentials":
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return httpx.Response(401, json={"error": "access_denied",
                                                 "error_description": "Unauthorized"})
        elif grant == PASSWORD_GRANT:
            if form.get("realm") != "pcs-users" or not form.get("client_id"):
                return httpx.Response(400, json={"error": "invalid_request",
                                                 "error_description": "realm missing"})
            if (form.get("username"), form.get("password")) != (USERNAME, PASSWORD):
                return httpx.Response(403, json={"error": "invalid_grant",
                                                 "error_description": "Wrong email or password."})
        else:
            return httpx.Response(400, json={"error": "unsupported_grant_type",
                                             "error_description": f"grant {grant} unsupported"})
        self.tokens_issued += 1
        token = jwt(time.time() + self.lifetime) + str(self.tokens_issued)
        self.valid_tokens.add(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "scope": ""}
        if self.send_expires_in:
            body["expires_in"] = self.lifetime
        return httpx.Response(200, json=body)

    def _route(self, request: httpx.Request, route: str) -> httpx.Response:
        parts = route.removeprefix("/api/").split("/")  # ["v1", "batches", ...]
        version, kind, rest = parts[0], parts[1], parts[2:]
        if kind == "devices":
            return self._devices(request, rest)
        if kind == "batches":
            return self._batches(request, version, rest)
        if kind == "jobs" and version == "v2" and not rest:
            batch_id = request.url.params.get("batch_id")
            jobs = [j for j in self.jobs.values() if batch_id in (None, j["batch_id"])]
            return httpx.Response(200, json={"status": "success", "code": 200, "message": "OK.",
                                             "data": jobs, "pagination": {
                                                 "total": len(jobs), "offset": 0,
                                                 "end": len(jobs)}})
        return fail(404, "Not Found")

    def _devices(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if not rest:
            wanted = request.url.params.get("device_type")
            return jsend([{"device_type": t, "availability": a, "status": "UP"}
                          for t, a in self.devices.items() if wanted in (None, t)])
        if rest == ["public-specs"]:
            return jsend([{"device_type": t, "specs": specs(t)}
                          for t in self.devices if t.startswith("EMU_")])
        if rest[0] == "specs" and len(rest) == 2:
            if rest[1] not in self.devices:
                return fail(404, f"Device {rest[1]} not found")
            return jsend({"device_type": rest[1], "specs": specs(rest[1])})
        return fail(404, "Not Found")

    def _batches(self, request: httpx.Request, version: str,
                 rest: list[str]) -> httpx.Response:
        if request.method == "POST" and not rest:
            return self._create(json.loads(request.content))
        batch = self.batches.get(rest[0])
        if batch is None:
            return fail(404, f"Batch {rest[0]} not found")
        if request.method == "GET" and rest[1:] == [] and version == "v2":
            return jsend(batch)
        if request.method == "PATCH" and rest[1:] == ["cancel"]:
            if batch["status"] in FINAL:
                return fail(400, "Bad Request.", f"Batch {rest[0]} is already {batch['status']}")
            self.set_status(rest[0], "CANCELED")
            return jsend(batch)
        if request.method == "GET" and rest[1:] == ["full_results"] and version == "v1":
            return jsend({jid: {"counter": {"01": 60, "10": 40}} for jid in batch["job_ids"]
                          if self.jobs[jid]["status"] == "DONE"})
        return fail(404, "Not Found")

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("project_id") != PROJECT:
            return fail(403, f"You are not a member of project {body.get('project_id')}.")
        if body.get("device_type") not in self.devices:
            return fail(400, f"Invalid device type {body.get('device_type')}.")
        try:
            json.loads(body["sequence_builder"])
        except (KeyError, TypeError, json.JSONDecodeError):
            return fail(400, "Invalid sequence: the abstract representation is not valid JSON")
        bid = f"batch-{next(self._ids)}"
        job_ids = []
        for job in body["jobs"]:
            jid = f"job-{next(self._ids)}"
            self.jobs[jid] = {"id": jid, "batch_id": bid, "runs": job["runs"],
                              "project_id": PROJECT, "status": "PENDING", "errors": [],
                              "created_at": "2026-01-01T00:00:00Z",
                              "updated_at": "2026-01-01T00:00:00Z"}
            job_ids.append(jid)
        self.batches[bid] = {"id": bid, "open": False, "complete": True,
                             "created_at": "2026-01-01T00:00:00Z",
                             "updated_at": "2026-01-01T00:00:00Z",
                             "device_type": body["device_type"], "project_id": PROJECT,
                             "user_id": "alice", "status": "PENDING",
                             "sequence_builder": body["sequence_builder"], "job_ids": job_ids}
        return jsend(self.batches[bid])

    def set_status(self, batch_id: str, status: str, error: str | None = None) -> None:
        batch = self.batches[batch_id]
        batch["status"] = status
        for jid in batch["job_ids"]:
            self.jobs[jid]["status"] = status
            if error:
                self.jobs[jid]["errors"].append(error)


def settings(**overrides: str) -> dict[str, str]:
    env = {"QRMI_PASQAL_CLOUD_PROJECT_ID": PROJECT, "QRMI_PASQAL_CLOUD_BASE_URL": API,
           "QRMI_PASQAL_CLOUD_AUTH_ENDPOINT": AUTH + "/oauth/token",
           "QRMI_PASQAL_CLOUD_USERNAME": USERNAME, "QRMI_PASQAL_CLOUD_PASSWORD": PASSWORD}
    env.update(overrides)
    return {k: v for k, v in env.items() if v}
