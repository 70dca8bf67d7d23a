"""S3 through the broker: an IBM Quantum System job's storage, without the site's keys.

The IBM Quantum System API reads a job's input from, and writes its results to, an S3
bucket through presigned URLs; clients upload and download with S3 credentials. In broker
mode a job gets S3 settings that point at the broker (``<proxy>/s3``, path-style
``/p/<qpu>/s3/<bucket>/<key>``) and credentials of its own:

- access key id ``sqpu-s3-<job>-<generation>``, which names the lease;
- secret access key: an HMAC of the job token, itself an HMAC with the broker's signing key
  over the lease and its random salt. It is never stored (the broker derives it again for
  every request) and accepted only while the lease is acquired: it dies with the job.

Every job of a QPU shares the site's bucket, so each lease has a key prefix of its own,
``slurm-qpu/job-<job>.<generation>/``, and the bucket a job sees is that prefix: the broker
puts the prefix in front of every key the job names (objects, listings, the presigned URLs
it hands the service) and takes it off the keys in the store's answers. A job's program
(qrmi writes ``input_<id>.json`` at the bucket's root) needs no change, and no key it can
write, however encoded, names another job's object. What a job may do there is an
allow-list (``place``): objects (get, head, put, delete, multipart uploads), listings
(confined to its prefix) and a bucket's head; nothing else of the bucket, no other bucket.
The headers and query sub-resources that reach the store are allow-lists too
(``STORE_HEADERS``, ``OBJECT_QUERY``, ``LISTING_QUERY`` say why each is safe); any other
``x-amz-*`` header is refused, so nothing the site's key signs can reach past the job's
own objects (a copy source, an ACL, tags, retention, a website redirect, ...).

A job's request, header-signed or a presigned URL, is checked against that secret and
signed again with the site's credentials for the real store (header SigV4). The payload
hash the job signed (``x-amz-content-sha256``) is passed on and signed again, so the store
itself checks the body against it; chunk-signed ``aws-chunked`` bodies are re-signed chunk by
chunk as they stream. The presigned URLs a job puts in ``POST /v1/jobs`` are checked the same
way and replaced by URLs presigned with the site's key for the address the service reaches
the store at (``S3_ENDPOINT_FOR_QSAPI``, else ``S3_ENDPOINT``), expiring when the job's did.

Not supported (refused with a message): SigV2, SigV4a, chunk-signed bodies with signed
trailers (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``), presigned URLs that sign headers
other than host, deleting several objects in one request (DeleteObjects). Everything here
is pure (no I/O; the clock is an argument); the broker's server makes the requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

import httpx

from slurm_qpu.broker.tokens import TOKEN
from slurm_qpu.vendors.common.s3 import (
    ALGORITHM,
    MAX_PRESIGN_SECONDS,
    UNSIGNED_PAYLOAD,
    S3Credentials,
    authorization,
    canonical_query,
    canonical_uri,
    presign,
    sign_string,
    signing_key,
)
from slurm_qpu.vendors.common.view import (
    DENIED,
    ENDED,
    OVER_RATE,
    TIMEOUT,
    TOO_LARGE,
    UNKNOWN_CREDENTIAL,
    UNREACHABLE,
    Refusal,
)

ROUTE = "s3"  # below /p/<qpu>/
ACCESS_KEY = re.compile(r"^sqpu-s3-([0-9]{1,12})-([0-9]{1,9})$")
MAX_SKEW = timedelta(minutes=15)  # as S3: a header-signed request's date vs. our clock
SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
MAX_CHUNK = 16 * 1024 * 1024  # a signed chunk is held whole: its signature comes first
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SECRET_LABEL = b"slurm-qpu job S3 secret access key"
_AUTH_PARAMS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                          "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"})
_SIGNED_PLAIN = frozenset({"host", "content-type", "content-md5", "range"})

# The job's request headers that reach the store, and why each is safe: each describes the
# job's own object or request, and none can name another object, bucket or account.
STORE_HEADERS = frozenset({
    # the object's own metadata, kept with it and given back on GET
    "content-type", "content-encoding", "content-disposition", "content-language",
    "cache-control", "expires",
    # the body's integrity: the store refuses a body that does not match
    "content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
    "x-amz-decoded-content-length",  # the size of an aws-chunked body, checked by the store
    # conditional and partial reads and writes of the object named by the path
    "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
})
STORE_HEADER_PREFIXES = (
    "x-amz-meta-",  # the object's user metadata
    "x-amz-checksum-",  # an upload's checksums, and asking for them on download
)
# x-amz-* headers dropped without a word: the broker sets the first two itself for its own
# signature, the token has no meaning for the site's key, the last names the SDK's version
IGNORED_AMZ_HEADERS = frozenset({"x-amz-date", "x-amz-content-sha256",
                                 "x-amz-security-token", "x-amz-user-agent"})
# what the commonest refused headers ask for, in the refusal's words
_REFUSED_HEADERS = (
    ("x-amz-copy-source", "copying objects (the source can be another job's object or "
                          "another bucket)"),
    ("x-amz-acl", "access rights (ACLs)"), ("x-amz-grant-", "access rights (ACLs)"),
    ("x-amz-tagging", "object tags"), ("x-amz-object-lock-", "retention and legal holds"),
    ("x-amz-website-redirect-location", "website redirects"),
    ("x-amz-server-side-encryption", "encryption settings"),
    ("x-amz-storage-class", "storage classes"),
)
# query sub-resources of a request for an object, and why each is safe
OBJECT_QUERY = frozenset({
    "x-id",  # the operation's name, which newer AWS SDKs add; the store ignores it
    "versionId",  # a version of the object named by the path
    "uploads", "uploadId", "partNumber",  # a multipart upload of that object
    "max-parts", "part-number-marker",  # listing the parts of such an upload
    # the headers of the answer (GET): its form only
    "response-content-type", "response-content-language", "response-expires",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
})
# query parameters of a listing (ListObjects, ListObjectsV2), and why each is safe: the
# broker puts the job's prefix in front of the key-valued ones, so the listing stays inside
LISTING_QUERY = frozenset({
    "x-id", "list-type", "encoding-type", "fetch-owner", "max-keys",  # its form and size
    "delimiter",  # grouping by a separator, inside the prefix
    "continuation-token",  # the store's own token for the next page of this listing
    "prefix", "start-after", "marker",  # keys: the lease's prefix goes in front of each
})
_PREFIXED_QUERY = ("prefix", "start-after", "marker")
# elements of the store's answers whose value is a key the job may send back
_KEY_ELEMENTS = ("Key", "Prefix", "StartAfter", "Marker", "NextMarker")


# refusals counted as failed authentications of the client's address
AUTH_FAILURES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "RequestTimeTooSkewed"})


class StorageRefused(Refusal):
    """Answer the job's S3 request with an S3 error (``code``) and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message, auth_failure=code in AUTH_FAILURES)


