"""The emulator's S3-compatible store against boto3 (path-style, SigV4) and raw HTTP."""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import unescape

import boto3
import botocore.httpchecksum
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.s3 import UNSIGNED, S3Error, S3Service, object_url, presign
from slurm_qpu_emulator.web import Fault, Server

BUCKET = "qpu-jobs"


@pytest.fixture
def store(fast_config: EmulatorConfig) -> S3Service:
    return S3Service(fast_config)


@pytest.fixture
def server(serve: Callable[..., Server], store: S3Service) -> Server:
    return serve(store)


def client(server: Server, config: EmulatorConfig, **overrides: Any) -> Any:
    options: dict[str, Any] = {"s3": {"addressing_style": "path"},
                               "retries": {"mode": "standard", "total_max_attempts": 1}}
    signature = overrides.pop("signature_version", None)
    if signature:
        options["signature_version"] = signature
    keys = {"aws_access_key_id": config.s3_access_key,
            "aws_secret_access_key": config.s3_secret_key, "region_name": config.s3_region}
    keys.update(overrides)
    return boto3.client("s3", endpoint_url=server.url, config=Config(**options), **keys)


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def xml_field(body: bytes, name: str) -> str:
    text = body.decode()
    return unescape(text.split(f"<{name}>")[1].split(f"</{name}>")[0])


def test_boto3_put_get_head_list_delete_path_style(server: Server, store: S3Service,
                                                   fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    s3.put_object(Bucket=BUCKET, Key="dir/input 1.json", Body=b'{"a": 1}',
                  ContentType="application/json", Metadata={"owner": "alice"})
    got = s3.get_object(Bucket=BUCKET, Key="dir/input 1.json")
    assert got["Body"].read() == b'{"a": 1}'
    assert got["ContentType"] == "application/json"
    assert got["Metadata"] == {"owner": "alice"}
    head = s3.head_object(Bucket=BUCKET, Key="dir/input 1.json")
    assert head["ContentLength"] == 8
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/input 1.json"]
    s3.delete_object(Bucket=BUCKET, Key="dir/input 1.json")
    assert store.keys(BUCKET) == []
    # boto3 asks for 100-continue on uploads; the server grants it
    put = next(r for r in server.log if r.method == "PUT")
    assert put.headers.get("expect") == "100-continue"
    assert put.path == "/qpu-jobs/dir/input%201.json"


def test_boto3_list_objects_v2_pages_with_continuation_tokens(
        server: Server, store: S3Service, fast_config: EmulatorConfig) -> None:
    for i in range(5):
        store.put(BUCKET, f"k{i}", b"x")
    pages = client(server, fast_config).get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, PaginationConfig={"PageSize": 2})
    assert [[o["Key"] for o in p["Contents"]] for p in pages] == [["k0", "k1"], ["k2", "k3"],
                                                                   ["k4"]]


