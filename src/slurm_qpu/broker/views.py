"""What each resource type looks like from inside a job in broker mode, and what a job may
do through the proxy.

A ``View`` turns the site's settings for a QPU into the job's settings (endpoints pointing
at the broker's proxy, the job token where a credential was) and decides, per request,
whether the job may make it: a job reaches its own QPUs only, and on IBM Quantum only its
own session and the vendor jobs it created. Anything a view does not know is refused:
a new vendor route gets through only once someone has decided it is safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from slurm_qpu.broker import s3proxy
from slurm_qpu.redact import is_secret_key
from slurm_qpu.types import current_type
from slurm_qpu.vendor.s3 import S3Credentials

Headers = Callable[[bool], dict[str, str]]  # force refresh -> upstream auth headers


@dataclass(frozen=True)
class Upstream:
    base_url: str
    headers: Headers


@dataclass
class Call:
    """One proxied request, as a view sees it."""

    method: str
    path: str  # below /p/<name>/, no leading slash, already checked for tricks
    query: str
    body: bytes | None = None  # only when the view asked for it (wants_body)


class JobSide(Protocol):
    """What a view may ask about the job making the call."""

    name: str  # the QPU (the route's /p/<name>)
    session: str  # the acquisition token: the IBM session id, for example

    @property
    def job_id(self) -> int: ...

    def owns(self, vendor_id: str) -> bool: ...

    def remember(self, vendor_id: str, *, shots: int | None = None,
                 counted: bool = True) -> None: ...

    def report_usage(self, vendor_id: str, qpu_seconds: float) -> None:
        """The vendor reported the QPU time of one of the job's vendor jobs."""
        ...

    def access_token(self) -> tuple[str, int]: ...


@dataclass
class Decision:
    status: int = 200  # 200: forward; anything else: answer the job with ``message``
    message: str = ""
    body: bytes | None = None  # replaces the request body
    local: tuple[int, bytes] | None = None  # answer this instead of forwarding
    # sees the upstream status and (buffered) response body, may rewrite the body
    on_response: Callable[[int, bytes], bytes] | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200


def deny(message: str, status: int = 403) -> Decision:
    return Decision(status, message)


FORWARD = Decision()


# The request headers of a job that reach a vendor, whatever the vendor: what a JSON API
# client needs to say what it sends and what it accepts. Everything else is dropped, not
# refused (SDKs add their own headers freely): a header a gateway in front of the vendor
# might act on (X-HTTP-Method-Override, X-Original-URL, X-Rewrite-URL, X-Forwarded-*,
# Forwarded, Cookie, ...) would let a job's request mean something other than the method
# and path its view decided on, so nothing reaches the vendor unless a view lists it.
# Credentials (Authorization, Service-CRN, API-key headers) come from the broker, never
# from the job. Why each one is safe:
FORWARD_HEADERS = frozenset({
    "accept",  # the media type the client reads: affects only the answer's form
    "accept-encoding",  # the codings it can decode: ditto (gzip when the view reads it)
    "accept-language",  # ditto, for messages
    "content-type",  # the body's media type: the vendor parses what the view checked
    "content-encoding",  # gzip bodies (the Pasqal SDK): dropped when the view decoded one
    "user-agent",  # the vendor's logs and support say which SDK version asked
})


class View:
    """Default: a type with no network API in the job (local simulator, Warden): the job
    gets the settings minus anything that looks like a credential; no proxy routes."""

    proxied = False
    # the job's request headers this vendor gets (lower case; see FORWARD_HEADERS)
    forward_headers: frozenset[str] = FORWARD_HEADERS

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        return {k: v for k, v in settings.items() if not is_secret_key(k)}

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        raise NotImplementedError

    def wants_body(self, call: Call) -> bool:
        return False

    def authorize(self, job: JobSide, call: Call) -> Decision:
        return deny("this QPU is not reached through the broker")


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except ValueError:
        return None


def _keep(settings: Mapping[str, str], *drop: str) -> dict[str, str]:
    return {k: v for k, v in settings.items()
            if k not in drop and not is_secret_key(k)}


# ------------------------------------------------------------------------- IBM Quantum

QCS = "QRMI_IBM_QCS_"
PLACEHOLDER_CRN = "crn:v1:slurm-qpu:broker:job:{job}::"
IAM_ROUTE = "identity/token"


