"""A small S3 client: path-style PutObject/GetObject/DeleteObject signed with AWS Signature
Version 4, and presigned GET/PUT URLs. Enough for the S3-compatible stores (AWS S3, IBM Cloud
Object Storage, MinIO, Ceph) that the IBM Quantum System API reads job inputs from and writes
results to, without pulling botocore into the plugin.

The signer is written from AWS's published description of SigV4 (stdlib hmac/hashlib only) and
is checked against AWS's own examples in the tests. Every call goes through VendorClient, so S3
gets the same timeouts, retries and deadline as the vendor APIs; each retry is signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import httpx

from slurm_qpu.vendors.common.http import RetryPolicy, VendorClient, VendorError

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 refuses presigned URLs valid for longer
# Headers worth signing: S3 requires host and every x-amz-* header; the others are optional.
_SIGNED_PLAIN = frozenset({"host", "content-type", "content-md5", "range"})

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _encode(text: str) -> str:
    """SigV4's URI encoding: everything but the RFC 3986 unreserved characters."""
    return quote(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    """The path with each segment encoded once (S3 does not double-encode)."""
    return "/".join(_encode(unquote(segment)) for segment in path.split("/")) or "/"


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in params))


def _scope(when: datetime, region: str, service: str) -> str:
    return f"{when:%Y%m%d}/{region}/{service}/aws4_request"


def _signature(credentials: S3Credentials, region: str, service: str, when: datetime,
               canonical_request: str) -> str:
    string_to_sign = "\n".join([ALGORITHM, f"{when:%Y%m%dT%H%M%SZ}",
                                _scope(when, region, service),
                                _sha256(canonical_request.encode())])
    key = _hmac(f"AWS4{credentials.secret_access_key}".encode(), f"{when:%Y%m%d}")
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signing_key(secret_access_key: str, day: str, region: str, service: str = "s3") -> bytes:
    """SigV4's derived key for ``day`` (YYYYMMDD): for code that checks signatures or signs
    the chunks of a streamed upload."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign_string(key: bytes, string_to_sign: str) -> str:
    """The hex signature of a SigV4 string to sign with a key from ``signing_key``."""
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(credentials: S3Credentials, region: str, method: str, url: httpx.URL | str,
                  headers: Mapping[str, str], payload_hash: str, when: datetime,
                  service: str = "s3") -> str:
    """The Authorization header value for a request whose signed headers are ``headers``
    (they must include host and x-amz-date)."""
    url = httpx.URL(url)
    lowered = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    names = sorted(lowered)
    signed = ";".join(names)
    request = "\n".join([method.upper(), canonical_uri(url.path),
                         canonical_query(url.params.multi_items()),
                         "".join(f"{name}:{lowered[name]}\n" for name in names),
                         signed, payload_hash])
    signature = _signature(credentials, region, service, when, request)
    return (f"{ALGORITHM} Credential={credentials.access_key_id}/"
            f"{_scope(when, region, service)}, SignedHeaders={signed}, Signature={signature}")


def presign(credentials: S3Credentials, region: str, method: str, url: httpx.URL | str,
            expires: int, when: datetime, service: str = "s3") -> str:
    """A URL that lets whoever holds it do ``method`` on ``url`` for ``expires`` seconds
    without credentials (query-string SigV4, host the only signed header)."""
    if not 1 <= expires <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"presigned URL expiry must be 1..{MAX_PRESIGN_SECONDS} s, "
                         f"not {expires}")
    url = httpx.URL(url)
    host = url.netloc.decode("ascii")
    path = canonical_uri(url.path)
    query = canonical_query([
        *url.params.multi_items(),
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key_id}/{_scope(when, region, service)}"),
        ("X-Amz-Date", f"{when:%Y%m%dT%H%M%SZ}"),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host")])
    request = "\n".join([method.upper(), path, query, f"host:{host}\n", "host",
                         UNSIGNED_PAYLOAD])
    signature = _signature(credentials, region, service, when, request)
    return f"{url.scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"


class SigV4Auth(httpx.Auth):
    """Signs each request as httpx sends it, so every retry carries a fresh date."""

    requires_request_body = True  # the body's hash is part of the signature

    def __init__(self, credentials: S3Credentials, region: str, clock: Clock = utcnow,
                 service: str = "s3") -> None:
        self.credentials = credentials
        self.region = region
        self.clock = clock
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        when = self.clock()
        request.headers["x-amz-date"] = f"{when:%Y%m%dT%H%M%SZ}"
        request.headers["x-amz-content-sha256"] = payload = _sha256(request.content)
        signed = {name: value for name, value in request.headers.items()
                  if name.lower() in _SIGNED_PLAIN or name.lower().startswith("x-amz-")}
        request.headers["Authorization"] = authorization(
            self.credentials, self.region, request.method, request.url, signed, payload, when,
            self.service)
        yield request


_XML_ERROR = re.compile(r"<\?xml.*?(?:</Error>|(?=; gave up)|$)|<Error>.*?(?:</Error>|$)",
                        re.DOTALL)


def _readable(message: str) -> str:
    """S3 answers errors in XML; keep its Code and Message, drop the markup."""
    def plain(match: re.Match[str]) -> str:
        blob = match.group(0)
        code = re.search(r"<Code>(.*?)</Code>", blob, re.DOTALL)
        text = re.search(r"<Message>(.*?)(?:</Message>|$)", blob, re.DOTALL)  # may be cut short
        parts = [m.group(1).strip() for m in (code, text) if m]
        return ": ".join(parts) if parts else blob
    return _XML_ERROR.sub(plain, message)


class S3Client:
    """Objects in one bucket of an S3-compatible store, addressed path-style
    (``{endpoint}/{bucket}/{key}``), which every S3-compatible store understands."""

    def __init__(self, endpoint: str, bucket: str, region: str, credentials: S3Credentials,
                 transport: httpx.BaseTransport | None = None,
                 retry: RetryPolicy | None = None, clock: Clock = utcnow) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        self.clock = clock
        self.http = VendorClient(self.endpoint, "S3 storage", transport, retry or RetryPolicy(),
                                 http_auth=SigV4Auth(credentials, region, clock))

    def close(self) -> None:
        self.http.close()

    def path(self, key: str) -> str:
        return canonical_uri(f"/{self.bucket}/{key}")

    def url(self, key: str, endpoint: str | None = None) -> str:
        return (endpoint or self.endpoint).rstrip("/") + self.path(key)

    def _call(self, method: str, key: str, content: bytes | None = None,
              ok: tuple[int, ...] = (200, 204)) -> httpx.Response:
        try:
            return self.http.request(method, self.path(key), content=content, ok=ok)
        except VendorError as exc:
            raise type(exc)(_readable(str(exc)), exc.status,
                            _readable(exc.vendor_message)) from None

    def put_object(self, key: str, body: bytes) -> None:
        self._call("PUT", key, body)

    def get_object(self, key: str) -> bytes:
        return self._call("GET", key).content

    def delete_object(self, key: str) -> None:
        self._call("DELETE", key)

    def presign(self, method: str, key: str, expires: int, endpoint: str | None = None) -> str:
        """A presigned URL for ``key``; ``endpoint`` is the address the URL's user will reach
        the store at, when that differs from ours (the host is part of the signature)."""
        return presign(self.credentials, self.region, method, self.url(key, endpoint), expires,
                       self.clock())
