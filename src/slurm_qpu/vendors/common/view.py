"""What a QPU type looks like from inside a job in broker mode, and what a job may do through
the proxy: the mechanism every vendor's view shares.

A ``View`` turns the site's settings for a QPU into the job's settings (endpoints pointing
at the broker's proxy, the job token where a credential was) and decides, per request,
whether the job may make it: a job reaches its own QPUs only, and only the vendor objects
(sessions, jobs, batches) the vendor created for it. Anything a view does not know is
refused: a new vendor route gets through only once someone has decided it is safe. Each
vendor's view is in its folder (``slurm_qpu/vendors/<vendor>/view.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from slurm_qpu.redact import is_secret_key

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

    def settings(self) -> Mapping[str, str] | None:
        """The QPU's settings as the broker holds them (credentials included; None once the
        QPU is gone from the configuration): what the site pins the job to."""
        ...


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


# ------------------------------------------------------------------------- signed routes

class Refusal(Exception):
    """The answer to a request on a signed route, in place of the service's: ``code`` is
    the protocol's own error code (S3's ``AccessDenied``, ...) or one of the reasons below,
    which the route's ``error`` turns into its protocol's."""

    def __init__(self, status: int, code: str, message: str, *,
                 auth_failure: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.auth_failure = auth_failure  # counted against the client's address


# why the broker itself refuses a signed request (SignedRoute.error names them in its words)
UNKNOWN_CREDENTIAL = "unknown-credential"  # signed with credentials no lease has
ENDED = "ended"  # the lease's job has ended
DENIED = "denied"  # not the job's to do
OVER_RATE = "over-rate"  # the job's request rate
TOO_LARGE = "too-large"  # the body is over the broker's limit
TIMEOUT = "timeout"  # the service did not answer in time
UNREACHABLE = "unreachable"  # the service cannot be reached


class Forward(Protocol):
    """A signed request as it goes to the service: re-signed by the view for the site."""

    method: str
    url: str
    headers: dict[str, str]

    def body(self, stream: Iterator[bytes], hold: Callable[[int], None]) -> Iterator[bytes]:
        """The body as the service must get it (re-signed pieces, say); ``hold(n)`` before
        holding ``n`` bytes at once (the broker counts it, and may refuse it)."""
        ...

    def reads_answer(self, status: int) -> bool:
        """Whether the view must see (and may rewrite) the service's answer of ``status``;
        otherwise it streams to the job as it is."""
        ...

    def answer(self, status: int, body: bytes) -> bytes:
        """The service's answer as the job must see it (when ``reads_answer``)."""
        ...


class SignedRoute(Protocol):
    """A request a job authenticates by signing it with credentials its lease derives (S3's
    SigV4, for the job storage of an IBM Quantum System), not by showing its job token."""

    credential: str  # what signed it, for messages: "S3 access key sqpu-s3-7-1"
    credentials: str  # what a job signs with, for messages: "S3 credentials"
    service: str  # the service behind the route, for messages: "S3 store"
    serves: str  # the QPUs it serves, for messages: "IBM Quantum System"

    def lease(self) -> tuple[int, int] | None:
        """The (job id, generation) whose credentials signed the request, None if they are
        not a job's (Refusal: the request cannot be read)."""
        ...

    def forward(self, job_token: str, settings: Mapping[str, str],
                now: datetime) -> Forward:
        """The request checked against the lease's credentials (derived from its job token)
        and the site's ``settings``, and signed again for the site (Refusal: refused)."""
        ...

    def error(self, refusal: Refusal, with_body: bool) -> tuple[str, bytes]:
        """(content type, body) answering the job with ``refusal`` in the protocol's form."""
        ...


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

    def form_credential(self, call: Call) -> str | None:
        """The field of an urlencoded form body that carries the job token on this route,
        for clients that send it there instead of in ``Authorization`` (an API-key
        exchange); None: the token is in the header."""
        return None

    def signed_route(self, call: Call, raw_path: str,
                     headers: list[tuple[str, str]]) -> SignedRoute | None:
        """The route that serves this request if the job signs it instead of showing its
        token (``raw_path``: as sent, percent-encoding intact); None: a token route."""
        return None


def json_body(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except ValueError:
        return None


def keep_settings(settings: Mapping[str, str], *drop: str) -> dict[str, str]:
    return {k: v for k, v in settings.items()
            if k not in drop and not is_secret_key(k)}


def note_qpu_time(status: int, body: bytes, job: JobSide, vendor_id: str,
                  path: tuple[str, ...], scale: float) -> bytes:
    """Record the QPU time a job status answer carries at ``path`` (``usage.quantum_seconds``
    and the like), times ``scale`` to make seconds; the answer passes unchanged."""
    value = json_body(body)
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if status < 300 and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value > 0:
        job.report_usage(vendor_id, float(value) * scale)
    return body


def remember_created(status: int, body: bytes, job: JobSide, shots: int | None) -> bytes:
    """A vendor's answer to a new vendor job (``{"id": ...}``): the job is the Slurm job's
    from now on, with the shots it asked for; the answer passes unchanged."""
    created = json_body(body)
    if status < 300 and isinstance(created, dict) and created.get("id"):
        job.remember(str(created["id"]), shots=shots)
    return body


def listed(body: bytes, key: str, keep: Callable[[dict[str, Any]], bool],
            change: Callable[[dict[str, Any]], Any] = lambda item: item,
            count: str | None = None) -> bytes:
    """A vendor's JSON answer whose list ``key`` keeps only the items ``keep`` accepts (each
    passed through ``change``; ``count`` names a total to correct). Anything else as is."""
    data = json_body(body)
    if not (isinstance(data, dict) and isinstance(data.get(key), list)):
        return body
    data[key] = [change(item) for item in data[key] if isinstance(item, dict) and keep(item)]
    if count:
        data[count] = len(data[key])
    return json.dumps(data).encode()


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
        env = keep_settings(settings, self.endpoint_key, self.secret_key)
        env.update({self.endpoint_key: proxy_url, self.secret_key: job_token})
        return env

    def upstream(self, settings: Mapping[str, str]) -> Upstream:
        header = {"Authorization": f"{self.scheme} {settings.get(self.secret_key, '')}"}
        return Upstream(settings.get(self.endpoint_key, "").rstrip("/"), lambda force: header)

    def authorize(self, job: JobSide, call: Call) -> Decision:
        return FORWARD


def query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)