class _IamUpstreamMixin:
    """IBM Cloud: a bearer from IAM for the site's API key, and the Service-CRN."""

    prefix = ""

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        from slurm_qpu.vendor.http import VendorClient
        from slurm_qpu.vendor.iam import IamTokenSource

        p = self.prefix
        iam = IamTokenSource(VendorClient(settings.get(p + "IAM_ENDPOINT")
                                          or "https://iam.cloud.ibm.com", "IBM Cloud IAM"),
                             settings.get(p + "IAM_APIKEY", ""))
        crn = settings.get(p + "SERVICE_CRN", "")

        def headers(force: bool) -> dict[str, str]:
            return {**iam.headers(force), "Service-CRN": crn}

        return Upstream(self._api_root(settings.get(p + "ENDPOINT", "")), headers)

    @staticmethod
    def _api_root(endpoint: str) -> str:
        return endpoint.rstrip("/")

    def iam_answer(self, job: JobSide, call: Call) -> Decision:
        """The SDKs' API-key exchange, answered here: the job token is the 'API key' and
        the access token is a JWT naming the job's lease."""
        token, life = job.access_token()
        body = {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                "expires_in": life, "expiration": None, "scope": "slurm-qpu-job"}
        import time

        body["expiration"] = int(time.time()) + life
        return Decision(local=(200, json.dumps(body).encode()))


_QCS_API = re.compile(r"^(?:experimental/)?api/v1/(.*)$")


# qiskit-ibm-runtime and qrmi also send these: the API version the client was written for
# (the service answers in that version's shapes) and the client's name and version
IBM_HEADERS = FORWARD_HEADERS | {"ibm-api-version", "x-qx-client-application"}


class IbmQuantumComputeView(_IamUpstreamMixin, View):
    """IBM Quantum Platform (Qiskit Runtime REST API)."""

    proxied = True
    prefix = QCS
    forward_headers = IBM_HEADERS

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = _keep(settings, QCS + "ENDPOINT", QCS + "IAM_ENDPOINT")
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
                return Decision(on_response=lambda s, b: _note_qpu_time(
                    s, b, job, parts[1], ("usage", "quantum_seconds"), 1.0))
            return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")

    def _create_job(self, job: JobSide, call: Call) -> Decision:
        body = _json(call.body)
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

        def remember(status: int, answer: bytes) -> bytes:
            created = _json(answer)
            if status < 300 and isinstance(created, dict) and created.get("id"):
                job.remember(str(created["id"]), shots=shots)
            return answer

        return Decision(body=json.dumps(body).encode(), on_response=remember)


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


def _note_qpu_time(status: int, body: bytes, job: JobSide, vendor_id: str,
                   path: tuple[str, str], scale: float) -> bytes:
    """Record the QPU time a job status answer carries (``usage.quantum_seconds`` and
    the like); the answer passes unchanged."""
    data = _json(body)
    if status < 300 and isinstance(data, dict):
        value = data.get(path[0])
        value = value.get(path[1]) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            job.report_usage(vendor_id, float(value) * scale)
    return body


def _listed(body: bytes, key: str, keep: Callable[[dict[str, Any]], bool],
            change: Callable[[dict[str, Any]], Any] = lambda item: item,
            count: str | None = None) -> bytes:
    """A vendor's JSON answer whose list ``key`` keeps only the items ``keep`` accepts (each
    passed through ``change``; ``count`` names a total to correct). Anything else as is."""
    data = _json(body)
    if not (isinstance(data, dict) and isinstance(data.get(key), list)):
        return body
    data[key] = [change(item) for item in data[key] if isinstance(item, dict) and keep(item)]
    if count:
        data[count] = len(data[key])
    return json.dumps(data).encode()


def _only_backend(body: bytes, name: str) -> bytes:
    return _listed(body, "devices", lambda d: d.get("name") == name)


def _only_jobs(body: bytes, job: JobSide) -> bytes:
    return _listed(body, "jobs", lambda j: job.owns(str(j.get("id"))), count="count")


QS = "QRMI_IBM_QS_"
_S3_KEYS = tuple(QS + k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT",
                                  "S3_BUCKET", "S3_REGION", "S3_ENDPOINT_FOR_QSAPI"))
_STORAGE_PARTS = (("input", "GET"), ("results", "PUT"), ("logs", "PUT"))


@runtime_checkable
class StorageJob(JobSide, Protocol):
    """What the IBM Quantum System view also needs to know about the job: its token (its
    S3 secret derives from it) and the QPU's site settings (the real store)."""

    def job_token(self) -> str: ...

    def settings(self) -> Mapping[str, str] | None: ...


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


