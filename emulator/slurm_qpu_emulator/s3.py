"""A minimal S3-compatible object store: the storage of the emulated IBM Quantum System API.

The Quantum System API never carries job data itself: the client puts the input into an S3
bucket and hands the service presigned URLs (GET input, PUT results and logs). This store is
mounted at the root prefix ``""`` with path-style addressing (``/<bucket>/<key>``); the
emulator's other services have longer prefixes, so they win the dispatch.

Operations: PUT/GET/HEAD/DELETE object, PUT/HEAD/DELETE bucket, ListObjectsV2
(``GET /<bucket>?list-type=2`` with ``prefix``, ``max-keys``, ``continuation-token``,
``start-after``), ListBuckets (``GET /``). Errors are S3's XML ``<Error>`` documents.

What authentication checks (like S3, but one fixed key pair, config.s3_access_key/_secret_key):

- ``Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``: the access
  key must be ours and the credential scope's region config.s3_region; the SigV4 signature is
  recomputed over the canonical request and compared; ``x-amz-date`` must be within 15
  minutes of now; ``x-amz-content-sha256`` is required and, when it is a hex digest, must be
  the body's SHA-256.
- Presigned URLs (``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
  ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` in the query): same key, region and signature
  checks (payload ``UNSIGNED-PAYLOAD``), and "Request has expired" once X-Amz-Date + expires
  has passed.
- Anything else (anonymous, SigV2) is refused.

Bodies: ``Content-Encoding: aws-chunked`` is decoded, with chunk signatures
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``) or without (``STREAMING-UNSIGNED-PAYLOAD-
TRAILER``); the decoded size must equal ``x-amz-decoded-content-length``. Chunk and trailer
signatures are *not* verified (the seed signature in the Authorization header is). Checksums
sent as headers or trailers (``x-amz-checksum-crc32``/``-sha1``/``-sha256``, ``Content-MD5``)
are verified; CRC32C and CRC64NVME are accepted unverified (no stdlib implementation).
Checksums inside a presigned URL's query are ignored, as the Rust SDK signs one for an empty
body. ``Expect: 100-continue`` is answered by the HTTP server.

Known limits: no virtual-hosted addressing, multipart upload, versioning, ACLs or Range; the
emulator's router drops query parameters with empty values, so a header-signed request
carrying one (e.g. ``prefix=``) fails signature verification. Objects live in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import formatdate
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.web import Request, Response, Service

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60  # seconds S3 tolerates between a signed request's date and its clock
MAX_PRESIGN = 7 * 24 * 3600  # the longest X-Amz-Expires S3 accepts

_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_DEFAULT_CODES = {400: "InvalidRequest", 401: "AccessDenied", 403: "AccessDenied",
                  404: "NoSuchKey", 405: "MethodNotAllowed", 409: "OperationAborted",
                  429: "SlowDown", 500: "InternalError", 501: "NotImplemented",
                  503: "ServiceUnavailable"}


class S3Error(Exception):
    """An S3 error: answered as an XML ``<Error>`` with this code."""

    def __init__(self, status: int, code: str, message: str, **details: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist",
                   BucketName=bucket)


def no_such_key(bucket: str, key: str) -> S3Error:
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key,
                   BucketName=bucket)


@dataclass
class StoredObject:
    data: bytes
    content_type: str = "binary/octet-stream"
    modified: float = field(default_factory=time.time)
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-*
    checksums: dict[str, str] = field(default_factory=dict)  # x-amz-checksum-<alg>: base64

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.data, usedforsecurity=False).hexdigest() + '"'


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: Mapping[str, list[str]], skip: str = "") -> str:
    pairs = sorted((_encode(k), _encode(v)) for k, vs in query.items() if k != skip for v in vs)
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: Message, names: list[str]) -> str:
    lines = []
    for name in names:
        values = headers.get_all(name) or []
        joined = ",".join(" ".join(str(v).split()) for v in values)
        lines.append(f"{name}:{joined}\n")
    return "".join(lines)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_amz_date(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise S3Error(403, "AccessDenied", f"Invalid date {text!r}: expected yyyyMMddTHHmmssZ") \
            from None


# -- checksums -------------------------------------------------------------------------------
def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


_CHECKSUMS: dict[str, Callable[[bytes], bytes]] = {
    "crc32": _crc32,
    "sha1": lambda d: hashlib.sha1(d, usedforsecurity=False).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}
_UNVERIFIED = ("crc32c", "crc64nvme")


def verify_checksum(name: str, value: str, data: bytes) -> None:
    """``name`` is the algorithm (``crc32``…); ``value`` the base64 digest the client sent."""
    compute = _CHECKSUMS.get(name)
    if compute is None:
        if name in _UNVERIFIED:
            return
        raise S3Error(400, "InvalidRequest", f"Unsupported checksum algorithm {name!r}")
    if base64.b64encode(compute(data)).decode() != value.strip():
        raise S3Error(400, "BadDigest",
                      f"The {name.upper()} you specified did not match the calculated checksum.")


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload of an ``aws-chunked`` body and its trailers (lower-case names)."""
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise S3Error(400, "IncompleteBody", "The aws-chunked body ends inside a chunk header.")
        header = body[pos:end].decode("latin-1")
        try:
            size = int(header.split(";")[0].strip(), 16)
        except ValueError:
            raise S3Error(400, "InvalidRequest",
                          f"Bad aws-chunked chunk header {header[:40]!r}") from None
        pos = end + 2
        if size == 0:
            break
        if pos + size + 2 > len(body) or body[pos + size:pos + size + 2] != b"\r\n":
            raise S3Error(400, "IncompleteBody", "An aws-chunked chunk is shorter than declared.")
        out += body[pos:pos + size]
        pos += size + 2
    trailers: dict[str, str] = {}
    for line in body[pos:].decode("latin-1").split("\r\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            trailers[name.strip().lower()] = value.strip()
    return bytes(out), trailers


# -- the service ------------------------------------------------------------------------------
class S3Service(Service):
    name = "s3"

    def __init__(self, config: EmulatorConfig, prefix: str = "") -> None:
        super().__init__(prefix)
        self.config = config
        self.clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, StoredObject]] = {config.s3_bucket: {}}
        self.seen_bases: set[str] = set()  # scheme://host:port clients used to reach us

    # -- Python API (for the Quantum System service and tests) ---------------------------------
    def create_bucket(self, bucket: str) -> None:
        with self._lock:
            self._buckets.setdefault(bucket, {})

    def put(self, bucket: str, key: str, data: bytes,
            content_type: str = "binary/octet-stream") -> None:
        with self._lock:
            if bucket not in self._buckets:
                raise no_such_bucket(bucket)
            self._buckets[bucket][key] = StoredObject(data, content_type, self.clock())

    def get(self, bucket: str, key: str) -> bytes:
        return self._object(bucket, key).data

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            if bucket not in self._buckets:
                raise no_such_bucket(bucket)
            return sorted(self._buckets[bucket])

    def serve_url(self, method: str, url: str, body: bytes = b"") -> Response:
        """Answer a request for ``url`` (e.g. a presigned URL naming this store) without
        going through the network; authentication is checked exactly as for a client."""
        parts = urlsplit(url)
        headers = Message()
        headers["Host"] = parts.netloc
        if body:
            headers["Content-Length"] = str(len(body))
        request = Request(method, parts.path or "/", parse_qs(parts.query), headers, body,
                          f"{parts.scheme}://{parts.netloc}")
        return self.dispatch(request)

    # -- routing ------------------------------------------------------------------------------
    def error(self, status: int, message: str) -> Response:
        return self._error(S3Error(status, _DEFAULT_CODES.get(status, "InternalError"),
                                   message))

    def _error(self, exc: S3Error, resource: str = "") -> Response:
        details = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in exc.details.items())
        request_id = secrets.token_hex(8).upper()
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
               f"<Error><Code>{exc.code}</Code><Message>{escape(exc.message)}</Message>"
               f"{details}<Resource>{escape(resource)}</Resource>"
               f"<RequestId>{request_id}</RequestId></Error>")
        return Response(exc.status, xml.encode(), "application/xml",
                        {"x-amz-request-id": request_id})

    def dispatch(self, request: Request) -> Response:
        with self._lock:
            self.seen_bases.add(request.base_url)
        path = request.path
        try:
            if request.method == "POST":
                # before authentication: these requests carry blank-valued subresources
                # (?delete, ?uploads) that the router drops, so their signatures cannot match
                raise S3Error(501, "NotImplemented", "POST operations (DeleteObjects, "
                                                     "multipart uploads) are not supported "
                                                     "here.")
            self._authenticate(request)
            body, checksums = self._payload(request) if request.method == "PUT" else (b"", {})
            bucket, _, raw_key = path.lstrip("/").partition("/")
            bucket, key = unquote(bucket), unquote(raw_key)
            if not bucket:
                if request.method != "GET":
                    raise S3Error(405, "MethodNotAllowed",
                                  "The specified method is not allowed against this resource.")
                return self._list_buckets()
            if not key:
                return self._bucket_op(request, bucket)
            return self._object_op(request, bucket, key, body, checksums)
        except S3Error as exc:
            return self._error(exc, unquote(path))

    def _bucket_op(self, request: Request, bucket: str) -> Response:
        method = request.method
        with self._lock:
            exists = bucket in self._buckets
            if method == "PUT":
                if exists:
                    raise S3Error(409, "BucketAlreadyOwnedByYou",
                                  "Your previous request to create the named bucket succeeded "
                                  "and you already own it.", BucketName=bucket)
                self._buckets[bucket] = {}
                return Response(200, b"", "", {"Location": f"/{bucket}"})
            if not exists:
                raise no_such_bucket(bucket)
            if method == "HEAD":
                return Response(200, b"", "application/xml",
                                {"x-amz-bucket-region": self.config.s3_region})
            if method == "DELETE":
                if self._buckets[bucket]:
                    raise S3Error(409, "BucketNotEmpty",
                                  "The bucket you tried to delete is not empty",
                                  BucketName=bucket)
                del self._buckets[bucket]
                return Response.empty()
            if method == "GET":
                return self._list_objects(request, bucket, dict(self._buckets[bucket]))
        raise S3Error(405, "MethodNotAllowed",
                      "The specified method is not allowed against this resource.")

    def _object_op(self, request: Request, bucket: str, key: str, body: bytes,
                   checksums: dict[str, str]) -> Response:
        method = request.method
        if method == "PUT":
            if request.header("x-amz-copy-source"):
                raise S3Error(501, "NotImplemented", "CopyObject is not supported here.")
            meta = {k.lower(): str(v) for k, v in request.headers.items()
                    if k.lower().startswith("x-amz-meta-")}
            stored = StoredObject(body, request.header("Content-Type") or "binary/octet-stream",
                                  self.clock(), meta, checksums)
            with self._lock:
                if bucket not in self._buckets:
                    raise no_such_bucket(bucket)
                self._buckets[bucket][key] = stored
            return Response(200, b"", "", {"ETag": stored.etag, **checksums})
        if method == "DELETE":
            with self._lock:
                if bucket not in self._buckets:
                    raise no_such_bucket(bucket)
                self._buckets[bucket].pop(key, None)
            return Response.empty()
        if method in ("GET", "HEAD"):
            obj = self._object(bucket, key)
            headers = {"ETag": obj.etag, "Last-Modified": formatdate(obj.modified, usegmt=True),
                       "Accept-Ranges": "bytes", **obj.metadata}
            if request.header("x-amz-checksum-mode").upper() == "ENABLED":
                headers.update(obj.checksums)  # the SDK then validates what it downloads
            # HEAD: the server sends Content-Length of this body but not the body itself
            return Response(200, obj.data, obj.content_type, headers)
        raise S3Error(405, "MethodNotAllowed",
                      "The specified method is not allowed against this resource.")

    def _object(self, bucket: str, key: str) -> StoredObject:
        with self._lock:
            objects = self._buckets.get(bucket)
            if objects is None:
                raise no_such_bucket(bucket)
            obj = objects.get(key)
        if obj is None:
            raise no_such_key(bucket, key)
        return obj

    def _list_buckets(self) -> Response:
        with self._lock:
            names = sorted(self._buckets)
        items = "".join(f"<Bucket><Name>{escape(n)}</Name>"
                        f"<CreationDate>{_iso(0)}</CreationDate></Bucket>" for n in names)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="{_S3_NS}">'
               f"<Owner><ID>emulator</ID></Owner><Buckets>{items}</Buckets>"
               "</ListAllMyBucketsResult>")
        return Response(200, xml.encode(), "application/xml")

    def _list_objects(self, request: Request, bucket: str,
                      objects: dict[str, StoredObject]) -> Response:
        prefix = request.arg("prefix", "") or ""
        after = request.arg("continuation-token") or request.arg("start-after") or ""
        try:
            max_keys = int(request.arg("max-keys", "1000") or "1000")
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-keys must be an integer") from None
        keys = [k for k in sorted(objects) if k.startswith(prefix) and k > after]
        page, truncated = keys[:max_keys], len(keys) > max_keys
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(objects[k].modified)}"
            f"</LastModified><ETag>{escape(objects[k].etag)}</ETag>"
            f"<Size>{len(objects[k].data)}</Size><StorageClass>STANDARD</StorageClass>"
            "</Contents>" for k in page)
        token = request.arg("continuation-token")
        extra = (f"<ContinuationToken>{escape(token)}</ContinuationToken>" if token else "")
        if truncated:
            extra += f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>"
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_S3_NS}">'
               f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
               f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
               f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{extra}"
               f"{contents}</ListBucketResult>")
        return Response(200, xml.encode(), "application/xml")

    # -- authentication -----------------------------------------------------------------------
    def _authenticate(self, request: Request) -> None:
        auth = request.header("Authorization")
        if request.arg("X-Amz-Credential") is not None or request.arg("X-Amz-Algorithm"):
            self._check_presigned(request)
        elif request.arg("AWSAccessKeyId") is not None and not auth:
            self._check_presigned_v2(request)
        elif auth.startswith(ALGORITHM + " "):
            self._check_header_signature(request, auth)
        elif auth:
            raise S3Error(400, "InvalidRequest", "The authorization mechanism you have "
                                                 "provided is not supported. Please use "
                                                 f"{ALGORITHM}.")
        else:
            raise S3Error(403, "AccessDenied", "Access Denied")

    def _scope(self, credential: str) -> tuple[str, str]:
        """Check ``AK/date/region/s3/aws4_request``; return (date, scope)."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          f"The credential {credential!r} is malformed; expected "
                          "\"<AccessKeyId>/<date>/<region>/s3/aws4_request\".")
        key, date, region = parts[0], parts[1], parts[2]
        if key != self.config.s3_access_key:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does "
                                                     "not exist in our records.",
                          AWSAccessKeyId=key)
        if region != self.config.s3_region:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; the region '{region}' is "
                          f"wrong; expecting '{self.config.s3_region}'",
                          Region=self.config.s3_region)
        return date, "/".join(parts[1:])

    def _verify(self, request: Request, amz_date: str, date: str, scope: str,
                signed_headers: str, payload_hash: str, signature: str, skip: str = "") -> None:
        names = [h for h in signed_headers.lower().split(";") if h]
        if "host" not in names:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The host header must be signed.")
        canonical = "\n".join([
            request.method,
            quote(unquote(request.path), safe="/~"),
            canonical_query(request.query, skip),
            canonical_headers(request.headers, names),
            ";".join(names),
            payload_hash])
        to_sign = "\n".join([ALGORITHM, amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        region = scope.split("/")[1]
        good = hmac.new(signing_key(self.config.s3_secret_key, date, region), to_sign.encode(),
                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, signature.strip().lower()):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.",
                          StringToSign=to_sign, CanonicalRequest=canonical)

    def _check_presigned(self, request: Request) -> None:
        def need(name: str) -> str:
            value = request.arg(name)
            if not value:
                raise S3Error(400, "AuthorizationQueryParametersError",
                              f"Query-string authentication version 4 requires the "
                              f"X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
                              f"X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters; "
                              f"{name} is missing.")
            return value

        if need("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          f"X-Amz-Algorithm only supports \"{ALGORITHM}\"")
        date, scope = self._scope(need("X-Amz-Credential"))
        amz_date = need("X-Amz-Date")
        try:
            expires = int(need("X-Amz-Expires"))
        except ValueError:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires should be a number") from None
        if not 0 <= expires <= MAX_PRESIGN:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires must be less than a week (in seconds) that is "
                          "604800")
        if self.clock() > _parse_amz_date(amz_date) + expires:
            raise S3Error(403, "AccessDenied", "Request has expired",
                          Expires=_iso(_parse_amz_date(amz_date) + expires),
                          ServerTime=_iso(self.clock()))
        self._verify(request, amz_date, date, scope, need("X-Amz-SignedHeaders"),
                     request.arg("X-Amz-Content-Sha256") or UNSIGNED, need("X-Amz-Signature"),
                     skip="X-Amz-Signature")

    def _check_presigned_v2(self, request: Request) -> None:
        """Query-string SigV2 (boto3's default for ``generate_presigned_url``)."""
        key = request.arg("AWSAccessKeyId") or ""
        if key != self.config.s3_access_key:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does "
                                                     "not exist in our records.",
                          AWSAccessKeyId=key)
        try:
            expires = int(request.arg("Expires") or "")
        except ValueError:
            raise S3Error(403, "AccessDenied", "Query-string authentication requires the "
                                               "Signature, Expires and AWSAccessKeyId "
                                               "parameters") from None
        if self.clock() > expires:
            raise S3Error(403, "AccessDenied", "Request has expired", Expires=_iso(expires),
                          ServerTime=_iso(self.clock()))
        amz = sorted((k.lower(), " ".join(str(v).split())) for k, v in request.headers.items()
                     if k.lower().startswith("x-amz-"))
        to_sign = "\n".join([request.method, request.header("Content-MD5"),
                             request.header("Content-Type"), str(expires),
                             "".join(f"{k}:{v}\n" for k, v in amz) + request.path])
        good = base64.b64encode(hmac.new(self.config.s3_secret_key.encode(), to_sign.encode(),
                                         hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(good, request.arg("Signature") or ""):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.",
                          StringToSign=to_sign)

    def _check_header_signature(self, request: Request, auth: str) -> None:
        fields: dict[str, str] = {}
        for part in auth[len(ALGORITHM):].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; it needs Credential, "
                          "SignedHeaders and Signature.")
        date, scope = self._scope(fields["Credential"])
        amz_date = request.header("x-amz-date")
        if not amz_date:
            raise S3Error(403, "AccessDenied",
                          "AWS authentication requires a valid Date or x-amz-date header")
        if abs(self.clock() - _parse_amz_date(amz_date)) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request "
                                                       "time and the current time is too large.")
        payload_hash = request.header("x-amz-content-sha256")
        if not payload_hash:
            raise S3Error(400, "InvalidRequest",
                          "Missing required header for this request: x-amz-content-sha256")
        if re.fullmatch(r"[0-9a-f]{64}", payload_hash) and \
                hashlib.sha256(request.body).hexdigest() != payload_hash:
            raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                                                            "header does not match what was "
                                                            "computed.")
        self._verify(request, amz_date, date, scope, fields["SignedHeaders"], payload_hash,
                     fields["Signature"])

    # -- request bodies ------------------------------------------------------------------------
    def _payload(self, request: Request) -> tuple[bytes, dict[str, str]]:
        """The object bytes of a PUT (aws-chunked decoded) and the checksums the client sent
        (``x-amz-checksum-<alg>`` header -> base64 value), verified where we can."""
        body = request.body
        encodings = [e.strip().lower() for e in request.header("Content-Encoding").split(",")]
        streaming = request.header("x-amz-content-sha256").startswith("STREAMING-")
        trailers: dict[str, str] = {}
        if "aws-chunked" in encodings or streaming:
            body, trailers = decode_aws_chunked(body)
            declared = request.header("x-amz-decoded-content-length")
            if declared and int(declared) != len(body):
                raise S3Error(400, "IncompleteBody", "You did not provide the number of bytes "
                                                     "specified by the "
                                                     "x-amz-decoded-content-length header.")
        sent: dict[str, str] = {k.lower(): str(v) for k, v in request.headers.items()}
        sent.update(trailers)
        checksums = {name: value for name, value in sent.items()
                     if name.startswith("x-amz-checksum-")
                     and name not in ("x-amz-checksum-type", "x-amz-checksum-algorithm")}
        for name, value in checksums.items():
            verify_checksum(name.removeprefix("x-amz-checksum-"), value, body)
        md5 = sent.get("content-md5")
        if md5 and base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode() \
                != md5.strip():
            raise S3Error(400, "BadDigest",
                          "The Content-MD5 you specified did not match what we received.")
        return body, checksums