def test_boto3_missing_key_and_bucket_are_s3_errors(server: Server,
                                                     fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    with pytest.raises(ClientError) as key:
        s3.get_object(Bucket=BUCKET, Key="nope")
    assert error_code(key.value) == "NoSuchKey"
    assert key.value.response["Error"]["Message"] == "The specified key does not exist."
    with pytest.raises(ClientError) as bucket:
        s3.put_object(Bucket="other", Key="k", Body=b"x")
    assert error_code(bucket.value) == "NoSuchBucket"
    assert bucket.value.response["Error"]["Message"] == "The specified bucket does not exist"


def test_boto3_bucket_create_list_and_delete(server: Server, fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    s3.create_bucket(Bucket="scratch")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["qpu-jobs", "scratch"]
    s3.put_object(Bucket="scratch", Key="k", Body=b"x")
    with pytest.raises(ClientError) as full:
        s3.delete_bucket(Bucket="scratch")
    assert error_code(full.value) == "BucketNotEmpty"
    s3.delete_object(Bucket="scratch", Key="k")
    s3.delete_bucket(Bucket="scratch")
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket="scratch")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_wrong_secret_key_is_signature_does_not_match(server: Server,
                                                      fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config, aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert error_code(exc.value) == "SignatureDoesNotMatch"
    assert exc.value.response["Error"]["Message"].startswith(
        "The request signature we calculated does not match the signature you provided.")


def test_unknown_access_key_is_invalid_access_key_id(server: Server,
                                                     fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config, aws_access_key_id="someone-else")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="k")
    assert error_code(exc.value) == "InvalidAccessKeyId"
    assert exc.value.response["Error"]["Message"] == (
        "The AWS Access Key Id you provided does not exist in our records.")


def test_wrong_region_is_authorization_header_malformed(server: Server,
                                                        fast_config: EmulatorConfig) -> None:
    response = signed(server, fast_config, "GET", "k", region="eu-west-1")
    assert response.status_code == 400
    assert xml_field(response.content, "Code") == "AuthorizationHeaderMalformed"
    assert xml_field(response.content, "Message") == (
        "The authorization header is malformed; the region 'eu-west-1' is wrong; "
        "expecting 'us-east-1'")
    # which is what boto3 needs to follow S3's region redirect by itself
    with pytest.raises(ClientError) as exc:
        client(server, fast_config, region_name="eu-west-1").get_object(Bucket=BUCKET, Key="k")
    assert error_code(exc.value) == "NoSuchKey"


def test_anonymous_request_is_access_denied_xml(server: Server) -> None:
    response = httpx.get(f"{server.url}/{BUCKET}/k")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert xml_field(response.content, "Code") == "AccessDenied"
    assert xml_field(response.content, "Message") == "Access Denied"
    assert xml_field(response.content, "Resource") == "/qpu-jobs/k"


def test_sigv2_authorization_header_is_refused(server: Server) -> None:
    response = httpx.get(f"{server.url}/{BUCKET}/k",
                         headers={"Authorization": "AWS emulator-s3-access:c2lnbmF0dXJl"})
    assert response.status_code == 400
    assert xml_field(response.content, "Message") == (
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256.")


def test_clock_skew_is_request_time_too_skewed(server: Server, store: S3Service,
                                               fast_config: EmulatorConfig) -> None:
    real = store.clock
    store.clock = lambda: real() + 3600
    with pytest.raises(ClientError) as exc:
        client(server, fast_config).get_object(Bucket=BUCKET, Key="k")
    assert error_code(exc.value) == "RequestTimeTooSkewed"
    assert exc.value.response["Error"]["Message"] == (
        "The difference between the request time and the current time is too large.")


def test_presigned_get_and_put_sigv4(server: Server, store: S3Service,
                                     fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config, signature_version="s3v4")
    store.put(BUCKET, "input.json", b"params")
    get = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "input.json"},
                                    ExpiresIn=60)
    assert "X-Amz-Credential=emulator-s3-access" in get
    assert httpx.get(get).content == b"params"
    put = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "out.json"},
                                    ExpiresIn=60)
    assert httpx.put(put, content=b"results").status_code == 200
    assert store.get(BUCKET, "out.json") == b"results"


def test_presigned_get_sigv2_boto3_default(server: Server, store: S3Service,
                                           fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "input.json", b"params")
    url = client(server, fast_config).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "input.json"}, ExpiresIn=60)
    assert "AWSAccessKeyId=" in url
    assert httpx.get(url).content == b"params"


def test_presigned_url_expires(server: Server, store: S3Service,
                               fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "input.json", b"params")
    url = presign(fast_config, "GET", object_url(server.url, BUCKET, "input.json"), 60)
    assert httpx.get(url).status_code == 200
    real = store.clock
    store.clock = lambda: real() + 61
    response = httpx.get(url)
    assert response.status_code == 403
    assert xml_field(response.content, "Code") == "AccessDenied"
    assert xml_field(response.content, "Message") == "Request has expired"


def test_tampered_presigned_url_is_refused(server: Server, store: S3Service,
                                           fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "a.json", b"a")
    store.put(BUCKET, "b.json", b"b")
    url = presign(fast_config, "GET", object_url(server.url, BUCKET, "a.json"), 60)
    response = httpx.get(url.replace("/a.json", "/b.json"))
    assert response.status_code == 403
    assert xml_field(response.content, "Code") == "SignatureDoesNotMatch"


def test_presigned_url_for_another_access_key_is_refused(server: Server,
                                                        fast_config: EmulatorConfig) -> None:
    other = EmulatorConfig(s3_access_key="intruder")
    response = httpx.get(presign(other, "GET", object_url(server.url, BUCKET, "k"), 60))
    assert response.status_code == 403
    assert xml_field(response.content, "Code") == "InvalidAccessKeyId"


