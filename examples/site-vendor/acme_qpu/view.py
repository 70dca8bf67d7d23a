"""What a job may do on the Acme cloud through the slurm-qpu broker: read its own device, and
start, read and cancel its own runs. The job holds the proxy URL and its job token; the
broker sends the site's API token upstream."""

from __future__ import annotations

from slurm_qpu.vendors import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    TokenSwapView,
    deny,
    json_body,
    remember_created,
)


class AcmeView(TokenSwapView):
    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and call.path == "v1/runs"  # to check the device

    def authorize(self, job: JobSide, call: Call) -> Decision:
        parts = call.path.split("/")
        if parts[:2] == ["v1", "devices"] and call.method == "GET":
            if parts[2:] != [job.name]:
                return deny(f"this job holds Acme device {job.name}")
            return FORWARD
        if call.path == "v1/runs" and call.method == "POST":
            body = json_body(call.body)
            if not isinstance(body, dict) or body.get("device") != job.name:
                return deny(f"this job holds Acme device {job.name}")
            shots = body.get("shots") if isinstance(body.get("shots"), int) else None
            return Decision(on_response=lambda s, b: remember_created(s, b, job, shots))
        if parts[:2] == ["v1", "runs"] and len(parts) == 3 and call.method in ("GET", "DELETE"):
            if not job.owns(parts[2]):
                return deny(f"Acme run {parts[2]} was not started by this Slurm job")
            return FORWARD
        return deny(f"{call.method} /{call.path} is not available to jobs through the broker")


VIEW = AcmeView(endpoint_key="QRMI_ACME_ENDPOINT", secret_key="QRMI_ACME_TOKEN",
                scheme="Bearer")
