"""What a job may do on an IBM Quantum System through the broker: its backend, the jobs the
service created for it (their storage URLs re-signed for the service by the broker), and its
own objects in the site's job bucket (storage.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from slurm_qpu.vendors.common.ibm_cloud import (
    IAM_ROUTE,
    IBM_HEADERS,
    PLACEHOLDER_CRN,
    IamUpstream,
)
from slurm_qpu.vendors.common.s3 import S3Credentials
from slurm_qpu.vendors.common.view import (
    FORWARD,
    Call,
    Decision,
    JobSide,
    Refusal,
    SignedRoute,
    View,
    deny,
    json_body,
    keep_settings,
    listed,
    note_qpu_time,
)
from slurm_qpu.vendors.ibm_quantum_system import storage as s3proxy

QS = "QRMI_IBM_QS_"
_S3_KEYS = tuple(QS + k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT",
                                  "S3_BUCKET", "S3_REGION", "S3_ENDPOINT_FOR_QSAPI"))
_STORAGE_PARTS = (("input", "GET"), ("results", "PUT"), ("logs", "PUT"))


@runtime_checkable
class StorageJob(JobSide, Protocol):
    """What the IBM Quantum System view also needs to know about the job: its token (its
    S3 secret derives from it)."""

    def job_token(self) -> str: ...


def job_store(settings: Mapping[str, str]) -> s3proxy.Store | None:
    """The site's S3 store for an IBM Quantum System, or None when it has none (as qrmi:
    S3 is on only when all five settings are there)."""
    values = [settings.get(QS + k, "") for k in ("S3_ENDPOINT", "S3_BUCKET", "S3_REGION",
                                                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if not all(values):
        return None
    endpoint, bucket, region, key, secret = values
    return s3proxy.Store(endpoint, bucket, region, S3Credentials(key, secret),
                         settings.get(QS + "S3_ENDPOINT_FOR_QSAPI", ""))


class IbmQuantumSystemView(IamUpstream, View):
    """An on-premises IBM Quantum System (Direct Access API), and its job storage: S3
    through the broker's ``s3`` route with S3 credentials the lease derives
    (storage.py). The job's S3 settings name the broker: its client presigns the
    storage URLs for the broker, which puts URLs the service can reach in their place."""

    proxied = True
    prefix = QS
    forward_headers = IBM_HEADERS

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = keep_settings(settings, QS + "ENDPOINT", QS + "IAM_ENDPOINT", *_S3_KEYS)
        env.update({QS + "ENDPOINT": proxy_url, QS + "IAM_ENDPOINT": proxy_url,
                    QS + "IAM_APIKEY": job_token,
                    QS + "SERVICE_CRN": PLACEHOLDER_CRN.format(job=job_id)})
        store = job_store(settings)
        if store is not None:
            # no S3_ENDPOINT_FOR_QSAPI: the job presigns for the broker, which re-presigns
            # for the address the service reaches the store at. The trailing slash: qrmi's
            # S3 client appends the bucket to the endpoint's path as it is.
            credentials = s3proxy.job_credentials(job_token)
            env.update({QS + "S3_ENDPOINT": f"{proxy_url}/{s3proxy.ROUTE}/",
                        QS + "S3_BUCKET": store.bucket, QS + "S3_REGION": store.region,
                        QS + "AWS_ACCESS_KEY_ID": credentials.access_key_id,
                        QS + "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key})
        return env

    def wants_body(self, call: Call) -> bool:
        return call.method == "POST" and call.path.rstrip("/") == "v1/jobs"

    def authorize(self, job: JobSide, call: Call) -> Decision:
        if call.path == IAM_ROUTE and call.method == "POST":
            return self.iam_answer(job, call)
        route, method = call.path.rstrip("/"), call.method
        parts = route.split("/")
        if route in ("version", "versions") and method == "GET":
            return FORWARD
        if route == "v1/backends" and method == "GET":
            return Decision(on_response=lambda s, b: _only_qs_backend(b, job.name))
        if parts[:2] == ["v1", "backends"] and len(parts) >= 3 and method == "GET":
            if parts[2] != job.name:
                return deny(f"this job holds QPU {job.name}, not {parts[2]}")
            return FORWARD
        if route == "v1/jobs" and method == "POST":
            body = json_body(call.body)
            if not isinstance(body, dict) or body.get("backend") != job.name:
                return deny(f"this job holds QPU {job.name}, not "
                            f"{body.get('backend') if isinstance(body, dict) else '?'}")
            refusal = self._storage_urls(job, body)
            if refusal is not None:
                return refusal
            vendor_id = str(body["id"]) if body.get("id") else None

            def remember(status: int, answer: bytes) -> bytes:
                # the job's id is the client's own (the service answers 204, no body): it
                # becomes the job's only once the service has created it, so a job cannot
                # claim the id of a vendor job someone else made
                if vendor_id is not None and 200 <= status < 300:
                    job.remember(vendor_id)
                return answer

            return Decision(body=json.dumps(body).encode(), on_response=remember)
        if route == "v1/jobs" and method == "GET":  # qrmi's status() counts busy lanes
            return Decision(on_response=lambda s, b: _only_qs_jobs(b, job))
        if parts[:2] == ["v1", "jobs"] and len(parts) >= 3:
            if not job.owns(parts[2]):
                return deny(f"IBM Quantum System job {parts[2]} was not created by this "
                            "Slurm job")
            if len(parts) == 3 and method == "GET":
                return Decision(on_response=lambda s, b: _json_out(_unsigned(json_body(
                    note_qpu_time(s, b, job, parts[2], ("usage", "quantum_nanoseconds"),
                                   1e-9))), b))
            return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")

    def _storage_urls(self, job: JobSide, body: dict[str, Any]) -> Decision | None:
        """Put URLs presigned with the site's key, for the service's address, in place of
        the ones the job presigned for the broker (None: done; else the refusal)."""
        storage = body.get("storage")
        if not isinstance(storage, dict):
            return None  # the service answers what is missing
        settings = job.settings()
        store = job_store(settings) if settings is not None else None
        route = f"/p/{job.name}/{s3proxy.ROUTE}/"
        now = datetime.now(UTC)
        for part, method in _STORAGE_PARTS:
            option = storage.get(part)
            if not isinstance(option, dict) or "presigned_url" not in option:
                continue
            if store is None or not isinstance(job, StorageJob):
                return deny(f"QPU {job.name} has no job storage configured on the broker, "
                            f"so storage.{part} cannot be reached")
            try:
                option["presigned_url"] = s3proxy.replace_presigned(
                    str(option["presigned_url"]), method, route,
                    s3proxy.job_credentials(job.job_token()), store, now)
            except s3proxy.StorageRefused as exc:
                status = 401 if exc.code == "SignatureDoesNotMatch" else exc.status
                return deny(f"storage.{part}.presigned_url: {exc.message}", status)
        return None

    def signed_route(self, call: Call, raw_path: str,
                     headers: list[tuple[str, str]]) -> SignedRoute | None:
        if not s3proxy.is_storage_route(call.path):
            return None
        return JobStorage(call.method, raw_path, call.path, call.query, headers)


@dataclass
class JobStorage:
    """A job's S3 request to its job storage (a view.SignedRoute): the access key id names
    the lease, whose job token the S3 secret derives from; the request is checked and
    signed again for the site's store (storage.py). Refusals are S3 XML errors, which S3
    clients show."""

    method: str
    raw_path: str  # as sent: the canonical URI of the signature is made from it
    rest: str  # below /p/<qpu>/: s3/<bucket>/<key>
    query: str
    headers: list[tuple[str, str]]
    credential: str = "S3 access key"
    credentials = "S3 credentials"
    service = "S3 store"
    serves = "IBM Quantum System"
    _signed: s3proxy.Signed | None = None

    def _parsed(self) -> s3proxy.Signed:
        if self._signed is None:
            self._signed = s3proxy.parse(self.method, self.raw_path, self.query, self.headers)
            self.credential = f"S3 access key {self._signed.access_key_id}"
        return self._signed

    def lease(self) -> tuple[int, int] | None:
        return s3proxy.lease_of(self._parsed().access_key_id)

    def forward(self, job_token: str, settings: Mapping[str, str],
                now: datetime) -> s3proxy.Outgoing:
        store = job_store(settings)
        if store is None:
            raise s3proxy.StorageRefused(404, "NoSuchBucket", "this QPU has no job storage "
                                                              "configured on the broker")
        return s3proxy.forward(self._parsed(), self.rest, store,
                               s3proxy.job_credentials(job_token), now)

    def error(self, refusal: Refusal, with_body: bool) -> tuple[str, bytes]:
        code = s3proxy.S3_CODES.get(refusal.code, refusal.code)
        return "application/xml", s3proxy.error_xml(code, refusal.message) if with_body else b""


def _unsigned(job: Any) -> Any:
    """A job as the service shows it, minus the signatures of its storage URLs: presigned
    with the site's key, they would outlive the lease (the job reaches its objects through
    the broker)."""
    storage = job.get("storage") if isinstance(job, dict) else None
    for option in storage.values() if isinstance(storage, dict) else ():
        if isinstance(option, dict) and isinstance(option.get("presigned_url"), str):
            option["presigned_url"] = option["presigned_url"].split("?", 1)[0]
    return job


def _only_qs_jobs(body: bytes, job: JobSide) -> bytes:
    return listed(body, "jobs", lambda j: job.owns(str(j.get("id"))), _unsigned)


def _json_out(data: Any, original: bytes) -> bytes:
    return json.dumps(data).encode() if data is not None else original


def _only_qs_backend(body: bytes, name: str) -> bytes:
    return listed(body, "backends", lambda b: b.get("name") == name)
