"""What a job may do on an IQM Server through the broker: the server's description, its own
quantum computer (details, health, artifacts, calibration sets), jobs on that computer, and
the IQM jobs it created. The site's token replaces the job token on the way.

The site's token often serves every job of the cluster, so without these rules one job could
read, cancel or delete another job's IQM jobs, or book a timeslot with the site's money. What
IQM's API does not let the broker see: how many of the account's queued-job slots
(``max_queued_jobs_per_user``) other jobs hold.
"""

from __future__ import annotations

from urllib.parse import unquote

from slurm_qpu.vendors.common.view import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    TokenSwapView,
    deny,
    json_body,
    listed,
    remember_created,
)
from slurm_qpu.vendors.iqm_server import JOB_TYPES

ENDPOINT, TOKEN = "QRMI_IQM_ISA_ENDPOINT", "QRMI_IQM_ISA_TOKEN"
_API = "api/v1/"


def quantum_computer(name: str) -> str:
    """The IQM alias a QPU name stands for (the last ``_`` becomes ``:``, as qrmi maps it)."""
    from slurm_qpu.vendors.iqm_server.resource import split_name

    return split_name(name)[0]


class IqmServerView(TokenSwapView):
    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and _is_submit(_parts(call))

    def authorize(self, job: JobSide, call: Call) -> Decision:
        if not call.path.startswith(_API):
            return deny(f"not an IQM Server API route: /{call.path}", 404)
        parts, method, qc = _parts(call), call.method, quantum_computer(job.name)
        if parts == ["about"] and method == "GET":
            return FORWARD
        if parts == ["quantum-computers"] and method == "GET":
            return Decision(on_response=lambda s, b: listed(
                b, "quantum_computers", lambda c: c.get("alias") == qc))
        if parts[0] in ("quantum-computers", "calibration-sets") and len(parts) >= 2:
            if unquote(parts[1]) != qc:
                return deny(f"this job holds IQM quantum computer {qc}, not "
                            f"{unquote(parts[1])}")
            if method != "GET" or "timeslots" in parts:
                return deny("a job may read its quantum computer's details, not book "
                            "timeslots or change anything through the broker")
            return FORWARD
        if _is_submit(parts) and method == "POST":
            if unquote(parts[1]) != qc:
                return deny(f"this job holds IQM quantum computer {qc}, not "
                            f"{unquote(parts[1])}")
            shots = circuit_shots(json_body(call.body))
            return Decision(on_response=lambda s, b: remember_created(s, b, job, shots))
        if parts[0] == "jobs" and len(parts) >= 2:
            if not job.owns(parts[1]):
                return deny(f"IQM job {parts[1]} was not created by this Slurm job")
            sub = parts[2] if len(parts) > 2 else None
            if method == "GET" or (method, sub) in (("DELETE", None), ("POST", "cancel")):
                return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")


def _parts(call: Call) -> list[str]:
    return call.path.removeprefix(_API).rstrip("/").split("/")


def _is_submit(parts: list[str]) -> bool:
    """``jobs/{qc}/{kind}``: a new job (``jobs/{id}/cancel`` is not one)."""
    return len(parts) == 3 and parts[0] == "jobs" and parts[2] in JOB_TYPES


def circuit_shots(body: object) -> int | None:
    """The shots a circuit job asks for: ``shots`` for each of its circuits. None for what
    the broker cannot read (a pulse-level job's protobuf body)."""
    if not isinstance(body, dict):
        return None
    shots, circuits = body.get("shots"), body.get("circuits")
    if not isinstance(shots, int) or isinstance(shots, bool) or not isinstance(circuits, list):
        return None
    return shots * len(circuits)


VIEW = IqmServerView(ENDPOINT, TOKEN, "Bearer")
