"""An HTTP client for vendor APIs that can never hang a prolog.

Every call has connect/read timeouts, retries transient failures (connection errors,
timeouts, 429 and 5xx) with exponential backoff, and gives up when its overall deadline
is reached. Failures become typed exceptions whose message is the vendor's own words.
The transport is pluggable (``httpx.MockTransport`` in tests), as in httpx itself.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu.vendors.common.base import ResourceError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 524})


class VendorError(ResourceError):
    """A vendor call failed; ``str()`` is meant for the user."""

    def __init__(self, message: str, status: int | None = None,
                 vendor_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_message = vendor_message or message


class VendorAuthError(VendorError):
    """401/403: credentials rejected."""


class VendorNotFound(VendorError):
    """404: no such backend, session or job."""


class VendorUnavailable(VendorError):
    """No usable answer before the deadline (timeouts, 5xx, connection refused)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 0.5  # first pause; doubled after each failed attempt
    max_backoff: float = 4.0
    deadline: float = 60.0  # seconds for one logical call, retries included
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def vendor_message(response: httpx.Response) -> str:
    """The human part of an error body, in the shapes IBM, IAM and Pasqal use."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, ValueError):
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        jsend = _jsend_message(body)
        if jsend:
            return jsend
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0])
        detail = body.get("detail")
        if isinstance(detail, list) and detail:  # FastAPI validation errors (422)
            return "; ".join(_validation_item(item) for item in detail)[:300]
        for key in ("errorMessage", "message", "detail", "error_description"):
            if isinstance(body.get(key), str):
                return str(body[key])
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(body)[:300]


def _jsend_message(body: dict[str, Any]) -> str | None:
    """Pasqal's JSend errors: ``{"status": "fail", "message": ..., "data": {"description":
    ...}}``; the description is the useful part."""
    if body.get("status") not in ("fail", "error"):
        return None
    data = body.get("data")
    description = data.get("description") if isinstance(data, dict) else None
    if isinstance(description, list):
        description = "; ".join(str(d) for d in description)
    message = body.get("message") if isinstance(body.get("message"), str) else None
    if description:
        return f"{message.rstrip('.')}: {description}" if message else str(description)
    return message


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc") or [])
    return f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once per process: building one loads
    the CA bundle (~40 ms of CPU), and the broker makes vendor clients for every acquire
    and every release (BENCHMARKS.md: it was most of a lease cycle)."""
    return httpx.create_ssl_context()


@dataclass
class VendorClient:
    base_url: str
    vendor: str  # for messages: "IBM Quantum", "Pasqal Cloud", ...
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: Callable[[bool], Mapping[str, str]] | None = None  # (force_refresh) -> headers
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    http_auth: httpx.Auth | None = None  # per-request signing (S3's SigV4)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), transport=self.transport,
                                  headers=dict(self.headers), follow_redirects=False,
                                  auth=self.http_auth, verify=tls_context())

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None, data: Mapping[str, str] | None = None,
                files: Mapping[str, Any] | None = None, content: bytes | None = None,
                extra_headers: Mapping[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204)) -> httpx.Response:
        deadline = self.clock() + self.retry.deadline
        pause = self.retry.backoff
        reauthenticated = False
        last = "no attempt made"
        for attempt in range(1, self.retry.attempts + 1):
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            timeout = httpx.Timeout(min(self.retry.read_timeout, remaining),
                                    connect=min(self.retry.connect_timeout, remaining))
            headers = dict(self.auth(False)) if self.auth else {}
            headers.update(extra_headers or {})
            try:
                response = self._http.request(method, path, json=json, params=params,
                                              data=data, files=files, content=content,
                                              headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                last = f"no answer within {timeout.read:.0f} s"
            except httpx.TransportError as exc:
                last = f"cannot connect: {exc}"
            else:
                if response.status_code in ok:
                    return response
                message = vendor_message(response)
                status = response.status_code
                if status == 401 and self.auth and not reauthenticated:
                    self.auth(True)  # an expired token: get a fresh one once, then retry
                    reauthenticated = True
                    continue
                if status in (401, 403):
                    raise VendorAuthError(f"{self.vendor} refused the credentials "
                                          f"({status}): {message}", status, message)
                if status == 404:
                    raise VendorNotFound(f"{self.vendor}: not found: {message}", status, message)
                if status not in RETRY_STATUS:
                    raise VendorError(f"{self.vendor} error {status}: {message}", status,
                                      message)
                last = f"error {status}: {message}"
            if attempt < self.retry.attempts:
                wait = min(pause, self.retry.max_backoff, max(deadline - self.clock(), 0))
                if wait > 0:
                    self.sleep(wait)
                pause *= 2
        raise VendorUnavailable(f"{self.vendor} unavailable ({method} {path}): {last}; gave up "
                                f"after {self.retry.attempts} attempt(s) / "
                                f"{self.retry.deadline:.0f} s")

    def get_json(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()


class VendorType:
    """Base of the resource types that talk to a vendor over HTTP: the transport (an
    ``httpx.MockTransport`` in tests) and the retry policy are injectable."""

    type_name: str

    def __init__(self, transport: httpx.BaseTransport | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy()