def test_boto3_aws_chunked_upload_with_trailing_checksum(
        server: Server, store: S3Service, fast_config: EmulatorConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 streams uploads as aws-chunked with a CRC32 trailer only over TLS; make it
    # believe the endpoint is https so the exact same bytes go over plain HTTP
    monkeypatch.setattr(botocore.httpchecksum, "urlparse",
                        lambda url: urlparse(url.replace("http://", "https://", 1)))
    data = bytes(range(256)) * 400
    client(server, fast_config).upload_fileobj(io.BytesIO(data), BUCKET, "big.bin")
    assert store.get(BUCKET, "big.bin") == data
    put = next(r for r in server.log if r.method == "PUT")
    assert put.headers["content-encoding"] == "aws-chunked"
    assert put.headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert put.headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert put.headers["x-amz-decoded-content-length"] == str(len(data))


def signed_url(config: EmulatorConfig, method: str, url: str, body: bytes = b"",
               headers: dict[str, str] | None = None,
               region: str | None = None) -> httpx.Response:
    """Send ``body`` as is, with a SigV4 (seed) signature from botocore over ``headers``."""
    request = AWSRequest(method, url, data=body,
                         headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
                                  **(headers or {})})
    SigV4Auth(Credentials(config.s3_access_key, config.s3_secret_key), "s3",
              region or config.s3_region).add_auth(request)
    return httpx.request(method, request.url, content=body or None,
                         headers=dict(request.headers.items()))


def signed(server: Server, config: EmulatorConfig, method: str, key: str, body: bytes = b"",
           headers: dict[str, str] | None = None, region: str | None = None) -> httpx.Response:
    return signed_url(config, method, object_url(server.url, BUCKET, key), body, headers,
                      region)


def signed_put(server: Server, config: EmulatorConfig, key: str, body: bytes,
               headers: dict[str, str]) -> httpx.Response:
    return signed(server, config, "PUT", key, body, headers)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x};chunk-signature={'0' * 64}\r\n".encode() + data + b"\r\n"


def test_aws_chunked_with_chunk_signatures_is_decoded(server: Server, store: S3Service,
                                                      fast_config: EmulatorConfig) -> None:
    body = chunk(b"hello ") + chunk(b"world") + chunk(b"") + b"\r\n"
    response = signed_put(server, fast_config, "signed.txt", body, {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "X-Amz-Decoded-Content-Length": "11"})
    assert response.status_code == 200
    assert store.get(BUCKET, "signed.txt") == b"hello world"


def test_aws_chunked_shorter_than_declared_is_incomplete_body(
        server: Server, fast_config: EmulatorConfig) -> None:
    body = chunk(b"hello") + chunk(b"") + b"\r\n"
    response = signed_put(server, fast_config, "short.txt", body, {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "X-Amz-Decoded-Content-Length": "11"})
    assert response.status_code == 400
    assert xml_field(response.content, "Code") == "IncompleteBody"
    assert xml_field(response.content, "Message") == (
        "You did not provide the number of bytes specified by the "
        "x-amz-decoded-content-length header.")