# the broker's own reasons for refusing a signed request, as S3 clients know them
S3_CODES = {UNKNOWN_CREDENTIAL: "InvalidAccessKeyId", ENDED: "InvalidAccessKeyId",
            DENIED: "AccessDenied", OVER_RATE: "SlowDown", TOO_LARGE: "EntityTooLarge",
            TIMEOUT: "RequestTimeout", UNREACHABLE: "ServiceUnavailable"}


def denied(message: str) -> StorageRefused:
    return StorageRefused(403, "AccessDenied", message)


def error_xml(code: str, message: str) -> bytes:
    """An S3 error document: what S3 clients parse, so that they show ``message``."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()


def is_storage_route(rest: str) -> bool:
    """Whether a proxied path (below /p/<qpu>/) is the S3 route."""
    return rest == ROUTE or rest.startswith(ROUTE + "/")


# ------------------------------------------------------------------------- credentials

def access_key_id(job_id: int, gen: int) -> str:
    return f"sqpu-s3-{job_id}-{gen}"


def lease_of(access_key: str) -> tuple[int, int] | None:
    """The (job id, generation) an access key id names, or None if it is not a job's."""
    m = ACCESS_KEY.match(access_key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def lease_prefix(access_key: str) -> str:
    """The key prefix of the lease an access key id names, in the site's bucket."""
    ref = lease_of(access_key)
    if ref is None:
        raise ValueError("not a slurm-qpu job's access key id")
    return f"slurm-qpu/job-{ref[0]}.{ref[1]}/"


def job_credentials(job_token: str) -> S3Credentials:
    """The S3 credentials of the lease ``job_token`` belongs to (ValueError if it is not a
    job token)."""
    m = TOKEN.match(job_token)
    if not m:
        raise ValueError("not a slurm-qpu job token")
    mac = hmac.new(job_token.encode(), _SECRET_LABEL, hashlib.sha256).digest()
    return S3Credentials(access_key_id(int(m.group(1)), int(m.group(2))),
                         base64.urlsafe_b64encode(mac).rstrip(b"=").decode())


@dataclass(frozen=True)
class Store:
    """The site's S3 store for a QPU, from its settings."""

    endpoint: str
    bucket: str
    region: str
    credentials: S3Credentials = field(repr=False)
    endpoint_for_service: str = ""  # where the QS service reaches the store, if elsewhere

    @property
    def service_endpoint(self) -> str:
        return (self.endpoint_for_service or self.endpoint).rstrip("/")


# ------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Signed:
    """A SigV4-signed S3 request (or presigned URL) as the job sent it."""

    method: str
    path: str  # as sent (percent-encoded), from which the canonical URI is made
    query: tuple[tuple[str, str], ...]  # decoded, without X-Amz-Signature
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    access_key_id: str
    day: str  # the credential scope's YYYYMMDD
    region: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    signed_headers: tuple[str, ...]
    signature: str
    payload_hash: str
    expires: int | None = None  # presigned URLs only

    @property
    def scope(self) -> str:
        return f"{self.day}/{self.region}/s3/aws4_request"

    @property
    def when(self) -> datetime:
        try:
            return datetime.strptime(self.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise denied(f"invalid request date {self.amz_date!r} (expected "
                         "YYYYMMDDTHHMMSSZ)") from None


def split_query(query: str) -> list[tuple[str, str]]:
    """Query pairs, decoded as S3 does ('+' stays a plus; blank values kept)."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def _credential(text: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
        raise StorageRefused(400, "AuthorizationHeaderMalformed",
                             f"the credential {text!r} is malformed; expected "
                             "<access key id>/<YYYYMMDD>/<region>/s3/aws4_request")
    return parts[0], parts[1], parts[2]


def parse(method: str, path: str, query: str, headers: Iterable[tuple[str, str]]) -> Signed:
    """The SigV4 fields of a request, or StorageRefused when it is not SigV4-signed."""
    lowered: dict[str, str] = {}
    for name, value in headers:
        name, value = name.lower(), " ".join(str(value).split())
        lowered[name] = f"{lowered[name]},{value}" if name in lowered else value
    pairs = split_query(query)
    params = dict(pairs)
    auth = lowered.get("authorization", "")
    if "X-Amz-Credential" in params or "X-Amz-Algorithm" in params:
        return _parse_presigned(method, path, pairs, params, lowered)
    if auth.startswith(ALGORITHM + " "):
        return _parse_header(method, path, pairs, lowered, auth)
    if auth or "AWSAccessKeyId" in params:
        raise StorageRefused(400, "InvalidRequest",
                             "sign S3 requests through the broker with AWS Signature Version "
                             f"4 ({ALGORITHM}); for boto3 presigned URLs use "
                             "Config(signature_version='s3v4')")
    raise denied("S3 requests through the broker must be signed (AWS Signature Version 4) "
                 "with the job's S3 credentials (QRMI_IBM_QS_AWS_ACCESS_KEY_ID and "
                 "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY of the job's environment)")


def _parse_presigned(method: str, path: str, pairs: list[tuple[str, str]],
                     params: dict[str, str], headers: dict[str, str]) -> Signed:
    def need(name: str) -> str:
        value = params.get(name)
        if not value:
            raise StorageRefused(400, "AuthorizationQueryParametersError",
                                 f"the presigned URL has no {name}")
        return value

    if need("X-Amz-Algorithm") != ALGORITHM:
        raise StorageRefused(400, "AuthorizationQueryParametersError",
                             f"X-Amz-Algorithm must be {ALGORITHM}")
    key, day, region = _credential(need("X-Amz-Credential"))
    try:
        expires = int(need("X-Amz-Expires"))
    except ValueError:
        expires = -1
    if not 1 <= expires <= MAX_PRESIGN_SECONDS:
        raise StorageRefused(400, "AuthorizationQueryParametersError",
                             f"X-Amz-Expires must be 1..{MAX_PRESIGN_SECONDS} seconds")
    return Signed(method.upper(), path, tuple(p for p in pairs if p[0] != "X-Amz-Signature"),
                  headers, key, day, region, need("X-Amz-Date"),
                  tuple(need("X-Amz-SignedHeaders").lower().split(";")),
                  need("X-Amz-Signature"), params.get("X-Amz-Content-Sha256") or
                  UNSIGNED_PAYLOAD, expires)


def _parse_header(method: str, path: str, pairs: list[tuple[str, str]],
                  headers: dict[str, str], auth: str) -> Signed:
    fields: dict[str, str] = {}
    for part in auth[len(ALGORITHM):].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value.strip()
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise StorageRefused(400, "AuthorizationHeaderMalformed",
                             "the Authorization header needs Credential, SignedHeaders and "
                             "Signature")
    key, day, region = _credential(fields["Credential"])
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise denied("S3 requests through the broker need an x-amz-date header")
    payload = headers.get("x-amz-content-sha256")
    if not payload:
        raise StorageRefused(400, "InvalidRequest",
                             "Missing required header for this request: x-amz-content-sha256")
    return Signed(method.upper(), path, tuple(pairs), headers, key, day, region, amz_date,
                  tuple(fields["SignedHeaders"].lower().split(";")), fields["Signature"],
                  payload)


# ------------------------------------------------------------------------- verification

def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(canonical_request.encode()).hexdigest()])


def verify(signed: Signed, credentials: S3Credentials, now: datetime) -> None:
    """StorageRefused unless ``credentials`` made ``signed``'s signature and it is current."""
    if signed.access_key_id != credentials.access_key_id:
        raise StorageRefused(403, "InvalidAccessKeyId",
                             f"S3 access key {signed.access_key_id} is not this job's")
    when = signed.when
    if signed.amz_date[:8] != signed.day:
        raise StorageRefused(400, "AuthorizationHeaderMalformed",
                             f"the credential's date {signed.day} is not the request's date "
                             f"{signed.amz_date[:8]}")
    if when - now > MAX_SKEW:  # (a date near the end of time must not overflow below)
        raise StorageRefused(403, "RequestTimeTooSkewed",
                             "The difference between the request time and the current time "
                             "is too large.")
    if signed.expires is not None:
        if now - when > timedelta(seconds=signed.expires):
            raise denied(f"Request has expired: the presigned URL expired at "
                         f"{when + timedelta(seconds=signed.expires):%Y-%m-%dT%H:%M:%SZ}")
    elif now - when > MAX_SKEW:
        raise StorageRefused(403, "RequestTimeTooSkewed",
                             "The difference between the request time and the current time "
                             "is too large.")
    if "host" not in signed.signed_headers:
        raise StorageRefused(400, "AuthorizationHeaderMalformed",
                             "The host header must be signed.")
    block = "".join(f"{name}:{signed.headers.get(name, '')}\n"
                    for name in signed.signed_headers)
    rest = [canonical_query(signed.query), block, ";".join(signed.signed_headers),
            signed.payload_hash]
    key = signing_key(credentials.secret_access_key, signed.day, signed.region)
    # S3 canonicalises the path as sent; clients that leave a character unencoded sign it
    # either way, so both readings are tried
    for uri in dict.fromkeys((signed.path or "/", canonical_uri(signed.path))):
        canonical = "\n".join([signed.method, uri, *rest])
        good = sign_string(key, _string_to_sign(signed.amz_date, signed.scope, canonical))
        if hmac.compare_digest(good, signed.signature.strip().lower()):
            return
    raise StorageRefused(403, "SignatureDoesNotMatch",
                         "The request signature we calculated does not match the signature "
                         "you provided: sign with the job's S3 secret "
                         "(QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY of the job's environment).")


@dataclass(frozen=True)
class Place:
    """Where a job's S3 request goes in the site's store."""

    path: str  # below the store's endpoint: bucket, the lease's prefix, the job's key
    query: list[tuple[str, str]]  # decoded, listings confined to the prefix
    prefix: str  # the lease's, to take off the keys in the answer
    names_keys: bool = False  # the answer names keys (listings, multipart uploads)

    def unprefixed(self, body: bytes) -> bytes:
        """The store's answer as the job must see it: keys without the lease's prefix
        (as sent, or URL-encoded for ``encoding-type=url``)."""
        elements = "|".join(_KEY_ELEMENTS).encode()
        for prefix in dict.fromkeys((self.prefix, quote(self.prefix, safe=""))):
            pattern = re.compile(b"<(" + elements + b")>" + re.escape(prefix.encode()))
            body = pattern.sub(rb"<\1>", body)
        return body


def place(method: str, bucket_and_key: str, query: Sequence[tuple[str, str]], store: Store,
          prefix: str) -> Place:
    """Where a job's request (path below its S3 route: ``<bucket>/<key>``, as sent) goes in
    the site's store, or StorageRefused: the job may use its own objects (under the lease's
    ``prefix`` of the configured bucket), list them and head the bucket, nothing else."""
    raw_bucket, _, key = bucket_and_key.partition("/")
    bucket = unquote(raw_bucket)
    # the storage URLs of a job's request never met the server's path checks
    if any(segment in (".", "..") for segment in unquote(bucket_and_key).split("/")):
        raise denied("object paths with '.' or '..' segments are not allowed")
    if not bucket:
        raise denied(f"listing buckets is not available through the broker; this job's "
                     f"bucket is {store.bucket}")
    if bucket != store.bucket:
        raise denied(f"this job may use the bucket {store.bucket} only, not {bucket}")
    names = [name for name, _ in query]
    names_keys = True
    if key:
        allowed = OBJECT_QUERY
        if method not in ("GET", "HEAD", "PUT", "DELETE", "POST") or (
                method == "POST" and not {"uploads", "uploadId"} & set(names)):
            raise denied(f"{method} on an object is not available to jobs through the broker")
        pairs = list(query)
        # a multipart upload's start, end and parts list; an object itself is the job's data
        names_keys = method == "POST" or (method == "GET" and "uploadId" in names)
    elif method == "GET":  # a listing: inside the lease's prefix only
        allowed = LISTING_QUERY
        given = dict(query)
        pairs = [(k, v) for k, v in query if k not in _PREFIXED_QUERY]
        pairs += [(k, prefix + given.get(k, "")) for k in _PREFIXED_QUERY
                  if k == "prefix" or k in given]
    elif method == "HEAD" and set(names) <= {"x-id"}:
        allowed, pairs, names_keys = OBJECT_QUERY, list(query), False
    elif method == "POST" and "delete" in names:
        raise denied("deleting several objects in one request (DeleteObjects) is not "
                     "available through the broker; delete them one by one")
    else:
        raise denied(f"creating, deleting or configuring the bucket {bucket} is not "
                     "available to jobs")
    for name in names:
        if name not in allowed:
            raise denied(f"the S3 sub-resource or parameter '{name}' is not available to jobs "
                         "through the broker")
    return Place(f"{raw_bucket}/{quote(prefix)}{key}" if key else raw_bucket, pairs, prefix,
                 names_keys)


def store_headers(headers: dict[str, str]) -> dict[str, str]:
    """The job's headers that go on to the store (STORE_HEADERS says why each is safe), or
    StorageRefused for an x-amz-* header that is not among them."""
    out = {}
    for name, value in headers.items():
        if name in STORE_HEADERS or name.startswith(STORE_HEADER_PREFIXES):
            out[name] = value
        elif name.startswith("x-amz-") and name not in IGNORED_AMZ_HEADERS:
            what = next((why for start, why in _REFUSED_HEADERS if name.startswith(start)),
                        None)
            raise denied(f"{what} are not available to jobs (S3 header {name})" if what else
                         f"the S3 header {name} is not available to jobs through the broker")
    return out


# ------------------------------------------------------------------------- re-signing

@dataclass
class Outgoing:
    """The request to send the store in place of the job's (a view.Forward)."""

    method: str
    url: str
    headers: dict[str, str]
    rechunk: ChunkResigner | None = None  # for chunk-signed aws-chunked bodies
    hide: tuple[str, ...] = ()  # the site's access key id: masked in the store's errors
    unprefixed: Callable[[bytes], bytes] = lambda body: body  # keys as the job knows them
    names_keys: bool = False  # the answer names keys (Place.names_keys)

    def masked(self, body: bytes) -> bytes:
        for text in self.hide:
            body = body.replace(text.encode(), b"(the site's access key)")
        return body

    def body(self, stream: Iterator[bytes], hold: Callable[[int], None]) -> Iterator[bytes]:
        if self.rechunk is None:
            return stream
        self.rechunk.hold = hold
        return self.rechunk(stream)

    def reads_answer(self, status: int) -> bool:
        # answers that name keys (listings, multipart uploads, errors: decided by what was
        # asked, never by what the store says the answer is) are read, to take the lease's
        # prefix off the keys; objects stream as they are
        return status >= 400 or self.names_keys

    def answer(self, status: int, body: bytes) -> bytes:
        return self.unprefixed(self.masked(body) if status >= 400 else body)


def forward(signed: Signed, rest: str, store: Store, job: S3Credentials,
            now: datetime) -> Outgoing:
    """Check the job's request (``rest``: its path below /p/<qpu>/, ``s3/<bucket>/<key>``)
    and sign it again with the site's credentials for the real store."""
    verify(signed, job, now)
    if signed.region != store.region:
        raise StorageRefused(400, "AuthorizationHeaderMalformed",
                             f"the region '{signed.region}' is wrong; expecting "
                             f"'{store.region}'")
    target = place(signed.method, rest.removeprefix(ROUTE).lstrip("/"),
                   [(k, v) for k, v in signed.query
                    if signed.expires is None or k not in _AUTH_PARAMS], store,
                   lease_prefix(job.access_key_id))
    payload = signed.payload_hash
    if payload.startswith("STREAMING-") and payload not in (SIGNED_CHUNKS, UNSIGNED_TRAILER):
        raise StorageRefused(501, "NotImplemented",
                             f"uploads signed as {payload} are not supported through the "
                             f"broker; use {SIGNED_CHUNKS}, {UNSIGNED_TRAILER} or a single "
                             "chunk")
    url = f"{store.endpoint.rstrip('/')}/{target.path}" + \
        (f"?{canonical_query(target.query)}" if target.query else "")
    when = now.astimezone(UTC).replace(microsecond=0)
    headers = store_headers(signed.headers)
    headers.update({"host": httpx.URL(url).netloc.decode("ascii"),
                    "x-amz-date": f"{when:%Y%m%dT%H%M%SZ}", "x-amz-content-sha256": payload})
    to_sign = {k: v for k, v in headers.items()
               if k in _SIGNED_PLAIN or k.startswith("x-amz-")}
    headers["authorization"] = authorization(store.credentials, store.region, signed.method,
                                             url, to_sign, payload, when)
    rechunk = None
    if payload == SIGNED_CHUNKS:
        site_key = signing_key(store.credentials.secret_access_key, f"{when:%Y%m%d}",
                               store.region)
        rechunk = ChunkResigner(
            signing_key(job.secret_access_key, signed.day, signed.region), signed.amz_date,
            signed.scope, signed.signature.lower(), site_key, headers["x-amz-date"],
            f"{when:%Y%m%d}/{store.region}/s3/aws4_request",
            headers["authorization"].rsplit("Signature=", 1)[1])
    return Outgoing(signed.method, url, headers, rechunk, (store.credentials.access_key_id,),
                    target.unprefixed, target.names_keys)


def chunk_signature(key: bytes, amz_date: str, scope: str, previous: str,
                    data: bytes) -> str:
    """The signature of one chunk of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body."""
    return sign_string(key, "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                                       EMPTY_SHA256, hashlib.sha256(data).hexdigest()]))


@dataclass
class ChunkResigner:
    """Re-signs a chunk-signed aws-chunked body as it streams. Each chunk's signature chains
    from the previous one, starting at the request's (seed) signature: the job's chain is
    checked and the site's written in its place, at the same length (Content-Length
    holds)."""

    job_key: bytes
    job_date: str
    job_scope: str
    job_seed: str
    site_key: bytes
    site_date: str
    site_scope: str
    site_seed: str
    # told each chunk's size before the chunk is held whole (the broker counts it in its
    # memory budget, and may refuse it)
    hold: Callable[[int], None] | None = field(default=None, compare=False)

    def __call__(self, stream: Iterable[bytes]) -> Iterator[bytes]:
        source = iter(stream)
        buffer = bytearray()
        job_prev, site_prev = self.job_seed, self.site_seed

        def more() -> None:
            data = next(source, None)
            if data is None:
                raise StorageRefused(400, "IncompleteBody",
                                     "the aws-chunked body ends inside a chunk")
            buffer.extend(data)

        while True:
            while (end := buffer.find(b"\r\n")) < 0:
                if len(buffer) > 4096:
                    raise StorageRefused(400, "InvalidRequest",
                                         "an aws-chunked chunk header is too long")
                more()
            header = bytes(buffer[:end]).decode("latin-1")
            size_text, _, extension = header.partition(";")
            name, _, signature = extension.partition("=")
            try:
                size = int(size_text.strip(), 16)
            except ValueError:
                size = -1
            if size < 0 or size > MAX_CHUNK or name.strip() != "chunk-signature":
                raise StorageRefused(400, "InvalidRequest",
                                     f"bad aws-chunked chunk header {header[:60]!r}")
            if self.hold is not None:
                self.hold(size)
            while len(buffer) < end + 2 + size + 2:
                more()
            data = bytes(buffer[end + 2:end + 2 + size])
            if buffer[end + 2 + size:end + 4 + size] != b"\r\n":
                raise StorageRefused(400, "IncompleteBody",
                                     "an aws-chunked chunk is longer than declared")
            del buffer[:end + 4 + size]
            expected = chunk_signature(self.job_key, self.job_date, self.job_scope, job_prev,
                                       data)
            if not hmac.compare_digest(expected, signature.strip().lower()):
                raise StorageRefused(403, "SignatureDoesNotMatch",
                                     "a chunk signature of the upload does not match: sign "
                                     "with the job's S3 secret")
            job_prev = expected
            site_prev = chunk_signature(self.site_key, self.site_date, self.site_scope,
                                        site_prev, data)
            yield f"{size:x};chunk-signature={site_prev}\r\n".encode() + data + b"\r\n"
            if size == 0:
                break
        if buffer:  # anything after the final chunk goes on as sent
            yield bytes(buffer)
        yield from source


# ------------------------------------------------------------------------- job bodies

def replace_presigned(url: str, method: str, route: str, job: S3Credentials, store: Store,
                      now: datetime) -> str:
    """A URL the job presigned (with its credentials, for its S3 route ``route``, e.g.
    ``/p/ibm_kawasaki/s3/``) for ``method``, checked and replaced by one for the same object
    presigned with the site's key for the address the service reaches the store at, expiring
    when the job's would have."""
    parts = urlsplit(url)
    at = parts.path.find(route)
    if parts.scheme not in ("http", "https") or at < 0:
        raise denied(f"not a URL of this job's S3 route (…{route.rstrip('/')}): presign it "
                     "with the job's S3 settings (QRMI_IBM_QS_S3_ENDPOINT)")
    if "X-Amz-Signature=" not in parts.query:
        raise denied("not a presigned URL (AWS Signature Version 4)")
    signed = parse(method, parts.path, parts.query, [("host", parts.netloc)])
    if signed.signed_headers != ("host",):
        raise denied(f"the URL signs headers other than host "
                     f"({';'.join(signed.signed_headers)}), which the service cannot send")
    try:
        verify(signed, job, now)
    except StorageRefused as exc:
        if exc.code == "SignatureDoesNotMatch":
            exc.message = f"the signature does not match a presigned {method} with the " \
                          "job's S3 credentials"
        raise
    target = place(method, parts.path[at + len(route):],
                   [(k, v) for k, v in signed.query if k not in _AUTH_PARAMS], store,
                   lease_prefix(job.access_key_id))
    if not target.path.partition("/")[2].removeprefix(quote(target.prefix)):
        raise denied("a storage URL must name an object")
    left = (signed.when + timedelta(seconds=signed.expires or 0) - now).total_seconds()
    url = f"{store.service_endpoint}/{target.path}" + \
        (f"?{canonical_query(target.query)}" if target.query else "")
    return presign(store.credentials, store.region, method, url,
                   max(1, min(int(left), MAX_PRESIGN_SECONDS)),
                   now.astimezone(UTC).replace(microsecond=0))
