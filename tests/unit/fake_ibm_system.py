"""A fake IBM Cloud IAM + IBM Quantum System REST API + S3-compatible store for
httpx.MockTransport, written from the documented API (shared research notes, vendor-apis.md
section 2). The service's executor is a step the test drives: ``run_pending()``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from fake_ibm import API_KEY, iam_token
from vendor_fake import take_fault

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/1:2::"
IAM = "https://iam.test"
API = "http://qs.test:8290"
S3 = "http://s3.test:9000"
S3_FOR_QSAPI = "http://s3.internal.test:9000"  # the store as the service reaches it
BUCKET = "jobs"
REGION = "us-east"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "s3-secret"
RESULTS = '{"__type__": "PrimitiveResult", "__value__": {}}'
LOGS = "executor log line\n"

Fault = httpx.Response | Exception


def _s3_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, text=(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>4442587FB7D0A2F9</RequestId></Error>"),
        headers={"Content-Type": "application/xml"})


@dataclass
class FakeS3:
    """Path-style S3 over a dict. It cannot verify SigV4 signatures (that needs the secret
    and our own signer), but checks they are present, well formed and hash the body."""

    hosts: tuple[str, ...] = ("s3.test", "s3.internal.test")
    buckets: set[str] = field(default_factory=lambda: {BUCKET})
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        query = request.url.params
        if "X-Amz-Signature" in query:
            problem = self._presigned_problem(query)
        else:
            problem = self._header_problem(request)
        if problem:
            return _s3_error(403, "AccessDenied", problem)
        bucket, _, key = request.url.path.lstrip("/").partition("/")
        if bucket not in self.buckets:
            return _s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
        if request.method == "PUT":
            self.objects[(bucket, key)] = request.content
            return httpx.Response(200, headers={"ETag": '"1"'})
        if request.method == "GET":
            if (bucket, key) not in self.objects:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return httpx.Response(200, content=self.objects[(bucket, key)])
        if request.method == "DELETE":
            self.objects.pop((bucket, key), None)
            return httpx.Response(204)
        return _s3_error(405, "MethodNotAllowed", "not supported by the fake")

    def _header_problem(self, request: httpx.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"):
            return f"no SigV4 Authorization for {ACCESS_KEY}"
        signed = auth.partition("SignedHeaders=")[2].partition(",")[0].split(";")
        if not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed):
            return f"host and x-amz-* headers must be signed: {signed}"
        if request.headers.get("x-amz-content-sha256") != hashlib.sha256(
                request.content).hexdigest():
            return "x-amz-content-sha256 does not match the body"
        return None

    @staticmethod
    def _presigned_problem(query: httpx.QueryParams) -> str | None:
        if not query.get("X-Amz-Credential", "").startswith(f"{ACCESS_KEY}/"):
            return "presigned for an unknown access key"
        for name in ("X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"):
            if not query.get(name):
                return f"presigned URL without {name}"
        return None

    def put(self, key: str, body: bytes) -> None:
        self.objects[(BUCKET, key)] = body

    def get(self, key: str) -> bytes | None:
        return self.objects.get((BUCKET, key))


@dataclass
class FakeIbmSystem:
    backends: dict[str, str] = field(default_factory=lambda: {"test_eagle": "online"})
    jobs: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]
    s3: FakeS3 = field(default_factory=FakeS3)
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens_issued: int = 0
    expires_in: int = 3600
    valid_tokens: set[str] = field(default_factory=set)
    lanes: tuple[int, int] = (2, 1)
    # fault injection: (method, path) -> responses served first, in order
    faults: dict[tuple[str, str], list[Fault]] = field(default_factory=dict)
    on_request: Callable[[httpx.Request], None] | None = None  # e.g. advance a fake clock

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if self.on_request:
            self.on_request(request)
        fault = take_fault(self.faults, request)
        if fault is not None:
            return fault
        if request.url.host == "iam.test":
            return self._iam(request)
        if request.url.host in self.s3.hosts:
            return self.s3.handle(request)
        if request.headers.get("Service-CRN") != CRN:
            return _error(400, "Service-CRN header missing or wrong")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return _error(401, "Invalid or expired token")
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "backends"]:
            return self._backends(parts[2:])
        if parts[:2] == ["v1", "jobs"]:
            return self._jobs(request, parts[2:])
        return _error(404, "no such route")

    def _iam(self, request: httpx.Request) -> httpx.Response:
        return iam_token(self, request)

    def _backends(self, rest: list[str]) -> httpx.Response:
        if not rest:
            return httpx.Response(200, json={"backends": [
                {"name": n, "status": s} for n, s in self.backends.items()]})
        name = rest[0]
        if name not in self.backends:
            return _error(404, f"Backend {name} not found")
        if rest[1:] == []:
            return httpx.Response(200, json={"name": name, "status": self.backends[name],
                                             "version": "1.0"})
        if rest[1:] == ["configuration"]:
            return httpx.Response(200, json={"backend_name": name, "n_qubits": 127})
        if rest[1:] == ["properties"]:
            return httpx.Response(200, json={"backend_name": name, "qubits": []})
        if rest[1:] == ["lanes"]:
            return httpx.Response(200, json={
                "hpc_workload_manager": {"lanes": self.lanes[0]},
                "ibm_quantum_compute": {"lanes": self.lanes[1]}})
        return _error(404, "no such route")

    def _jobs(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        if not rest and request.method == "GET":
            return httpx.Response(200, json={"jobs": list(self.jobs.values())})
        if not rest and request.method == "POST":
            return self._create(json.loads(request.content))
        job = self.jobs.get(rest[0])
        if job is None:
            return _error(404, f"Job {rest[0]} not found")
        if rest[1:] == [] and request.method == "GET":
            return httpx.Response(200, json=job)
        if rest[1:] == [] and request.method == "DELETE":
            del self.jobs[rest[0]]
            return httpx.Response(204)
        if rest[1:] == ["cancel"] and request.method == "POST":
            if job["status"] != "Running":
                return _error(409, f"Job {rest[0]} is already {job['status']}")
            job["status"] = "Cancelled"
            return httpx.Response(204)
        return _error(404, "no such route")

    def _create(self, body: dict) -> httpx.Response:  # type: ignore[type-arg]
        if body.get("backend") not in self.backends:
            return _error(404, f"Backend {body.get('backend')} not found")
        if body.get("program_id") not in ("sampler", "estimator"):
            return _error(400, f"Unknown program_id {body.get('program_id')}")
        storage = body.get("storage", {})
        for part in ("input", "results", "logs"):
            entry = storage.get(part, {})
            if entry.get("type") != "s3_compatible" or not entry.get("presigned_url"):
                return _error(400, f"storage.{part} needs an s3_compatible presigned_url")
        if not isinstance(body.get("timeout_secs"), int):
            return _error(400, "timeout_secs must be an integer")
        self.jobs[body["id"]] = {**body, "status": "Running",
                                 "created_time": "2026-11-24T10:00:00Z"}
        return httpx.Response(204)

    def run_pending(self, outcome: str = "Completed", reason: str = "Circuit too deep",
                    code: int = 1517) -> None:
        """The service's executor: for every Running job, read the input through its presigned
        URL, write results (if it succeeds) and logs through theirs, and end the job."""
        for job in self.jobs.values():
            if job["status"] != "Running":
                continue
            urls = {part: job["storage"][part]["presigned_url"] for part in job["storage"]}
            fetched = self.handle(httpx.Request("GET", urls["input"]))
            assert fetched.status_code == 200, fetched.text
            job["input_seen"] = fetched.content.decode()
            if outcome == "Completed":
                self._put(urls["results"], RESULTS)
            self._put(urls["logs"], LOGS)
            job.update(status=outcome, end_time="2026-11-24T10:01:00Z")
            if outcome == "Failed":
                job.update(reason_code=code, reason_message=reason,
                           reason_solution="Reduce the circuit depth.")

    def _put(self, url: str, text: str) -> None:
        stored = self.handle(httpx.Request("PUT", url, content=text.encode()))
        assert stored.status_code == 200, stored.text


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={
        "errors": [{"code": str(status), "message": message, "more_info": ""}],
        "status_code": status, "trace": "abc123"})


def settings(**overrides: str) -> dict[str, str]:
    env = {"QRMI_IBM_QS_ENDPOINT": API, "QRMI_IBM_QS_IAM_ENDPOINT": IAM,
           "QRMI_IBM_QS_IAM_APIKEY": API_KEY, "QRMI_IBM_QS_SERVICE_CRN": CRN,
           "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "QRMI_IBM_QS_S3_ENDPOINT": S3, "QRMI_IBM_QS_S3_BUCKET": BUCKET,
           "QRMI_IBM_QS_S3_REGION": REGION}
    env.update(overrides)
    return env