def presign(config: EmulatorConfig, method: str, url: str, expires: int,
            now: float | None = None) -> str:
    """A SigV4 presigned URL for ``url`` with the emulator's key pair (used by tests and by
    anything in the emulator that needs to hand out storage URLs)."""
    parts = urlsplit(url)
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    amz_date, date = stamp.strftime("%Y%m%dT%H%M%SZ"), stamp.strftime("%Y%m%d")
    scope = f"{date}/{config.s3_region}/s3/aws4_request"
    query: dict[str, list[str]] = {
        **parse_qs(parts.query),
        "X-Amz-Algorithm": [ALGORITHM],
        "X-Amz-Credential": [f"{config.s3_access_key}/{scope}"],
        "X-Amz-Date": [amz_date], "X-Amz-Expires": [str(expires)],
        "X-Amz-SignedHeaders": ["host"]}
    headers = Message()
    headers["Host"] = parts.netloc
    canonical = "\n".join([method, quote(unquote(parts.path), safe="/~"), canonical_query(query),
                           canonical_headers(headers, ["host"]), "host", UNSIGNED])
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(signing_key(config.s3_secret_key, date, config.s3_region), to_sign.encode(),
                   hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{canonical_query(query)}" \
           f"&X-Amz-Signature={sig}"


def object_url(base_url: str, bucket: str, key: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(bucket)}/{quote(key, safe='/~')}"
