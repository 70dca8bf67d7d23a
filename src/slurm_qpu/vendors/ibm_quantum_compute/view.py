"""What a job may do on IBM Quantum Platform through the broker: its backend, its own session
(opened by the prolog for the job's lifetime), the vendor jobs it created in that session,
and instance usage; listings are filtered to what is the job's."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from slurm_qpu.vendors.common.ibm_cloud import (
    IAM_ROUTE,
    IBM_HEADERS,
    PLACEHOLDER_CRN,
    IamUpstream,
)
from slurm_qpu.vendors.common.view import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    View,
    deny,
    json_body,
    keep_settings,
    listed,
    note_qpu_time,
    remember_created,
)

QCS = "QRMI_IBM_QCS_"
_QCS_API = re.compile(r"^(?:experimental/)?api/v1/(.*)$")


class IbmQuantumComputeView(IamUpstream, View):
    """IBM Quantum Platform (Qiskit Runtime REST API)."""

    proxied = True
    prefix = QCS
    forward_headers = IBM_HEADERS

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = keep_settings(settings, QCS + "ENDPOINT", QCS + "IAM_ENDPOINT")
        env.update({QCS + "ENDPOINT": proxy_url + "/api/v1", QCS + "IAM_ENDPOINT": proxy_url,
                    QCS + "IAM_APIKEY": job_token,
                    QCS + "SERVICE_CRN": PLACEHOLDER_CRN.format(job=job_id)})
        return env

    @staticmethod
    def _api_root(endpoint: str) -> str:
        # the config names the API base (…/api/v1); the proxy forwards paths from the root
        return endpoint.rstrip("/").removesuffix("/api/v1")

    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and _QCS_API.sub(r"\1", call.path) == "jobs"

    def authorize(self, job: JobSide, call: Call) -> Decision:
        if call.path == IAM_ROUTE and call.method == "POST":
            return self.iam_answer(job, call)
        m = _QCS_API.match(call.path)
        if not m:
            return deny(f"not an IBM Quantum API route: /{call.path}", 404)
        route, method = m.group(1).rstrip("/"), call.method
        parts = route.split("/")
        if route == "backends" and method == "GET":
            return Decision(on_response=lambda s, b: _only_backend(b, job.name))
        if parts[0] == "backends" and len(parts) >= 2 and method == "GET":
            if parts[1] != job.name:
                return deny(f"this job holds QPU {job.name}, not {parts[1]}")
            return FORWARD
        if route == "instances/usage" and method == "GET":
            return FORWARD
        if route == "sessions" and method == "POST":
            return deny(f"this job already has an IBM Quantum session ({job.session}), opened "
                        "by slurm-qpu for the job's lifetime; run in it (for example with "
                        "slurm_qpu.client.ibm_session(), or Session.from_id)")
        if parts[0] == "sessions" and len(parts) >= 2:
            if parts[1] != job.session:
                return deny(f"session {parts[1]} is not this job's session ({job.session})")
            return FORWARD
        if route == "jobs" and method == "POST":
            return self._create_job(job, call)
        if route == "jobs" and method == "GET":
            return Decision(on_response=lambda s, b: _only_jobs(b, job))
        if parts[0] == "jobs" and len(parts) >= 2:
            if not job.owns(parts[1]):
                return deny(f"IBM Quantum job {parts[1]} was not created by this Slurm job")
            if len(parts) == 2 and method == "GET":  # the SDK polls it; its usage: QPU time
                return Decision(on_response=lambda s, b: note_qpu_time(
                    s, b, job, parts[1], ("usage", "quantum_seconds"), 1.0))
            return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")

    def _create_job(self, job: JobSide, call: Call) -> Decision:
        body = json_body(call.body)
        if not isinstance(body, dict):
            return deny("the job request is not a JSON object", 400)
        backend = body.get("backend")
        if backend is not None and backend != job.name:
            return deny(f"this job holds QPU {job.name}, not {backend}")
        session = body.get("session_id")
        if session is not None and session != job.session:
            return deny(f"session {session} is not this job's session ({job.session})")
        body["backend"], body["session_id"] = job.name, job.session

        shots = sampler_shots(body)
        return Decision(body=json.dumps(body).encode(),
                        on_response=lambda s, b: remember_created(s, b, job, shots))


DEFAULT_SAMPLER_SHOTS = 4096  # IBM's SamplerV2 default when neither pub nor options say


def sampler_shots(body: dict[str, Any]) -> int | None:
    """The shots a SamplerV2 job asks for: each pub's own, else the job's ``shots``, else
    ``options.default_shots``, else IBM's default; times the pub's parameter sets is not
    counted (a sweep's size needs the circuit). None for other programs (an Estimator
    asks for a precision, not shots)."""
    if body.get("program_id") != "sampler":
        return None
    params = body.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("pubs"), list):
        return None
    options = params.get("options")
    if not isinstance(options, dict):
        options = {}
    default = params.get("shots") or options.get("default_shots") or DEFAULT_SAMPLER_SHOTS
    total = 0
    for pub in params["pubs"]:
        own = pub[2] if isinstance(pub, list) and len(pub) > 2 else None
        value = own if own is not None else default
        if not isinstance(value, int):
            return None
        total += value
    return total


def _only_backend(body: bytes, name: str) -> bytes:
    return listed(body, "devices", lambda d: d.get("name") == name)


def _only_jobs(body: bytes, job: JobSide) -> bytes:
    return listed(body, "jobs", lambda j: job.owns(str(j.get("id"))), count="count")
