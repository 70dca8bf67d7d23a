"""``pasqal-cloud``: Pasqal Cloud (the ``core-fast`` REST API behind the pasqal-cloud SDK).

The resource name is the Pasqal device type: FRESNEL, FRESNEL_CAN1, EMU_MPS, EMU_FREE,
EMU_FRESNEL (also EMU_SV, EMU_TN). Pasqal Cloud has no reservation, so acquiring only checks
the device and returns a random token, and releasing does nothing. A task is a batch of one
job: the batch id is the task id.

Settings (config ``environment``):
  QRMI_PASQAL_CLOUD_PROJECT_ID     the project batches are created in (required)
  Credentials, one of (checked in this order):
  QRMI_PASQAL_CLOUD_AUTH_TOKEN     a bearer token used as is (cannot be renewed)
  QRMI_PASQAL_CLOUD_CLIENT_ID      with QRMI_PASQAL_CLOUD_CLIENT_SECRET: a service account
  QRMI_PASQAL_CLOUD_CLIENT_SECRET    (OAuth client_credentials grant)
  QRMI_PASQAL_CLOUD_USERNAME       with QRMI_PASQAL_CLOUD_PASSWORD: a user account (also read
  QRMI_PASQAL_CLOUD_PASSWORD         as PASQAL_USERNAME / PASQAL_PASSWORD, QRMI's names)
  QRMI_PASQAL_CLOUD_AUTH_ENDPOINT  token URL (default https://authenticate.pasqal.cloud/oauth/token;
                                   https:// is assumed when no scheme is given)
  QRMI_PASQAL_CLOUD_AUDIENCE       default https://apis.pasqal.cloud/account/api/v1
  QRMI_PASQAL_CLOUD_BASE_URL       default https://apis.pasqal.cloud (the API is under /core-fast)
Tokens are renewed before they expire (``expires_in``, else the JWT ``exp``) and once more
when the API answers 401.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from slurm_qpu.vendors.common.base import (
    MissingSetting,
    PasqalSequence,
    Payload,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
    require,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorClient,
    VendorError,
    VendorType,
)

P = "QRMI_PASQAL_CLOUD_"
DEFAULT_AUTH_ENDPOINT = "https://authenticate.pasqal.cloud/oauth/token"
DEFAULT_AUDIENCE = "https://apis.pasqal.cloud/account/api/v1"
DEFAULT_BASE_URL = "https://apis.pasqal.cloud"
# The public client id of Pasqal's own SDK: the password grant needs one, a user has none.
SDK_CLIENT_ID = "PeZvo7Atx7IVv3iel59asJSb4Ig7vuSB"
PASSWORD_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
PASSWORD_REALM = "pcs-users"
DEVICE_TYPES = ("FRESNEL", "FRESNEL_CAN1", "EMU_MPS", "EMU_FREE", "EMU_FRESNEL", "EMU_SV",
                "EMU_TN")
STATUS = {"PENDING": TaskStatus.QUEUED, "PAUSED": TaskStatus.QUEUED,
          "RUNNING": TaskStatus.RUNNING, "DONE": TaskStatus.COMPLETED,
          "ERROR": TaskStatus.FAILED, "TIMED_OUT": TaskStatus.FAILED,
          "CANCELING": TaskStatus.CANCELLED, "CANCELED": TaskStatus.CANCELLED}
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
HEADERS = {"User-Agent": "slurm-qpu"}

AuthHook = Callable[[bool], Mapping[str, str]]


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), or None if it has none.
    Read without verifying the signature: it only decides when to ask for a new token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


@dataclass(frozen=True)
class BearerToken:
    value: str = field(repr=False)
    obtained_at: float
    expires_at: float | None  # None: unknown, renewed only when the API refuses it

    def needs_refresh(self, now: float) -> bool:
        if self.expires_at is None:
            return False
        lifetime = self.expires_at - self.obtained_at
        return self.expires_at - now < max(60.0, 0.1 * lifetime)


class StaticToken:
    """QRMI_PASQAL_CLOUD_AUTH_TOKEN: used as given; an expired JWT is reported before use."""

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token
        self._expires_at = jwt_expiry(token)
        self.clock = clock

    def headers(self, force: bool = False) -> dict[str, str]:
        # force (after a 401) cannot help: the same token is sent again and the vendor's
        # refusal reaches the user with its own words.
        if self._expires_at is not None and self._expires_at <= self.clock():
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self._expires_at))
            raise VendorAuthError(f"Pasqal Cloud: the token in {P}AUTH_TOKEN expired on {when}; "
                                  "set a new one or configure a client id/secret or a "
                                  "username/password instead")
        return {"Authorization": f"Bearer {self._token}"}


class OAuthTokens:
    """Exchanges credentials (client_credentials or password-realm grant) for bearer tokens,
    and exchanges them again shortly before they expire."""

    def __init__(self, client: VendorClient, path: str, form: Mapping[str, str],
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.path = path
        self._form = dict(form)
        self.clock = clock
        self._token: BearerToken | None = None

    def token(self, force: bool = False) -> str:
        now = self.clock()
        if force or self._token is None or self._token.needs_refresh(now):
            try:
                response = self.client.request("POST", self.path, data=self._form, ok=(200,))
            except VendorError as exc:
                if exc.status == 400:  # OAuth's invalid_request / invalid_grant
                    raise VendorAuthError(f"{self.client.vendor} refused the credentials "
                                          f"(400): {exc.vendor_message}", 400,
                                          exc.vendor_message) from None
                raise
            try:
                body = response.json()
            except ValueError:
                body = None
            access = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(access, str) or not access:
                raise VendorError(f"{self.client.vendor} answered without an access token")
            expires_in = body.get("expires_in") if isinstance(body, dict) else None
            expires_at = now + float(expires_in) if isinstance(expires_in, int | float) \
                else jwt_expiry(access)
            self._token = BearerToken(access, now, expires_at)
        return self._token.value

    def headers(self, force: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(force)}"}


def _setting(spec: ResourceSpec, *keys: str) -> str | None:
    return next((spec.environment[k] for k in keys if spec.environment.get(k)), None)


def _grant_form(spec: ResourceSpec) -> dict[str, str]:
    """The token request's form for the configured credentials, or MissingSetting."""
    audience = _setting(spec, P + "AUDIENCE") or DEFAULT_AUDIENCE
    client_id = _setting(spec, P + "CLIENT_ID")
    secret = _setting(spec, P + "CLIENT_SECRET")
    if client_id and secret:
        return {"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": secret, "audience": audience}
    if secret:
        raise MissingSetting(f"resource {spec.name}: {P}CLIENT_SECRET is set but "
                             f"{P}CLIENT_ID is missing")
    username = _setting(spec, P + "USERNAME", "PASQAL_USERNAME")
    password = _setting(spec, P + "PASSWORD", "PASQAL_PASSWORD")
    if username and password:
        return {"grant_type": PASSWORD_GRANT, "realm": PASSWORD_REALM,
                "client_id": client_id or SDK_CLIENT_ID, "audience": audience,
                "username": username, "password": password}
    if username or password:
        have, lack = ("USERNAME", "PASSWORD") if username else ("PASSWORD", "USERNAME")
        raise MissingSetting(f"resource {spec.name}: {P}{have} is set but {P}{lack} "
                             f"(or PASQAL_{lack}) is missing")
    raise MissingSetting(f"resource {spec.name}: no Pasqal Cloud credentials in its "
                         f"'environment': set {P}AUTH_TOKEN, or {P}CLIENT_ID and "
                         f"{P}CLIENT_SECRET, or {P}USERNAME and {P}PASSWORD")


