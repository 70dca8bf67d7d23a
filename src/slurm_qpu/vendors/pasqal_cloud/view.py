"""What a job may do on Pasqal Cloud through the broker: device descriptions, account reads,
batches on its own device, and the batches and jobs it created."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from slurm_qpu.vendors.common.view import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    Upstream,
    View,
    deny,
    json_body,
    keep_settings,
    listed,
    query_pairs,
)

PASQAL = "QRMI_PASQAL_CLOUD_"
_PASQAL_CREDENTIALS = tuple(PASQAL + k for k in (
    "AUTH_TOKEN", "CLIENT_ID", "CLIENT_SECRET", "USERNAME", "PASSWORD", "AUTH_ENDPOINT",
    "AUDIENCE", "BASE_URL"))
_BATCH_ID = re.compile(r"^core-fast/api/v[12]/batches/([^/]+)")
_JOB_ID = re.compile(r"^core-fast/api/v[12]/jobs/([^/]+)")


class PasqalCloudView(View):
    proxied = True

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = keep_settings(settings, *_PASQAL_CREDENTIALS)
        env.update({PASQAL + "BASE_URL": proxy_url, PASQAL + "AUTH_TOKEN": job_token})
        return env

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        from slurm_qpu.vendors.common.base import JobContext, ResourceSpec
        from slurm_qpu.vendors.common.http import RetryPolicy
        from slurm_qpu.vendors.pasqal_cloud.resource import token_source

        spec = ResourceSpec("broker", "pasqal-cloud", dict(settings), JobContext(0))
        source = token_source(spec, None, RetryPolicy())
        base = settings.get(PASQAL + "BASE_URL") or "https://apis.pasqal.cloud"
        return Upstream(base.rstrip("/"), source.headers)

    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and call.path.rstrip("/") == "core-fast/api/v1/batches"

    def authorize(self, job: JobSide, call: Call) -> Decision:
        route, method = call.path.rstrip("/"), call.method
        if route.startswith("core-fast/api/v1/devices") and method == "GET":
            return FORWARD
        if route.startswith("account/api/v1/") and method == "GET":
            return FORWARD
        if route == "core-fast/api/v1/batches" and method == "POST":
            body = json_body(call.body)
            if not isinstance(body, dict) or body.get("device_type") != job.name:
                device = body.get("device_type") if isinstance(body, dict) else "?"
                return deny(f"this job holds QPU {job.name}, not {device}")
            return _in_site_project(job, body)
        if route in ("core-fast/api/v1/batches/cancel", "core-fast/api/v2/batches/cancel"):
            return deny("cancelling batches by list is not available through the broker; "
                        "cancel each batch")
        if route in ("core-fast/api/v1/jobs", "core-fast/api/v2/jobs") and method == "GET":
            # the SDK's get_batch lists the batch's jobs: only for the job's own batches
            batches = [v for k, v in query_pairs(call.query) if k == "batch_id"]
            if not batches or not all(job.owns(b) for b in batches):
                return deny("a job may list the Pasqal jobs of its own batches only "
                            "(batch_id=...)")
            return Decision(on_response=lambda s, b: _only_own_batches(b, job))
        m = _BATCH_ID.match(route)
        if m:
            if not job.owns(m.group(1)):
                return deny(f"Pasqal batch {m.group(1)} was not created by this Slurm job")
            return Decision(on_response=lambda s, b: _remember_batch(s, b, job))
        m = _JOB_ID.match(route)
        if m:
            if not job.owns(m.group(1)):
                return deny(f"Pasqal job {m.group(1)} was not created by this Slurm job")
            return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")


def _in_site_project(job: JobSide, body: dict[str, object]) -> Decision:
    """A new batch goes to the site's Pasqal project (QRMI_PASQAL_CLOUD_PROJECT_ID), whatever
    project the job names: the broker's account may belong to several, and the site pays for
    and watches one. A batch naming no project is placed in the site's; one naming another
    project is refused."""
    project = (job.settings() or {}).get(PASQAL + "PROJECT_ID", "")
    remember = Decision(on_response=lambda s, b: _remember_batch(s, b, job))
    if not project:
        return remember  # the vendor's own default project for the account
    named = body.get("project_id")
    if named in (None, ""):
        body = {**body, "project_id": project}
        remember.body = json.dumps(body).encode()
    elif named != project:
        return deny(f"batches from this cluster go to Pasqal project {project}, not {named}")
    return remember


def _only_own_batches(body: bytes, job: JobSide) -> bytes:
    return listed(body, "data", lambda j: job.owns(str(j.get("batch_id"))))


def _remember_batch(status: int, body: bytes, job: JobSide) -> bytes:
    data = json_body(body)
    batch = data.get("data") if isinstance(data, dict) else None
    if status < 300 and isinstance(batch, dict) and batch.get("id"):
        job.remember(str(batch["id"]), counted=False)  # the batch's jobs are what runs
        for item in batch.get("jobs") or []:
            if isinstance(item, dict) and item.get("id"):
                runs = item.get("runs")
                job.remember(str(item["id"]), shots=runs if isinstance(runs, int) else None)
    return body