def test_aws_chunked_bad_trailing_checksum_is_bad_digest(server: Server, store: S3Service,
                                                         fast_config: EmulatorConfig) -> None:
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:" + wrong.encode() + b"\r\n\r\n"
    response = signed_put(server, fast_config, "bad.txt", body, {
        "Content-Encoding": "aws-chunked", "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "X-Amz-Decoded-Content-Length": "5"})
    assert response.status_code == 400
    assert xml_field(response.content, "Code") == "BadDigest"
    assert xml_field(response.content, "Message") == (
        "The CRC32 you specified did not match the calculated checksum.")
    assert store.keys(BUCKET) == []


def test_checksum_header_mismatch_is_bad_digest(server: Server,
                                                fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"data", ChecksumSHA256=base64.b64encode(
            b"\0" * 32).decode())
    assert error_code(exc.value) == "BadDigest"
    assert exc.value.response["Error"]["Message"] == (
        "The SHA256 you specified did not match the calculated checksum.")


def test_payload_hash_mismatch_is_refused(server: Server, fast_config: EmulatorConfig) -> None:
    response = signed_put(server, fast_config, "k", b"actual", {
        "X-Amz-Content-SHA256": "0" * 64})
    assert response.status_code == 400
    assert xml_field(response.content, "Code") == "XAmzContentSHA256Mismatch"


def test_get_returns_stored_checksum_when_asked(server: Server,
                                                fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"data", ChecksumAlgorithm="CRC32")
    got = s3.get_object(Bucket=BUCKET, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == base64.b64encode(
        zlib.crc32(b"data").to_bytes(4, "big")).decode()
    assert got["Body"].read() == b"data"


def test_injected_fault_answers_in_s3_xml(server: Server, fast_config: EmulatorConfig) -> None:
    server.inject(Fault(path="^/qpu-jobs/", status=503, count=1, message="Please slow down"))
    with pytest.raises(ClientError) as exc:
        client(server, fast_config).get_object(Bucket=BUCKET, Key="k")
    assert error_code(exc.value) == "ServiceUnavailable"
    assert exc.value.response["Error"]["Message"] == "Please slow down"


def test_python_api_put_get_and_missing(store: S3Service) -> None:
    store.put(BUCKET, "k", b"v")
    assert store.get(BUCKET, "k") == b"v"
    with pytest.raises(S3Error, match=r"NoSuchKey: The specified key does not exist\."):
        store.get(BUCKET, "missing")
    with pytest.raises(S3Error, match="NoSuchBucket"):
        store.put("nobucket", "k", b"v")


def test_serve_url_checks_the_presigned_signature_in_process(store: S3Service,
                                                             fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "in.json", b"{}")
    url = presign(fast_config, "GET", object_url("http://emulator:9", BUCKET, "in.json"), 60)
    assert store.serve_url("GET", url).body == b"{}"
    assert store.serve_url("GET", url.replace("emulator:9", "other:9")).status == 403


def test_malformed_aws_chunked_bodies_are_refused(server: Server,
                                                  fast_config: EmulatorConfig) -> None:
    cases = [(b"zz;chunk-signature=0\r\nhello\r\n", "InvalidRequest",
              "Bad aws-chunked chunk header 'zz;chunk-signature=0'"),
             (b"5;chunk-signature=0", "IncompleteBody",
              "The aws-chunked body ends inside a chunk header."),
             (b"9;chunk-signature=0\r\nhello\r\n", "IncompleteBody",
              "An aws-chunked chunk is shorter than declared.")]
    for body, code, message in cases:
        response = signed_put(server, fast_config, "k", body, {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
        assert response.status_code == 400
        assert (xml_field(response.content, "Code"),
                xml_field(response.content, "Message")) == (code, message)


def test_request_errors_answer_in_s3_xml(server: Server, store: S3Service,
                                         fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "k", b"v")
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    cases: list[tuple[httpx.Response, int, str, str]] = [
        (signed_put(server, fast_config, "k", b"v", {"Content-MD5": md5}), 400, "BadDigest",
         "The Content-MD5 you specified did not match what we received."),
        (signed_put(server, fast_config, "k", b"v", {"x-amz-checksum-md4": "AAAA"}), 400,
         "InvalidRequest", "Unsupported checksum algorithm 'md4'"),
        (signed_put(server, fast_config, "k", b"", {"x-amz-copy-source": "/qpu-jobs/j"}), 501,
         "NotImplemented", "CopyObject is not supported here."),
        (signed(server, fast_config, "PATCH", "k"), 405, "MethodNotAllowed",
         "The specified method is not allowed against this resource."),
        (httpx.get(presign(fast_config, "GET", f"{server.url}/{BUCKET}?max-keys=x", 60)), 400,
         "InvalidArgument", "max-keys must be an integer"),
        (signed_url(fast_config, "DELETE", f"{server.url}/"), 405, "MethodNotAllowed",
         "The specified method is not allowed against this resource."),
    ]
    for response, status, code, message in cases:
        assert response.status_code == status, response.text
        assert (xml_field(response.content, "Code"),
                xml_field(response.content, "Message")) == (code, message)


def test_bucket_errors(server: Server, fast_config: EmulatorConfig) -> None:
    s3 = client(server, fast_config)
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=BUCKET)
    assert error_code(exc.value) == "BucketAlreadyOwnedByYou"
    assert exc.value.response["Error"]["Message"] == (
        "Your previous request to create the named bucket succeeded and you already own it.")
    with pytest.raises(ClientError) as post:
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}]})
    assert error_code(post.value) == "NotImplemented"
    assert post.value.response["Error"]["Message"] == (
        "POST operations (DeleteObjects, multipart uploads) are not supported here.")