def _split_endpoint(url: str) -> tuple[str, str]:
    """``(origin, path)`` of the token URL; https:// when no scheme is given (as QRMI)."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def _api_base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/core-fast") else url + "/core-fast"


def _data(response: httpx.Response) -> Any:
    """The ``data`` of a JSend answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "data" not in body:
        raise VendorError("Pasqal Cloud answered without a JSend 'data' field "
                          f"({response.request.method} {response.request.url.path})")
    return body["data"]


def token_source(spec: ResourceSpec, transport: httpx.BaseTransport | None,
                 retry: RetryPolicy) -> StaticToken | OAuthTokens:
    static = _setting(spec, P + "AUTH_TOKEN")
    if static:
        return StaticToken(static)
    form = _grant_form(spec)
    origin, path = _split_endpoint(_setting(spec, P + "AUTH_ENDPOINT") or DEFAULT_AUTH_ENDPOINT)
    client = VendorClient(origin, "Pasqal Cloud authentication", transport, retry,
                          headers=HEADERS)
    return OAuthTokens(client, path, form)


@dataclass
class PasqalCloud:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.spec.name not in DEVICE_TYPES:
            raise MissingSetting(f"resource {self.spec.name}: a pasqal-cloud resource is named "
                                 "after its Pasqal device type, one of "
                                 f"{', '.join(DEVICE_TYPES)}")
        self.device_type = self.spec.name
        self.project_id = require(self.spec, P + "PROJECT_ID")
        self.tokens = token_source(self.spec, self.transport, self.retry)
        base = _api_base(_setting(self.spec, P + "BASE_URL") or DEFAULT_BASE_URL)
        self.api = VendorClient(base, "Pasqal Cloud", self.transport, self.retry,
                                headers=HEADERS, auth=self.tokens.headers)
        # device specs of the emulators are public: no token needed to read them
        self.public = VendorClient(base, "Pasqal Cloud", self.transport, self.retry,
                                   headers=HEADERS)
        self.status_reason: str | None = None  # why the device is not accessible, if known

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def is_accessible(self) -> bool:
        """The device is not retired or disabled. A QPU that is down for a while still
        queues batches, so its operating status does not count (as in QRMI)."""
        devices = _data(self.api.request("GET", "/api/v1/devices",
                                         params={"device_type": self.device_type}))
        if not isinstance(devices, list) or not devices or not isinstance(devices[0], dict):
            self.status_reason = f"Pasqal Cloud lists no device {self.device_type}"
            return False
        availability = str(devices[0].get("availability", ""))
        self.status_reason = None if availability == "ACTIVE" else \
            f"{self.device_type} availability is {availability or 'unknown'}"
        return self.status_reason is None

    def acquire(self) -> str:
        return str(uuid.uuid4())  # nothing to reserve: batches queue on Pasqal's side

    def release(self, token: str) -> None:
        return None

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, PasqalSequence):
            raise UnsupportedPayload(f"{self.spec.name} runs Pulser sequences, not "
                                     f"{type(payload).__name__}")
        if payload.job_runs < 1:
            raise UnsupportedPayload(f"job_runs must be at least 1, not {payload.job_runs}")
        batch = _data(self.api.request("POST", "/api/v1/batches", json={
            "sequence_builder": payload.sequence, "jobs": [{"runs": payload.job_runs}],
            "device_type": self.device_type, "project_id": self.project_id}))
        if not isinstance(batch, dict) or not batch.get("id"):
            raise VendorError("Pasqal Cloud created a batch but returned no id")
        return str(batch["id"])

    def _batch(self, task_id: str) -> dict[str, Any]:
        batch = _data(self.api.request("GET", f"/api/v2/batches/{task_id}"))
        if not isinstance(batch, dict):
            raise VendorError(f"Pasqal Cloud: batch {task_id} has no description")
        return batch

    def task_status(self, task_id: str) -> TaskStatus:
        raw = str(self._batch(task_id).get("status", ""))
        if raw not in STATUS:
            raise VendorError(f"Pasqal Cloud: batch {task_id} has unknown status {raw!r}")
        return STATUS[raw]

    def task_stop(self, task_id: str) -> None:
        if self.task_status(task_id) in FINAL:
            return
        try:
            self.api.request("PATCH", f"/api/v2/batches/{task_id}/cancel")
        except VendorError:
            # it may have finished meanwhile: that is not a failure to stop it
            if self.task_status(task_id) not in FINAL:
                raise

    def task_result(self, task_id: str) -> TaskResult:
        status = self.task_status(task_id)
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"batch {task_id} is {status.value}")
        results = _data(self.api.request("GET", f"/api/v1/batches/{task_id}/full_results"))
        # {job_id: {"counter": ...}}; a task is one job, whose result is what programs read
        if isinstance(results, dict) and len(results) == 1:
            results = next(iter(results.values()))
        return TaskResult(json.dumps(results))

    def task_logs(self, task_id: str) -> str:
        jobs = _data(self.api.request("GET", "/api/v2/jobs", params={"batch_id": task_id}))
        errors = [f"job {job.get('id')}: {error}"
                  for job in (jobs if isinstance(jobs, list) else []) if isinstance(job, dict)
                  for error in (job.get("errors") or [])]
        if errors:
            return "\n".join(errors) + "\n"
        return f"Pasqal Cloud keeps no logs; batch {task_id} reported no errors.\n"

    def target(self) -> Target:
        """The device's Pulser specs as ``[{"device_type", "specs"}]``, the shape of the
        public-specs endpoint, which is what QRMI's Pulser integration parses."""
        if self.device_type.startswith("EMU_"):
            listed = _data(self.public.request("GET", "/api/v1/devices/public-specs"))
            found = [d for d in (listed if isinstance(listed, list) else [])
                     if isinstance(d, dict) and d.get("device_type") == self.device_type]
            if not found:
                raise VendorError(f"Pasqal Cloud publishes no specs for {self.device_type}")
            entry = found[0]
        else:
            entry = _data(self.api.request("GET", f"/api/v1/devices/specs/{self.device_type}"))
            if not isinstance(entry, dict) or "specs" not in entry:
                raise VendorError(f"Pasqal Cloud returned no specs for {self.device_type}")
        return Target(json.dumps([{"device_type": self.device_type, "specs": entry["specs"]}]))

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name}


class PasqalCloudType(VendorType):
    type_name = "pasqal-cloud"

    def create(self, spec: ResourceSpec) -> PasqalCloud:
        return PasqalCloud(spec, self.transport, self.retry)
