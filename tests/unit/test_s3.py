"""The SigV4 signer against AWS's published examples and botocore, and the S3 client against a
MockTransport fake and against moto's S3 server."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fake_ibm_system import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, FakeS3

from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorAuthError,
    VendorNotFound,
    VendorUnavailable,
)
from slurm_qpu.vendors.common.s3 import (
    S3Client,
    S3Credentials,
    authorization,
    canonical_uri,
    presign,
)

FAST = RetryPolicy(attempts=3, backoff=0.0, deadline=5.0)
WHEN = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# The example credentials, bucket and date of the S3 API Reference's SigV4 examples
# ("Signature Calculations for the Authorization Header" and "Authenticating Requests:
# Using Query Parameters").
AWS = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_WHEN = datetime(2013, 5, 24, tzinfo=UTC)
AWS_HOST = "examplebucket.s3.amazonaws.com"


def client(fake: FakeS3, clock: Callable[[], datetime] = lambda: WHEN) -> S3Client:
    return S3Client("http://s3.test:9000", BUCKET, REGION, S3Credentials(ACCESS_KEY, SECRET_KEY),
                    httpx.MockTransport(fake.handle), FAST, clock)


# --- the signer --------------------------------------------------------------------------


def test_signer_matches_awss_get_object_example() -> None:
    headers = {"Host": AWS_HOST, "Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256,
               "x-amz-date": "20130524T000000Z"}
    assert authorization(AWS, "us-east-1", "GET", f"https://{AWS_HOST}/test.txt", headers,
                         EMPTY_SHA256, AWS_WHEN) == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_signer_matches_awss_put_object_example() -> None:
    body = b"Welcome to Amazon S3."
    digest = hashlib.sha256(body).hexdigest()
    headers = {"Host": AWS_HOST, "Date": "Fri, 24 May 2013 00:00:00 GMT",
               "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": digest}
    value = authorization(AWS, "us-east-1", "PUT", f"https://{AWS_HOST}/test$file.text",
                          headers, digest, AWS_WHEN)
    assert value.endswith("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                          "x-amz-storage-class, Signature="
                          "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")


def test_presigner_matches_awss_presigned_url_example() -> None:
    assert presign(AWS, "us-east-1", "GET", f"https://{AWS_HOST}/test.txt", 86400,
                   AWS_WHEN) == (
        f"https://{AWS_HOST}/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_canonical_uri_encodes_each_segment_exactly_once() -> None:
    assert canonical_uri("/b/a b$c~d.json") == "/b/a%20b%24c~d.json"
    assert canonical_uri("/b/a%20b") == "/b/a%20b"


@pytest.mark.parametrize("expires", [0, 7 * 24 * 3600 + 1])
def test_presigned_url_lifetime_must_be_within_sigv4s_limits(expires: int) -> None:
    with pytest.raises(ValueError) as exc:
        presign(AWS, "us-east-1", "GET", f"https://{AWS_HOST}/t", expires, WHEN)
    assert str(exc.value) == f"presigned URL expiry must be 1..604800 s, not {expires}"


needs_botocore = pytest.mark.skipif(importlib.util.find_spec("botocore") is None,
                                    reason="botocore (test-only, comes with boto3) not installed")


@needs_botocore
def test_header_signature_agrees_with_botocore_on_a_non_default_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    body = b'{"pubs": []}'
    url = "http://127.0.0.1:9000/jobs/input_1.json?partNumber=1"
    reference = AWSRequest("PUT", url, data=body)
    botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(
        reference)
    digest = hashlib.sha256(body).hexdigest()
    ours = authorization(S3Credentials(ACCESS_KEY, SECRET_KEY), REGION, "PUT", url,
                         {"host": "127.0.0.1:9000", "x-amz-date": "20261124T100000Z",
                          "x-amz-content-sha256": digest}, digest, WHEN)
    assert ours.rsplit("Signature=")[1] == reference.headers["Authorization"].rsplit(
        "Signature=")[1]


@needs_botocore
def test_presigned_url_agrees_with_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    url = "http://s3.internal.test:9000/jobs/results_1.json"
    reference = AWSRequest("PUT", url)
    botocore.auth.S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION,
                                   expires=3600).add_auth(reference)
    ours = presign(S3Credentials(ACCESS_KEY, SECRET_KEY), REGION, "PUT", url, 3600, WHEN)
    assert httpx.URL(ours).params["X-Amz-Signature"] == \
        httpx.URL(reference.url).params["X-Amz-Signature"]


# --- the client against a MockTransport fake ---------------------------------------------


def test_put_get_delete_round_trip_with_signed_requests() -> None:
    fake = FakeS3()
    s3 = client(fake)
    s3.put_object("input_1.json", b'{"pubs": []}')
    assert fake.get("input_1.json") == b'{"pubs": []}'
    assert s3.get_object("input_1.json") == b'{"pubs": []}'
    s3.delete_object("input_1.json")
    assert fake.get("input_1.json") is None
    put = fake.requests[0]
    assert put.url == "http://s3.test:9000/jobs/input_1.json"  # path-style
    assert put.headers["x-amz-date"] == "20261124T100000Z"
    assert put.headers["x-amz-content-sha256"] == hashlib.sha256(b'{"pubs": []}').hexdigest()
    assert put.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261124/{REGION}/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=")


def test_a_retry_is_signed_again_with_a_fresh_date() -> None:
    fake = FakeS3()
    times = iter([WHEN, WHEN + timedelta(seconds=1)])
    s3 = client(fake, clock=lambda: next(times))
    answers = iter([httpx.Response(503, text="<Error><Code>SlowDown</Code></Error>")])

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake.handle(request)

    s3.http._http._transport = httpx.MockTransport(flaky)
    s3.put_object("k", b"x")
    assert fake.get("k") == b"x"
    assert fake.requests[0].headers["x-amz-date"] == "20261124T100001Z"


def test_missing_object_is_not_found_with_the_stores_words() -> None:
    with pytest.raises(VendorNotFound) as exc:
        client(FakeS3()).get_object("results_9.json")
    assert str(exc.value) == "S3 storage: not found: NoSuchKey: The specified key does not exist."
    assert exc.value.vendor_message == "NoSuchKey: The specified key does not exist."


def test_missing_bucket_is_not_found() -> None:
    with pytest.raises(VendorNotFound, match="NoSuchBucket: The specified bucket does not exist"):
        client(FakeS3(buckets=set())).put_object("k", b"x")


def test_refused_credentials_are_an_auth_error() -> None:
    fake = FakeS3()
    s3 = S3Client("http://s3.test:9000", BUCKET, REGION, S3Credentials("AKIDOTHER", "s"),
                  httpx.MockTransport(fake.handle), FAST)
    with pytest.raises(VendorAuthError) as exc:
        s3.get_object("k")
    assert str(exc.value) == ("S3 storage refused the credentials (403): AccessDenied: "
                              f"no SigV4 Authorization for {ACCESS_KEY}")


def test_persistent_5xx_gives_up_with_the_stores_words() -> None:
    slow_down = httpx.Response(503, text=(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate.</Message></Error>"))
    s3 = S3Client("http://s3.test:9000", BUCKET, REGION, S3Credentials(ACCESS_KEY, SECRET_KEY),
                  httpx.MockTransport(lambda request: slow_down), FAST)
    with pytest.raises(VendorUnavailable) as exc:
        s3.get_object("k")
    assert str(exc.value) == ("S3 storage unavailable (GET /jobs/k): error 503: SlowDown: Please "
                              "reduce your request rate.; gave up after 3 attempt(s) / 5 s")


def test_presigned_urls_let_a_credential_less_client_read_and_write() -> None:
    fake = FakeS3()
    s3 = client(fake)
    plain = httpx.Client(transport=httpx.MockTransport(fake.handle))
    put_url = s3.presign("PUT", "results_1.json", 600)
    assert plain.put(put_url, content=b"result").status_code == 200
    assert plain.get(s3.presign("GET", "results_1.json", 600)).content == b"result"
    assert httpx.URL(put_url).params["X-Amz-Expires"] == "600"


def test_presigned_url_for_another_endpoint_is_signed_for_that_host() -> None:
    s3 = client(FakeS3())
    url = s3.presign("GET", "input_1.json", 60, endpoint="http://s3.internal.test:9000/")
    assert url.startswith("http://s3.internal.test:9000/jobs/input_1.json?")
    assert url == presign(s3.credentials, REGION, "GET",
                          "http://s3.internal.test:9000/jobs/input_1.json", 60, WHEN)


def test_keys_are_encoded_in_the_path() -> None:
    fake = FakeS3()
    client(fake).put_object("dir/a b.json", b"x")
    assert fake.requests[0].url.raw_path == b"/jobs/dir/a%20b.json"
    assert fake.get("dir/a b.json") == b"x"


# --- the client against moto's S3 server -------------------------------------------------

has_moto = importlib.util.find_spec("moto") is not None
needs_moto = pytest.mark.skipif(not has_moto, reason="moto[server] (a test-only dependency) is "
                                "not installed, so there is no real S3 to test against")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_client(endpoint: str, bucket: str, secret: str = SECRET_KEY,
                key_id: str = ACCESS_KEY) -> S3Client:
    s3 = S3Client(endpoint, bucket, "us-east-1", S3Credentials(key_id, secret), retry=FAST)
    s3.http.request("PUT", f"/{bucket}")  # CreateBucket (idempotent in us-east-1)
    return s3


@needs_moto
def test_moto_round_trip(moto_endpoint: str) -> None:
    s3 = moto_client(moto_endpoint, "roundtrip")
    s3.put_object("input_1.json", b'{"pubs": [1, 2]}')
    assert s3.get_object("input_1.json") == b'{"pubs": [1, 2]}'
    s3.delete_object("input_1.json")
    with pytest.raises(VendorNotFound) as exc:
        s3.get_object("input_1.json")
    assert str(exc.value) == "S3 storage: not found: NoSuchKey: The specified key does not exist."


@needs_moto
def test_moto_accepts_presigned_put_and_get(moto_endpoint: str) -> None:
    s3 = moto_client(moto_endpoint, "presigned")
    with httpx.Client() as plain:
        put = plain.put(s3.presign("PUT", "results_1.json", 300), content=b"counts")
        assert put.status_code == 200, put.text
        assert plain.get(s3.presign("GET", "results_1.json", 300)).content == b"counts"
    assert s3.get_object("results_1.json") == b"counts"


@pytest.fixture
def moto_checks_signatures(moto_endpoint: str) -> Iterator[tuple[str, str]]:
    """moto verifies SigV4 (with botocore) once IAM auth is switched on: make a user with an
    access key allowed to use S3, then switch it on; switch it off again afterwards."""
    boto3 = pytest.importorskip("boto3", reason="boto3 (test-only) makes the IAM user in moto")
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="qs")
    iam.put_user_policy(UserName="qs", PolicyName="s3", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": '
        '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
    key = iam.create_access_key(UserName="qs")["AccessKey"]
    httpx.post(f"{moto_endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        httpx.post(f"{moto_endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


@needs_moto
def test_moto_verifies_our_signatures(moto_endpoint: str,
                                      moto_checks_signatures: tuple[str, str]) -> None:
    key_id, secret = moto_checks_signatures
    s3 = moto_client(moto_endpoint, "verified", secret, key_id)
    s3.put_object("dir/input $1.json", b"signed body")
    assert s3.get_object("dir/input $1.json") == b"signed body"
    forged = S3Client(moto_endpoint, "verified", "us-east-1", S3Credentials(key_id, "wrong"),
                      retry=FAST)
    with pytest.raises(VendorAuthError) as exc:
        forged.get_object("dir/input $1.json")
    assert "SignatureDoesNotMatch: The request signature we calculated does not match" in \
        str(exc.value)
