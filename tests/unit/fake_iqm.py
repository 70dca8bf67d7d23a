"""A fake IQM Server REST API (``/api/v1``) for httpx.MockTransport, written from IQM's
documented API (docs/vendors/iqm-and-felis.md): the quantum computers and their health, job
submit/get/cancel/artifacts, calibration sets, and the error body
``{error_code, message, request_id}``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from vendor_fake import take_fault

TOKEN = "iqm-good-token"
API = "https://iqm.test"
FINAL = ("completed", "failed", "cancelled")


def _qc(healthy: bool | None = True, operational: str = "online",
        timeslot_required: bool = False) -> dict[str, Any]:
    return {"healthy": healthy, "operational": operational,
            "timeslot_required": timeslot_required}


@dataclass
class FakeIqm:
    # alias -> state; "garnet:mock" is what the resource name garnet_mock maps to
    qcs: dict[str, dict[str, Any]] = field(default_factory=lambda: {"garnet:mock": _qc()})
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    payloads: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, query
    # fault injection: (method, path) -> responses/exceptions served first, in order
    faults: dict[tuple[str, str], list[httpx.Response | Exception]] = field(default_factory=dict)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.requests if method is None or m == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path, request.url.query.decode()))
        fault = take_fault(self.faults, request)
        if fault is not None:
            return fault
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "Invalid or expired API token")
        parts = path.removeprefix("/api/v1/").split("/")
        if parts[0] == "quantum-computers":
            return self._quantum_computers(parts[1:])
        if parts[0] == "calibration-sets":
            return self._calibration_sets(parts[1:])
        if parts[0] == "jobs":
            return self._jobs(request, parts[1:])
        return error(404, "not_found", "no such route")

    def _known(self, qc: str) -> httpx.Response | None:
        if qc not in self.qcs:
            return error(404, "qc_not_found", f"Quantum computer '{qc}' not found")
        return None

    def _quantum_computers(self, rest: list[str]) -> httpx.Response:
        if not rest:
            return httpx.Response(200, json={"quantum_computers": [
                {"id": qc_id(alias), "alias": alias,
                 "display_name": alias.title()} for alias in self.qcs]})
        qc = rest[0]
        if (missing := self._known(qc)) is not None:
            return missing
        state = self.qcs[qc]
        if rest[1:] == ["health"]:
            return httpx.Response(200, json={
                "operational": state["operational"], "healthy": state["healthy"],
                "updated_at": "2026-09-28T15:16:40Z"})
        if rest[1:] == ["artifacts", "static-quantum-architectures"]:
            if state.get("no_static_architecture"):
                return error(404, "qc_artifact_not_found", "artifact not available")
            return httpx.Response(200, json=[{"qubits": ["QB1", "QB2"],
                                              "connectivity": [["QB1", "QB2"]]}])
        return error(404, "not_found", "no such route")

    def _calibration_sets(self, rest: list[str]) -> httpx.Response:
        qc, calset = rest[0], rest[1]
        if (missing := self._known(qc)) is not None:
            return missing
        if calset not in ("default", "cal-1"):
            return error(404, "calibration_set_not_found", f"Calibration set {calset} not found")
        if rest[2:] == []:
            return httpx.Response(200, json={"calibration_set_id": calset, "observations": []})
        if rest[2:] == ["dynamic-quantum-architecture"]:
            return httpx.Response(200, json={"calibration_set_id": calset,
                                             "qubits": ["QB1", "QB2"], "gates": {}})
        if rest[2:] == ["metrics"]:
            return error(404, "quality_metrics_not_found", "No quality metrics")
        return error(404, "not_found", "no such route")

    def _jobs(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if request.method == "POST" and len(rest) == 2 and rest[1] != "cancel":
            return self._submit(request, rest[0], rest[1])
        job = self.jobs.get(rest[0])
        if job is None:
            return error(404, "job_not_found", f"Job {rest[0]} not found")
        if request.method == "GET" and rest[1:] == []:
            return httpx.Response(200, json=job)
        if request.method == "POST" and rest[1:] == ["cancel"]:
            if job["status"] in FINAL:
                return error(403, "illegal_job_status",
                             f"Job in status {job['status']} cannot be cancelled")
            job["status"] = "cancelled"
            return httpx.Response(200, json=job)
        if request.method == "GET" and rest[1:2] == ["artifacts"]:
            kind = rest[2]
            if kind not in [a["type"] for a in job["artifacts"]]:
                return error(404, "job_artifact_not_found", f"Artifact {kind} not found")
            return httpx.Response(200, json=[{"c": [[0, 1], [1, 1]]}] if kind == "measurements"
                                  else [{"counts": {"00": 3, "11": 5}}])
        return error(404, "not_found", "no such route")

    def _submit(self, request: httpx.Request, qc: str, job_type: str) -> httpx.Response:
        if (missing := self._known(qc)) is not None:
            return missing
        if job_type not in ("circuit", "run", "sweep"):
            return error(400, "unsupported_job_type", f"Unsupported job type {job_type}")
        params = request.url.params
        if self.qcs[qc]["timeslot_required"] and params.get("use_timeslot") != "true":
            return error(403, "timeslot_required",
                         "This quantum computer only accepts jobs in a booked timeslot")
        job_id = str(uuid.uuid4())
        self.payloads[job_id] = json.loads(request.content)
        self.jobs[job_id] = {
            "id": job_id, "type": job_type, "status": "waiting", "qc": {"id": qc_id(qc)},
            "artifacts": [], "messages": [], "errors": [], "tag": params.get("tag"),
            "timeline": [{"source": "iqm-server", "status": "created",
                          "timestamp": "2026-09-28T15:00:00Z"}],
            "queue_position": 0}
        return httpx.Response(200, json=self.jobs[job_id])

    def finish(self, job_id: str, status: str = "completed",
               errors: list[dict[str, str]] | None = None) -> None:
        job = self.jobs[job_id]
        job["status"] = status
        job["timeline"].append({"source": "station-control", "status": f"execution_{status}",
                                "timestamp": "2026-09-28T15:01:00Z"})
        if status == "completed":
            job["artifacts"] = [{"type": "measurement_counts"}]
            job["messages"].append({"source": "compiler", "message": "2 circuits compiled"})
        job["errors"] = errors or []


def qc_id(alias: str) -> str:
    """A quantum computer's id: a UUID, as the server has it (its alias is a second name)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, alias))


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": message,
                                        "request_id": "req-1", "details": {}})


def settings(**overrides: str) -> dict[str, str]:
    env = {"QRMI_IQM_ISA_ENDPOINT": API, "QRMI_IQM_ISA_TOKEN": TOKEN}
    env.update(overrides)
    return env