class IbmQuantumSystemView(_IamUpstreamMixin, View):
    """An on-premises IBM Quantum System (Direct Access API), and its job storage: S3
    through the broker's ``s3`` route with S3 credentials the lease derives
    (broker/s3proxy.py). The job's S3 settings name the broker: its client presigns the
    storage URLs for the broker, which puts URLs the service can reach in their place."""

    proxied = True
    prefix = QS
    forward_headers = IBM_HEADERS

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = _keep(settings, QS + "ENDPOINT", QS + "IAM_ENDPOINT", *_S3_KEYS)
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
            body = _json(call.body)
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
                return Decision(on_response=lambda s, b: _json_out(_unsigned(_json(
                    _note_qpu_time(s, b, job, parts[2], ("usage", "quantum_nanoseconds"),
                                   1e-9))), b))
            return FORWARD
        return deny(f"{method} /{call.path} is not available to jobs through the broker")

    def _storage_urls(self, job: JobSide, body: dict[str, Any]) -> Decision | None:
        """Put URLs presigned with the site's key, for the service's address, in place of
        the ones the job presigned for the broker (None: done; else the refusal)."""
        storage = body.get("storage")
        if not isinstance(storage, dict):
            return None  # the service answers what is missing
        settings = job.settings() if isinstance(job, StorageJob) else None
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

    def storage_request(self, signed: s3proxy.Signed, rest: str, job_token: str,
                        settings: Mapping[str, str], now: datetime) -> s3proxy.Outgoing:
        """A job's S3 request (``rest``: s3/<bucket>/<key>), checked and signed again for
        the site's store (StorageRefused: the answer instead)."""
        store = job_store(settings)
        if store is None:
            raise s3proxy.StorageRefused(404, "NoSuchBucket", "this QPU has no job storage "
                                                              "configured on the broker")
        return s3proxy.forward(signed, rest, store, s3proxy.job_credentials(job_token), now)


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
    return _listed(body, "jobs", lambda j: job.owns(str(j.get("id"))), _unsigned)


def _json_out(data: Any, original: bytes) -> bytes:
    return json.dumps(data).encode() if data is not None else original


def _only_qs_backend(body: bytes, name: str) -> bytes:
    return _listed(body, "backends", lambda b: b.get("name") == name)


# ------------------------------------------------------------------------- Pasqal Cloud

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
        env = _keep(settings, *_PASQAL_CREDENTIALS)
        env.update({PASQAL + "BASE_URL": proxy_url, PASQAL + "AUTH_TOKEN": job_token})
        return env

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        from slurm_qpu.resources.base import JobContext, ResourceSpec
        from slurm_qpu.resources.pasqal_cloud import token_source
        from slurm_qpu.vendor.http import RetryPolicy

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
            body = _json(call.body)
            if not isinstance(body, dict) or body.get("device_type") != job.name:
                device = body.get("device_type") if isinstance(body, dict) else "?"
                return deny(f"this job holds QPU {job.name}, not {device}")
            return Decision(on_response=lambda s, b: _remember_batch(s, b, job))
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


def _only_own_batches(body: bytes, job: JobSide) -> bytes:
    return _listed(body, "data", lambda j: job.owns(str(j.get("batch_id"))))


def _remember_batch(status: int, body: bytes, job: JobSide) -> bytes:
    data = _json(body)
    batch = data.get("data") if isinstance(data, dict) else None
    if status < 300 and isinstance(batch, dict) and batch.get("id"):
        job.remember(str(batch["id"]), counted=False)  # the batch's jobs are what runs
        for item in batch.get("jobs") or []:
            if isinstance(item, dict) and item.get("id"):
                runs = item.get("runs")
                job.remember(str(item["id"]), shots=runs if isinstance(runs, int) else None)
    return body


# ------------------------------------------------------------------------- token swap

@dataclass
class TokenSwapView(View):
    """An API whose whole authentication is one header (IQM, Alice & Bob): the job sends
    its job token in the vendor's header form, the broker sends the real one."""

    endpoint_key: str = ""
    secret_key: str = ""
    scheme: str = "Bearer"
    readonly_prefixes: tuple[str, ...] = ()
    proxied: bool = field(default=True)

    def job_environment(self, settings: Mapping[str, str], *, name: str, proxy_url: str,
                        job_token: str, job_id: int) -> dict[str, str]:
        env = _keep(settings, self.endpoint_key, self.secret_key)
        env.update({self.endpoint_key: proxy_url, self.secret_key: job_token})
        return env

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        header = {"Authorization": f"{self.scheme} {settings.get(self.secret_key, '')}"}
        return Upstream(settings.get(self.endpoint_key, "").rstrip("/"), lambda force: header)

    def authorize(self, job: JobSide, call: Call) -> Decision:
        return FORWARD


VIEWS: dict[str, View] = {
    "ibm-quantum-compute-service": IbmQuantumComputeView(),
    "ibm-quantum-system": IbmQuantumSystemView(),
    "pasqal-cloud": PasqalCloudView(),
    "iqm-server": TokenSwapView("QRMI_IQM_ISA_ENDPOINT", "QRMI_IQM_ISA_TOKEN", "Bearer"),
    "alice-bob-felis": TokenSwapView("QRMI_AB_FELIS_BASE_ENDPOINT", "QRMI_AB_FELIS_API_KEY",
                                     "Basic"),
}


def view_for(type_name: str) -> View:
    return VIEWS.get(current_type(type_name), View())


def query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)
