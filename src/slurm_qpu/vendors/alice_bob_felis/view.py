"""What a job may do on Alice & Bob's Felis through the broker: the description and health of
its own target, jobs on that target, and the Felis jobs it created. The site's key replaces
the job's on the way.

Felis clients insist on a key in Felis's own format, base64 of ``user:password``: qrmi
refuses anything else before it sends a request, and the Qiskit provider sends the key
as ``Authorization: Basic <key>``. So the job's key is ``slurm-job-<jobid>:<job token>`` in
base64; the broker reads the job token back as the Basic credential's password.

The site's key usually serves every job of the cluster, so without these rules one job could
read or cancel another job's Felis jobs and their results.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from slurm_qpu.vendors.common.view import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    TokenSwapView,
    deny,
    json_body,
    note_qpu_time,
    remember_created,
)

ENDPOINT, KEY = "QRMI_AB_FELIS_BASE_ENDPOINT", "QRMI_AB_FELIS_API_KEY"


def job_key(job_id: int, job_token: str) -> str:
    """The job's Felis-format key: base64 of ``slurm-job-<jobid>:<job token>``."""
    return base64.b64encode(f"slurm-job-{job_id}:{job_token}".encode()).decode()


def felis_target(name: str) -> str:
    from slurm_qpu.vendors.alice_bob_felis.resource import name_to_target

    return name_to_target(name)


class FelisView(TokenSwapView):
    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = super().job_environment(settings, name=name, proxy_url=proxy_url,
                                      job_token=job_token, job_id=job_id)
        # Felis clients join their routes to the endpoint: with a path, it must end in "/"
        env.update({ENDPOINT: proxy_url.rstrip("/") + "/", KEY: job_key(job_id, job_token)})
        return env

    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and _parts(call) == ["jobs"]

    def authorize(self, job: JobSide, call: Call) -> Decision:
        if not call.path.startswith("v1/"):
            return deny(f"not a Felis API route: /{call.path}", 404)
        parts, method, target = _parts(call), call.method, felis_target(job.name)
        if parts == ["targets"] and method == "GET":
            return Decision(on_response=lambda s, b: _only_target(b, target))
        if parts[0] == "targets" and len(parts) >= 2:
            if parts[1] != target:
                return deny(f"this job holds Felis target {target}, not {parts[1]}")
            return FORWARD if method == "GET" else _not_available(call)
        if parts == ["jobs"] and method == "POST":
            body = json_body(call.body)
            named = body.get("target") if isinstance(body, dict) else None
            if named != target:
                return deny(f"this job holds Felis target {target}, not {named}")
            params = body.get("inputParams") if isinstance(body, dict) else None
            shots = params.get("nbShots") if isinstance(params, dict) else None
            return Decision(on_response=lambda s, b: remember_created(
                s, b, job, shots if isinstance(shots, int) else None))
        if parts[0] == "jobs" and len(parts) >= 2:
            if not job.owns(parts[1]):
                return deny(f"Felis job {parts[1]} was not created by this Slurm job")
            sub = parts[2] if len(parts) > 2 else None
            if method == "GET" or (method, sub) in (("DELETE", None), ("POST", "input")):
                if sub == "metrics" and method == "GET":
                    # Felis reports a finished job's QPU time in its metrics
                    return Decision(on_response=lambda s, b: note_qpu_time(
                        s, b, job, parts[1], ("qpu_duration_ns",), 1e-9))
                return FORWARD
        return _not_available(call)


def _not_available(call: Call) -> Decision:
    return deny(f"{call.method} /{call.path} is not available to jobs through the broker")


def _parts(call: Call) -> list[str]:
    return call.path.removeprefix("v1/").rstrip("/").split("/")


def _only_target(body: bytes, target: str) -> bytes:
    """The target list (a JSON list, not an object) showing only the job's target."""
    data = json_body(body)
    if not isinstance(data, list):
        return body
    return json.dumps([t for t in data if isinstance(t, dict) and t.get("name") == target]
                      ).encode()


VIEW = FelisView(ENDPOINT, KEY, "Basic")