def test_authentication_errors_answer_in_s3_xml(server: Server,
                                                fast_config: EmulatorConfig) -> None:
    url = presign(fast_config, "GET", object_url(server.url, BUCKET, "k"), 60)
    dated = {"X-Amz-Date": "20260101T000000Z", "X-Amz-Content-SHA256": UNSIGNED,
             "Authorization": f"AWS4-HMAC-SHA256 Credential={fast_config.s3_access_key}/"
                              "20260101/us-east-1/s3/aws4_request, SignedHeaders=host, "
                              "Signature=00"}
    cases: list[tuple[httpx.Response, int, str, str]] = [
        (httpx.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=999999")), 400,
         "AuthorizationQueryParametersError",
         "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
        (httpx.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=soon")), 400,
         "AuthorizationQueryParametersError", "X-Amz-Expires should be a number"),
        (httpx.get(url.replace("&X-Amz-Date=", "&X-Amz-Nope=")), 400,
         "AuthorizationQueryParametersError",
         "Query-string authentication version 4 requires the X-Amz-Algorithm, "
         "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
         "X-Amz-Expires parameters; X-Amz-Date is missing."),
        (httpx.get(url.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=MD5")), 400,
         "AuthorizationQueryParametersError", 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"'),
        (httpx.get(url.replace("%2Fs3%2F", "%2Fs4%2F")), 400, "AuthorizationHeaderMalformed",
         f"The credential '{fast_config.s3_access_key}/"
         f"{url.split('%2F')[1]}/us-east-1/s4/aws4_request' is malformed; expected "
         '"<AccessKeyId>/<date>/<region>/s3/aws4_request".'),
        (httpx.get(url.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-amz-date")),
         400, "AuthorizationHeaderMalformed", "The host header must be signed."),
        (httpx.get(f"{server.url}/{BUCKET}/k", headers={**dated, "X-Amz-Date": "yesterday"}),
         403, "AccessDenied", "Invalid date 'yesterday': expected yyyyMMddTHHmmssZ"),
        (httpx.get(f"{server.url}/{BUCKET}/k",
                   headers={k: v for k, v in dated.items() if k != "X-Amz-Date"}),
         403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"),
        (httpx.get(f"{server.url}/{BUCKET}/k", headers={
            **dated, "Authorization": "AWS4-HMAC-SHA256 Credential=x"}), 400,
         "AuthorizationHeaderMalformed", "The authorization header is malformed; it needs "
                                         "Credential, SignedHeaders and Signature."),
    ]
    for response, status, code, message in cases:
        assert response.status_code == status, response.text
        assert (xml_field(response.content, "Code"),
                xml_field(response.content, "Message")) == (code, message)


def test_missing_payload_hash_header_is_refused(server: Server, store: S3Service,
                                                fast_config: EmulatorConfig) -> None:
    request = AWSRequest("GET", object_url(server.url, BUCKET, "k"))
    SigV4Auth(Credentials(fast_config.s3_access_key, fast_config.s3_secret_key), "s3",
              fast_config.s3_region).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "x-amz-content-sha256"}
    response = httpx.get(request.url, headers=headers)
    assert response.status_code == 400
    assert xml_field(response.content, "Message") == (
        "Missing required header for this request: x-amz-content-sha256")


def test_presigned_sigv2_errors(server: Server, store: S3Service,
                                fast_config: EmulatorConfig) -> None:
    store.put(BUCKET, "k", b"v")
    url = client(server, fast_config).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=60)
    expires = url.split("Expires=")[1]
    cases = [(url.replace("Signature=", "Signature=x"), "SignatureDoesNotMatch",
              "The request signature we calculated does not match the signature you provided. "
              "Check your key and signing method."),
             (url.replace(f"Expires={expires}", "Expires=12"), "AccessDenied",
              "Request has expired"),
             (url.replace(f"Expires={expires}", "Expires=soon"), "AccessDenied",
              "Query-string authentication requires the Signature, Expires and "
              "AWSAccessKeyId parameters"),
             (url.replace("AWSAccessKeyId=emulator-s3-access", "AWSAccessKeyId=x"),
              "InvalidAccessKeyId",
              "The AWS Access Key Id you provided does not exist in our records.")]
    for bad, code, message in cases:
        response = httpx.get(bad)
        assert response.status_code == 403
        assert (xml_field(response.content, "Code"),
                xml_field(response.content, "Message")) == (code, message)
