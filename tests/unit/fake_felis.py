"""A fake Alice & Bob Felis API (``/v1``) for httpx.MockTransport, written from the
documented API (docs/vendors/iqm-and-felis.md): targets and their health, job create /
input upload (multipart) / get / cancel (DELETE) / output, FastAPI-style ``{"detail"}``
errors, Basic auth with the API key."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
from vendor_fake import take_fault

API_KEY = base64.b64encode(b"alice:s3cret").decode()
API = "https://felis.test/"
TARGET = "EMU:1Q:LESCANNE_2020"
NAME = "ab_emu_1q_lescanne_2020"
FINAL = ("SUCCEEDED", "CANCELLED", "TIMED_OUT", "COMPILATION_FAILED", "TRANSPILATION_FAILED",
         "EXECUTION_FAILED")


def _target(name: str) -> dict[str, Any]:
    return {"name": name, "numQubits": 1, "instructions": [{"signature": "x"}],
            "inputParams": {"nbShots": {"required": True, "type": "int", "default": 1000,
                                        "constraints": [{"min": 1, "max": 10000000}]}}}


@dataclass
class FakeFelis:
    targets: dict[str, str] = field(  # target name -> health (OK, NOK, OFF)
        default_factory=lambda: {TARGET: "OK", "EMU:40Q:PHYSICAL_CATS": "OK"})
    health_route: bool = True
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # fault injection: (method, path) -> responses/exceptions served first, in order
    faults: dict[tuple[str, str], list[httpx.Response | Exception]] = field(default_factory=dict)

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
        if request.headers.get("Authorization") != f"Basic {API_KEY}":
            return detail(401, "Invalid API key")
        parts = path.removeprefix("/v1/").split("/")
        if parts[0] == "targets":
            return self._targets(parts[1:])
        if parts[0] == "jobs":
            return self._jobs(request, parts[1:])
        return detail(404, "Not Found")

    def _targets(self, rest: list[str]) -> httpx.Response:
        if rest == [""]:
            return httpx.Response(200, json=[_target(name) for name in self.targets])
        if rest[1:] == ["health"] and self.health_route:
            if rest[0] not in self.targets:
                return detail(404, f"Target {rest[0]} not found")
            return httpx.Response(200, json=self.targets[rest[0]])
        return detail(404, "Not Found")

    def _jobs(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if rest == [""] and request.method == "POST":
            return self._create(json.loads(request.content))
        job = self.jobs.get(rest[0])
        if job is None:
            return detail(404, "Job not found")
        last = job["events"][-1]["type"]
        if rest[1:] == [] and request.method == "GET":
            return httpx.Response(200, json=job)
        if rest[1:] == [] and request.method == "DELETE":
            if last in FINAL:
                return detail(409, "Job cannot be cancelled anymore")
            self.event(rest[0], "CANCELLED")
            return httpx.Response(200, json=job)
        if rest[1:] == ["input"] and request.method == "POST":
            if last != "CREATED":
                return detail(409, "Input already uploaded")
            self.inputs[rest[0]] = _multipart_field(request, "input")
            self.event(rest[0], "INPUT_READY")
            return httpx.Response(200, json=job)  # qrmi reads a JSON answer
        if rest[1:] == ["output"]:
            if last != "SUCCEEDED":
                return detail(409, "Output not available")
            return httpx.Response(200, text="0,412\n1,588\n",
                                  headers={"content-type": "text/plain"})
        return detail(404, "Not Found")

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        missing = [k for k in ("target", "inputParams") if k not in body]
        if missing:
            return httpx.Response(422, json={"detail": [
                {"loc": ["body", k], "msg": "field required", "type": "value_error.missing"}
                for k in missing]})
        if body["target"] not in self.targets:
            return detail(404, f"Target {body['target']} not found")
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {
            "id": job_id, "target": body["target"], "inputParams": body["inputParams"],
            "inputDataFormat": body.get("inputDataFormat"),
            "outputDataFormat": body.get("outputDataFormat"), "userName": "alice",
            "userId": "1", "organizationName": "lab", "errors": [],
            "events": [{"type": "CREATED", "createdAt": "2026-09-28T15:00:00Z"}]}
        return httpx.Response(201, json=self.jobs[job_id])

    def event(self, job_id: str, kind: str, error: Any = None) -> None:
        job = self.jobs[job_id]
        job["events"].append({"type": kind, "createdAt": "2026-09-28T15:01:00Z"})
        if error is not None:
            job["errors"].append({"content": error})


def _multipart_field(request: httpx.Request, name: str) -> str:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message: Message = message_from_bytes(head + request.content)
    for part in message.get_payload():
        assert isinstance(part, Message)
        if part.get_param("name", header="content-disposition") == name:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError(f"no multipart field {name!r}")


def detail(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"detail": message})


def settings(**overrides: str) -> dict[str, str]:
    env = {"QRMI_AB_FELIS_API_KEY": API_KEY, "QRMI_AB_FELIS_BASE_ENDPOINT": API}
    env.update(overrides)
    return env
