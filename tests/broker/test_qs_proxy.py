"""IBM Quantum System jobs through the broker: the job's S3 settings name the broker and
carry credentials its lease derives; the broker checks every S3 request and presigned URL
and signs it again with the site's keys, which the job never sees."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import botocore.httpchecksum
import httpx
import pytest
from botocore.exceptions import ClientError
from harness import StartBroker, set_job_environment
from qs_harness import (
    BUCKET,
    QPU,
    REGION,
    SAMPLER,
    Job,
    P,
    job_boto3,
    qs_job,
    qs_settings,
    s3_client,
    s3_error,
    site_boto3,
)

from slurm_qpu import client
from slurm_qpu.broker.limits import Limits
from slurm_qpu.vendors.common.base import QiskitPrimitive, TaskStatus
from slurm_qpu.vendors.common.http import RetryPolicy, VendorAuthError
from slurm_qpu.vendors.common.s3 import S3Client, S3Credentials, authorization, presign
from slurm_qpu.vendors.ibm_quantum_system import storage as s3proxy
from slurm_qpu.vendors.ibm_quantum_system.view import IbmQuantumSystemView
from slurm_qpu_emulator import Emulator, Fault


@pytest.fixture
def site(emulator: Emulator) -> list[dict[str, Any]]:
    """The site's qrmi_config resources (a copy a test may change before starting)."""
    return copy.deepcopy(emulator.qrmi_config()["resources"])


def start_job(start_broker: StartBroker, site: list[dict[str, Any]], job_id: int = 21,
              **kw: Any) -> Job:
    return qs_job(start_broker(site, **kw), job_id)


@pytest.fixture
def job(start_broker: StartBroker, site: list[dict[str, Any]]) -> Job:
    return start_job(start_broker, site)


def vendor_job(emulator: Emulator, task: str) -> dict[str, Any]:
    """The job as the IBM Quantum System service holds it (asked with the site's keys)."""
    token = httpx.post(f"{emulator.url}/identity/token", data={
        "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
        "apikey": emulator.config.api_key}).json()["access_token"]
    job: dict[str, Any] = httpx.get(f"{emulator.url}/quantum-system/v1/jobs/{task}", headers={
        "Authorization": f"Bearer {token}",
        "Service-CRN": emulator.config.service_crn}).json()
    return job


def run_task(env: dict[str, str]) -> tuple[Any, str]:
    qpu = client.resource(QPU, environ=env)
    task = qpu.task_start(QiskitPrimitive(json.dumps(SAMPLER), "sampler"))
    for _ in range(400):
        if qpu.task_status(task) is not TaskStatus.RUNNING:
            break
        time.sleep(0.05)
    return qpu, task


# -- the job's environment -----------------------------------------------------------------
def test_job_environment_points_s3_at_the_broker_and_holds_no_configured_secret(
        emulator: Emulator, job: Job) -> None:
    c = emulator.config
    for secret in (c.api_key, c.s3_secret_key, c.s3_access_key, c.service_crn):
        assert not any(secret in value for value in job.env.values()), secret
    assert job.s3_endpoint == f"{job.broker.url}/p/{QPU}/s3/"
    assert job.env[P + "S3_BUCKET"] == BUCKET and job.env[P + "S3_REGION"] == REGION
    assert job.credentials.access_key_id == f"sqpu-s3-{job.job_id}-1"
    assert P + "S3_ENDPOINT_FOR_QSAPI" not in job.env


def test_a_qpu_without_s3_settings_gives_the_job_none() -> None:
    settings = {"QRMI_IBM_QS_ENDPOINT": "http://qs", "QRMI_IBM_QS_S3_ENDPOINT": "http://s3",
                "QRMI_IBM_QS_S3_BUCKET": BUCKET, "QRMI_IBM_QS_S3_REGION": REGION,
                "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": "a"}  # no secret: S3 is off, as in qrmi
    env = IbmQuantumSystemView().job_environment(
        settings, name=QPU, proxy_url="http://b/p/q", job_token="sqpu_1_1_" + "a" * 43,
        job_id=1)
    assert not [k for k in env if "S3" in k or "AWS" in k]


def test_storage_is_refused_once_the_site_removes_it(job: Job) -> None:
    config = json.loads(job.broker.config_path.read_text())
    del qs_settings(config["resources"])["QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY"]
    job.broker.config_path.write_text(json.dumps(config))  # the broker reads it again
    storage = {"input": {"type": "s3_compatible", "presigned_url": "http://x/y"}}
    answer = job.proxy("POST", "/v1/jobs", json={"id": "j1", "backend": QPU,
                                                 "storage": storage})
    assert answer.status_code == 403
    assert answer.json()["message"] == (f"QPU {QPU} has no job storage configured on the "
                                        "broker, so storage.input cannot be reached")
    with pytest.raises(ClientError) as exc:
        job_boto3(job).get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc) == ("NoSuchBucket",
                             "this QPU has no job storage configured on the broker")


def test_job_s3_credentials_name_the_lease_and_differ_per_lease() -> None:
    first = s3proxy.job_credentials("sqpu_7_1_" + "a" * 43)
    assert first == s3proxy.job_credentials("sqpu_7_1_" + "a" * 43)  # derived, not stored
    assert first.access_key_id == "sqpu-s3-7-1"
    assert s3proxy.lease_of(first.access_key_id) == (7, 1)
    again = s3proxy.job_credentials("sqpu_7_2_" + "b" * 43)  # the job's next lease
    assert again.access_key_id == "sqpu-s3-7-2"
    assert again.secret_access_key != first.secret_access_key
    assert s3proxy.lease_of("AKIAIOSFODNN7EXAMPLE") is None
    with pytest.raises(ValueError, match="not a slurm-qpu job token"):
        s3proxy.job_credentials("emulator-api-key")


# -- QS tasks ---------------------------------------------------------------------------------
def test_slurm_qpu_task_runs_to_results_through_the_broker(emulator: Emulator,
                                                           job: Job) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    qpu, task = run_task(job.env)
    assert qpu.task_status(task) is TaskStatus.COMPLETED
    result = json.loads(qpu.task_result(task).value, cls=RuntimeDecoder)
    assert sum(result[0].data.meas.get_counts().values()) == 64
    assert "pub 0" in qpu.task_logs(task)
    # the vendor got URLs for the real store, presigned with the site's key
    storage = vendor_job(emulator, task)["storage"]
    for part in ("input", "results", "logs"):
        url = storage[part]["presigned_url"]
        assert url.startswith(f"{emulator.url}/{BUCKET}/{job.stored(part)}_{task}.json?"), url
        assert f"X-Amz-Credential={emulator.config.s3_access_key}%2F" in url
    # the job sees the vendor's job without the signatures of those URLs
    seen = job.proxy("GET", f"/v1/jobs/{task}").json()["storage"]
    assert seen["input"]["presigned_url"] == \
        f"{emulator.url}/{BUCKET}/{job.stored('input')}_{task}.json"
    listed = job.proxy("GET", "/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [task]
    assert "?" not in listed[0]["storage"]["results"]["presigned_url"]


def test_the_vendor_reaches_the_store_at_s3_endpoint_for_qsapi(
        emulator: Emulator, start_broker: StartBroker, site: list[dict[str, Any]]) -> None:
    elsewhere = emulator.url.replace("127.0.0.1", "localhost")
    qs_settings(site)["QRMI_IBM_QS_S3_ENDPOINT_FOR_QSAPI"] = elsewhere
    job = start_job(start_broker, site)
    assert P + "S3_ENDPOINT_FOR_QSAPI" not in job.env
    qpu, task = run_task(job.env)
    assert qpu.task_status(task) is TaskStatus.COMPLETED  # fetched and stored over HTTP
    url = vendor_job(emulator, task)["storage"]["input"]["presigned_url"]
    assert url.startswith(f"{elsewhere}/{BUCKET}/{job.stored('input')}_{task}.json?")
    assert f"X-Amz-Credential={emulator.config.s3_access_key}%2F" in url


def test_qrmi_runs_a_qs_task_through_the_broker(job: Job,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    from qiskit_ibm_runtime.json import RuntimeDecoder

    set_job_environment(monkeypatch, job.env)
    resource = qrmi.QuantumResource(QPU, qrmi.ResourceType.IBMQuantumSystem)
    assert resource.status().to_dict()["status"] == "online"  # lists the job's own jobs
    task = resource.task_start(qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER),
                                                            program_id="sampler"))
    for _ in range(400):
        status = resource.task_status(task)
        if status != qrmi.TaskStatus.Running:
            break
        time.sleep(0.05)
    assert status == qrmi.TaskStatus.Completed
    result = json.loads(resource.task_result(task).value, cls=RuntimeDecoder)
    assert sum(result[0].data.meas.get_counts().values()) == 64
    assert "pub 0" in resource.task_logs(task)
    resource.task_stop(task)


# -- S3 through the proxy ---------------------------------------------------------------------
def test_boto3_with_the_jobs_credentials_uses_the_bucket_through_the_proxy(
        emulator: Emulator, job: Job) -> None:
    s3 = job_boto3(job)
    s3.put_object(Bucket=BUCKET, Key="mine/a b.json", Body=b'{"a": 1}',
                  ContentType="application/json")
    got = s3.get_object(Bucket=BUCKET, Key="mine/a b.json")
    assert got["Body"].read() == b'{"a": 1}' and got["ContentType"] == "application/json"
    assert s3.head_object(Bucket=BUCKET, Key="mine/a b.json")["ContentLength"] == 8
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="mine/")
    assert [o["Key"] for o in listed["Contents"]] == ["mine/a b.json"]
    # it is in the site's store, under the lease's prefix, written with the site's key
    site = site_boto3(emulator)
    assert site.get_object(Bucket=BUCKET, Key=job.stored("mine/a b.json"))["Body"].read() \
        == b'{"a": 1}'
    s3.delete_object(Bucket=BUCKET, Key="mine/a b.json")
    with pytest.raises(ClientError) as exc:
        site.head_object(Bucket=BUCKET, Key=job.stored("mine/a b.json"))
    assert s3_error(exc)[0] == "404"


def test_another_bucket_and_the_bucket_itself_are_refused(emulator: Emulator,
                                                          job: Job) -> None:
    site_boto3(emulator).create_bucket(Bucket="other-bucket")
    s3 = job_boto3(job)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="other-bucket", Key="k", Body=b"x")
    assert s3_error(exc) == ("AccessDenied",
                             "this job may use the bucket qpu-jobs only, not other-bucket")
    with pytest.raises(ClientError) as exc:
        s3.list_buckets()
    assert s3_error(exc)[1] == ("listing buckets is not available through the broker; "
                                "this job's bucket is qpu-jobs")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=BUCKET)
    assert s3_error(exc)[1] == ("creating, deleting or configuring the bucket qpu-jobs is "
                                "not available to jobs")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"x", ACL="public-read")
    assert s3_error(exc)[1] == ("access rights (ACLs) are not available to jobs (S3 header "
                                "x-amz-acl)")
    with pytest.raises(ClientError) as exc:
        site_boto3(emulator).head_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc)[0] == "404"  # nothing reached the store


def test_a_wrong_secret_is_refused(job: Job) -> None:
    with pytest.raises(ClientError) as exc:
        job_boto3(job, secret="not-the-secret").put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert s3_error(exc) == (
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided: sign "
        "with the job's S3 secret (QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY of the job's "
        "environment).")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_access_key_is_refused(emulator: Emulator, job: Job) -> None:
    c = emulator.config
    with pytest.raises(ClientError) as exc:  # the site's own keys are no use at the broker
        job_boto3(job, access_key=c.s3_access_key, secret=c.s3_secret_key).get_object(
            Bucket=BUCKET, Key="k")
    # (the site's key id is one of the config's secrets: the answer masks it)
    assert s3_error(exc) == ("InvalidAccessKeyId", "S3 access key *** is not a slurm-qpu job's")
    with pytest.raises(ClientError) as exc:  # a job that never was
        job_boto3(job, access_key="sqpu-s3-999-1").get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc)[1] == "S3 access key sqpu-s3-999-1 is not a slurm-qpu job's"


def test_a_finished_jobs_s3_credentials_are_refused(job: Job) -> None:
    s3 = job_boto3(job)
    s3.put_object(Bucket=BUCKET, Key="before-the-end", Body=b"x")
    url = presign(job.credentials, REGION, "GET", f"{job.s3_endpoint}{BUCKET}/before-the-end",
                  600, datetime.now(UTC))
    job.broker.node().release(job.job_id)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="before-the-end")
    assert s3_error(exc) == ("InvalidAccessKeyId", f"the S3 credentials of job {job.job_id} "
                                                   "stopped working when the job ended")
    presigned = httpx.get(url)  # an unexpired presigned URL dies with the lease too
    assert presigned.status_code == 403
    assert "stopped working when the job ended" in presigned.text


def test_a_request_for_another_qpus_route_is_refused(job: Job) -> None:
    endpoint = job.s3_endpoint.replace(f"/p/{QPU}/", "/p/ibm_lagos/")
    s3 = s3_client(endpoint, job.credentials.access_key_id, job.credentials.secret_access_key)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc)[1] == f"job {job.job_id} holds no IBM Quantum System named ibm_lagos"


def test_the_jobs_region_must_be_the_stores(job: Job) -> None:
    with pytest.raises(ClientError) as exc:
        job_boto3(job, region="eu-west-1").get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc) == ("AuthorizationHeaderMalformed",
                             "the region 'eu-west-1' is wrong; expecting 'us-east-1'")


def test_a_request_signed_long_ago_is_refused(job: Job) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    s3 = S3Client(job.s3_endpoint, BUCKET, REGION, job.credentials,
                  retry=RetryPolicy(backoff=0.0, deadline=2.0, attempts=1), clock=lambda: old)
    with pytest.raises(VendorAuthError, match=r"RequestTimeTooSkewed: The difference between "
                                              r"the request time and the current time is too "
                                              r"large\."):
        s3.get_object("k")


def test_unsigned_and_sigv2_requests_are_refused(job: Job) -> None:
    anonymous = httpx.get(f"{job.s3_endpoint}{BUCKET}/k")
    assert anonymous.status_code == 403
    assert anonymous.headers["content-type"] == "application/xml"
    assert "<Message>S3 requests through the broker must be signed (AWS Signature Version " \
           "4) with the job's S3 credentials (QRMI_IBM_QS_AWS_ACCESS_KEY_ID and " \
           "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY of the job's environment)</Message>" \
           in anonymous.text
    sigv2 = httpx.get(f"{job.s3_endpoint}{BUCKET}/k?AWSAccessKeyId=a&Signature=b&Expires=9")
    assert sigv2.status_code == 400
    assert "<Message>sign S3 requests through the broker with AWS Signature Version 4 " \
           "(AWS4-HMAC-SHA256); for boto3 presigned URLs use " \
           "Config(signature_version='s3v4')</Message>" in sigv2.text
    head = httpx.head(f"{job.s3_endpoint}{BUCKET}/k")  # no body for HEAD
    assert head.status_code == 403 and head.content == b""


def test_presigned_urls_of_the_job_work_through_the_proxy_until_they_expire(
        emulator: Emulator, job: Job) -> None:
    now = datetime.now(UTC)
    put = presign(job.credentials, REGION, "PUT", f"{job.s3_endpoint}{BUCKET}/p.txt", 600, now)
    assert httpx.put(put, content=b"presigned").status_code == 200
    get = job_boto3(job).generate_presigned_url("get_object", Params={
        "Bucket": BUCKET, "Key": "p.txt"}, ExpiresIn=600)
    assert httpx.get(get).content == b"presigned"
    old = presign(job.credentials, REGION, "GET", f"{job.s3_endpoint}{BUCKET}/p.txt", 60,
                  now - timedelta(minutes=5))
    expired = httpx.get(old)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code><Message>Request has expired: the presigned URL " \
           "expired at " in expired.text
    tampered = httpx.get(get.replace("p.txt", "q.txt"))
    assert tampered.status_code == 403 and "SignatureDoesNotMatch" in tampered.text


def test_boto3_aws_chunked_upload_streams_through_the_proxy(
        emulator: Emulator, job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 sends aws-chunked with a CRC32 trailer only over TLS: make it believe so
    monkeypatch.setattr(botocore.httpchecksum, "urlparse",
                        lambda url: urlparse(url.replace("http://", "https://", 1)))
    data = bytes(range(256)) * 400
    job_boto3(job).upload_fileobj(io.BytesIO(data), BUCKET, "big.bin")
    monkeypatch.undo()
    assert site_boto3(emulator).get_object(Bucket=BUCKET, Key=job.stored("big.bin"))[
        "Body"].read() == data
    put = [r for r in emulator.requests() if r.method == "PUT" and r.path.endswith("big.bin")]
    assert put[-1].headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def signed_chunks(job: Job, key: str, pieces: list[bytes], tamper: bool = False
                  ) -> httpx.Response:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload signed with the job's credentials."""
    when = datetime.now(UTC).replace(microsecond=0)
    amz_date, scope = f"{when:%Y%m%dT%H%M%SZ}", f"{when:%Y%m%d}/{REGION}/s3/aws4_request"
    from slurm_qpu.vendors.common.s3 import signing_key

    k = signing_key(job.credentials.secret_access_key, f"{when:%Y%m%d}", REGION)
    url = f"{job.s3_endpoint}{BUCKET}/{key}"
    body_length = sum(len(f"{len(p):x};chunk-signature=".encode()) + 64 + 4 + len(p)
                      for p in [*pieces, b""])
    headers = {"host": httpx.URL(url).netloc.decode(), "x-amz-date": amz_date,
               "x-amz-content-sha256": s3proxy.SIGNED_CHUNKS, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(sum(map(len, pieces))),
               "content-length": str(body_length)}
    auth = authorization(job.credentials, REGION, "PUT", url, headers, s3proxy.SIGNED_CHUNKS,
                         when)
    previous, body = auth.rsplit("=", 1)[1], b""
    for piece in [*pieces, b""]:
        previous = s3proxy.chunk_signature(k, amz_date, scope, previous, piece)
        sent = piece.upper() if tamper and piece else piece
        body += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return httpx.put(url, content=body, headers={**headers, "authorization": auth})


def test_a_chunk_signed_upload_is_signed_again_for_the_store(emulator: Emulator,
                                                             job: Job) -> None:
    answer = signed_chunks(job, "chunked.txt", [b"hello " * 2000, b"world"])
    assert answer.status_code == 200, answer.text
    got = site_boto3(emulator).get_object(Bucket=BUCKET, Key=job.stored("chunked.txt"))[
        "Body"].read()
    assert got == b"hello " * 2000 + b"world"
    tampered = signed_chunks(job, "tampered.txt", [b"hello"], tamper=True)
    assert tampered.status_code == 403
    assert "<Message>a chunk signature of the upload does not match: sign with the job's S3 " \
           "secret</Message>" in tampered.text


def test_the_sites_access_key_is_masked_in_the_stores_errors(
        start_broker: StartBroker, site: list[dict[str, Any]]) -> None:
    qs_settings(site)["QRMI_IBM_QS_AWS_ACCESS_KEY_ID"] = "site-key-the-store-refuses"
    job = start_job(start_broker, site)
    with pytest.raises(ClientError) as exc:
        job_boto3(job).get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc)[0] == "InvalidAccessKeyId"  # the store's own answer
    assert "site-key-the-store-refuses" not in json.dumps(exc.value.response, default=str)


def test_store_failures_and_limits_answer_in_s3_xml(
        emulator: Emulator, start_broker: StartBroker, site: list[dict[str, Any]]) -> None:
    job = start_job(start_broker, site, limits=Limits(max_body=100, rate=0.001, burst=2,
                                                      upstream_timeout=0.3))
    s3 = job_boto3(job)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="big", Body=b"x" * 101)
    assert s3_error(exc) == ("EntityTooLarge", "request body of 101 bytes is over the "
                                               "broker's limit of 100 bytes")
    emulator.inject(Fault(path=f"/qpu-jobs/{job.stored('slow')}", delay=1.0, count=1))
    try:
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=BUCKET, Key="slow")
    finally:
        emulator.clear_faults()
    assert s3_error(exc) == ("RequestTimeout", "the S3 store did not answer in time")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="k")  # the third request in a burst of two
    assert s3_error(exc) == ("SlowDown", f"job {job.job_id} is over its rate limit of 0.001 "
                                         "requests per second")


def test_an_unreachable_store_is_a_502(start_broker: StartBroker,
                                       site: list[dict[str, Any]]) -> None:
    qs_settings(site)["QRMI_IBM_QS_S3_ENDPOINT"] = "http://127.0.0.1:9"
    job = start_job(start_broker, site)
    with pytest.raises(ClientError) as exc:
        job_boto3(job).get_object(Bucket=BUCKET, Key="k")
    assert s3_error(exc) == ("ServiceUnavailable",
                             "the S3 store cannot be reached: ConnectError")


# -- the storage URLs in a job's POST /v1/jobs ------------------------------------------------
def job_body(job: Job, **urls: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    storage = {}
    for part, method in (("input", "GET"), ("results", "PUT"), ("logs", "PUT")):
        url = urls.get(part) or presign(job.credentials, REGION, method,
                                        f"{job.s3_endpoint}{BUCKET}/{part}_t.json", 600, now)
        storage[part] = {"type": "s3_compatible", "presigned_url": url}
    return {"id": "t", "backend": QPU, "program_id": "sampler", "timeout_secs": 600,
            "storage": storage}


@pytest.mark.parametrize(("how", "status", "message"), [
    ("other bucket", 403, "storage.input.presigned_url: this job may use the bucket "
                          "qpu-jobs only, not other-bucket"),
    ("expired", 403, "storage.input.presigned_url: Request has expired: the presigned URL "
                     "expired at "),
    ("wrong secret", 401, "storage.input.presigned_url: the signature does not match a "
                          "presigned GET with the job's S3 credentials"),
    ("presigned PUT", 401, "storage.input.presigned_url: the signature does not match a "
                           "presigned GET with the job's S3 credentials"),
    ("not the route", 403, f"storage.input.presigned_url: not a URL of this job's S3 route "
                           f"(…/p/{QPU}/s3): presign it with the job's S3 settings "
                           "(QRMI_IBM_QS_S3_ENDPOINT)"),
    ("dot segments", 403, "storage.input.presigned_url: object paths with '.' or '..' "
                          "segments are not allowed"),
    ("not presigned", 403, "storage.input.presigned_url: not a presigned URL (AWS "
                           "Signature Version 4)"),
    ("more headers", 403, "storage.input.presigned_url: the URL signs headers other than host "
                          "(host;range), which the service cannot send"),
])
def test_storage_urls_in_a_job_request_are_checked(emulator: Emulator, job: Job, how: str,
                                                    status: int, message: str) -> None:
    now, creds, base = datetime.now(UTC), job.credentials, f"{job.s3_endpoint}{BUCKET}"
    url = {
        "other bucket": presign(creds, REGION, "GET", f"{job.s3_endpoint}other-bucket/i", 600,
                                now),
        "expired": presign(creds, REGION, "GET", f"{base}/i", 60, now - timedelta(hours=1)),
        "wrong secret": presign(S3Credentials(creds.access_key_id, "nope"), REGION, "GET",
                                f"{base}/i", 600, now),
        "presigned PUT": presign(creds, REGION, "PUT", f"{base}/i", 600, now),
        "not the route": presign(creds, REGION, "GET", f"{emulator.url}/{BUCKET}/i", 600, now),
        "dot segments": presign(creds, REGION, "GET", f"{base}/%2E%2E/other-bucket/i", 600,
                                now),
        "not presigned": f"{base}/i",
        "more headers": presign(creds, REGION, "GET", f"{base}/i", 600, now).replace(
            "X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Brange"),
    }[how]
    before = len(emulator.requests())
    answer = job.proxy("POST", "/v1/jobs", json=job_body(job, input=url))
    assert answer.status_code == status
    assert answer.json()["message"].startswith(message)
    assert not [r for r in emulator.requests()[before:] if r.path.endswith("/v1/jobs")]


# -- pure parts --------------------------------------------------------------------------------
# AWS's chunked-upload example (S3 API reference, "Signature Calculations for the
# Authorization Header: Transferring Payload in Multiple Chunks"): 64 KiB + 1 KiB of 'a'
AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_CHUNKS = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
              "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
              "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
AWS_DATE, AWS_SCOPE = "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"


def aws_body(signatures: list[str]) -> bytes:
    pieces = [b"a" * 65536, b"a" * 1024, b""]
    return b"".join(f"{len(p):x};chunk-signature={s}\r\n".encode() + p + b"\r\n"
                    for p, s in zip(pieces, signatures, strict=True))


def resigner(site_secret: str = AWS_KEY) -> s3proxy.ChunkResigner:
    from slurm_qpu.vendors.common.s3 import signing_key

    job_key = signing_key(AWS_KEY, "20130524", "us-east-1")
    site_key = signing_key(site_secret, "20130524", "us-east-1")
    return s3proxy.ChunkResigner(job_key, AWS_DATE, AWS_SCOPE, AWS_SEED, site_key, AWS_DATE,
                                 AWS_SCOPE, AWS_SEED)


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_chunk_signatures_match_awss_chunked_upload_example() -> None:
    body = aws_body(AWS_CHUNKS)
    # the same key on both sides: the job's chain checks, and the site's is AWS's own
    out = b"".join(resigner()(pieces_of(body, 1000)))
    assert out == body


def test_chunks_are_signed_again_with_the_sites_key_at_the_same_length() -> None:
    from slurm_qpu.vendors.common.s3 import signing_key

    body = aws_body(AWS_CHUNKS)
    out = b"".join(resigner("site-secret")(pieces_of(body, 7000)))
    assert len(out) == len(body) and out != body
    key, previous = signing_key("site-secret", "20130524", "us-east-1"), AWS_SEED
    for piece, line in zip([b"a" * 65536, b"a" * 1024, b""],
                           [ln for ln in out.split(b"\r\n") if b"chunk-signature" in ln],
                           strict=True):
        previous = s3proxy.chunk_signature(key, AWS_DATE, AWS_SCOPE, previous, piece)
        assert line.endswith(previous.encode())


@pytest.mark.parametrize(("body", "message"), [
    (aws_body([AWS_CHUNKS[0], "0" * 64, AWS_CHUNKS[2]]),
     "a chunk signature of the upload does not match: sign with the job's S3 secret"),
    (b"zz;chunk-signature=0\r\n", "bad aws-chunked chunk header 'zz;chunk-signature=0'"),
    (b"5;other=1\r\nhello\r\n", "bad aws-chunked chunk header '5;other=1'"),
    (b"10000;chunk-signature=" + AWS_CHUNKS[0].encode() + b"\r\naaa",
     "the aws-chunked body ends inside a chunk"),
    (b"3;chunk-signature=" + b"0" * 64 + b"\r\naaaa\r\n",
     "an aws-chunked chunk is longer than declared"),
    (b"1" * 5000, "an aws-chunked chunk header is too long"),
])
def test_malformed_chunked_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(s3proxy.StorageRefused) as exc:
        b"".join(resigner()(pieces_of(body, 4096)))
    assert exc.value.message == message


def signed_request(credentials: S3Credentials, when: datetime, *, method: str = "GET",
                   path: str = f"/p/{QPU}/s3/{BUCKET}/k", query: str = "",
                   extra: dict[str, str] | None = None) -> tuple[str, str, str, list[Any]]:
    url = f"http://broker:8080{path}" + (f"?{query}" if query else "")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": "broker:8080", "x-amz-date": f"{when:%Y%m%dT%H%M%SZ}",
               "x-amz-content-sha256": payload, **(extra or {})}
    auth = authorization(credentials, REGION, method, url, headers, payload, when)
    return method, path, query, [*headers.items(), ("Authorization", auth)]


JOB = S3Credentials("sqpu-s3-7-1", "job-secret")


def test_a_header_signed_request_is_verified() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    signed = s3proxy.parse(*signed_request(JOB, now, query="list-type=2&prefix="))
    s3proxy.verify(signed, JOB, now)
    with pytest.raises(s3proxy.StorageRefused, match="is not this job's"):
        s3proxy.verify(signed, S3Credentials("sqpu-s3-8-1", "x"), now)
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.verify(signed, S3Credentials(JOB.access_key_id, "wrong"), now)
    assert exc.value.code == "SignatureDoesNotMatch"


def edit(request: tuple[str, str, str, list[Any]], name: str, value: str | None
         ) -> tuple[str, str, str, list[Any]]:
    method, path, query, headers = request
    kept = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return method, path, query, kept + ([(name, value)] if value is not None else [])


def test_parse_and_verify_refusals_say_what_is_wrong() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    good = signed_request(JOB, now)
    auth = dict(good[3])["Authorization"]
    cases: list[tuple[tuple[str, str, str, list[Any]], str]] = [
        (edit(good, "Authorization", auth.split(", Signature")[0]),
         "the Authorization header needs Credential, SignedHeaders and Signature"),
        (edit(good, "x-amz-date", None),
         "S3 requests through the broker need an x-amz-date header"),
        (edit(good, "x-amz-content-sha256", None),
         "Missing required header for this request: x-amz-content-sha256"),
        (("GET", good[1], "X-Amz-Algorithm=AWS4-HMAC-SHA1", []),
         "X-Amz-Algorithm must be AWS4-HMAC-SHA256"),
        (("GET", good[1], f"X-Amz-Algorithm={s3proxy.ALGORITHM}", []),
         "the presigned URL has no X-Amz-Credential"),
        (("GET", good[1], f"X-Amz-Algorithm={s3proxy.ALGORITHM}&X-Amz-Credential=a/b/c/s3/"
                          "aws4_request&X-Amz-Expires=0", []),
         "X-Amz-Expires must be 1..604800 seconds"),
    ]
    for request, message in cases:
        with pytest.raises(s3proxy.StorageRefused) as exc:
            s3proxy.parse(*request)
        assert exc.value.message.startswith(message), (request, exc.value.message)
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.parse(*edit(good, "Authorization", auth.replace("/s3/", "/sqs/")))
    assert exc.value.message.endswith("is malformed; expected <access key id>/<YYYYMMDD>/"
                                      "<region>/s3/aws4_request")


def test_verify_refusals_say_what_is_wrong() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    skewed = s3proxy.parse(*signed_request(JOB, now - timedelta(hours=1)))
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.verify(skewed, JOB, now)
    assert exc.value.code == "RequestTimeTooSkewed"
    good = s3proxy.parse(*signed_request(JOB, now))
    bad_date = dataclasses.replace(good, amz_date="yesterday")
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.verify(bad_date, JOB, now)
    assert exc.value.message == "invalid request date 'yesterday' (expected YYYYMMDDTHHMMSSZ)"
    other_day = dataclasses.replace(good, day="20200101")
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.verify(other_day, JOB, now)
    assert exc.value.message == (f"the credential's date 20200101 is not the request's date "
                                 f"{now:%Y%m%d}")
    hostless = dataclasses.replace(good, signed_headers=("x-amz-date",))
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.verify(hostless, JOB, now)
    assert exc.value.message == "The host header must be signed."


def test_other_streaming_uploads_are_not_implemented() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    trailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    signed = dataclasses.replace(s3proxy.parse(*signed_request(JOB, now, method="PUT")),
                                 payload_hash=trailer)
    store = s3proxy.Store("http://store", BUCKET, REGION, S3Credentials("a", "b"))
    with pytest.raises(s3proxy.StorageRefused) as exc:
        s3proxy.forward(_resigned(signed, now), f"s3/{BUCKET}/k", store, JOB, now)
    assert exc.value.status == 501
    assert exc.value.message == (
        f"uploads signed as {trailer} are not supported through the broker; use "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a single "
        "chunk")


def _resigned(signed: s3proxy.Signed, now: datetime) -> s3proxy.Signed:
    """``signed`` with its signature made again over its (changed) payload hash."""
    headers = {k: v for k, v in signed.headers.items() if k in signed.signed_headers}
    headers["x-amz-content-sha256"] = signed.payload_hash
    auth = authorization(JOB, REGION, signed.method, f"http://broker:8080{signed.path}",
                         headers, signed.payload_hash, now)
    return dataclasses.replace(signed, headers=headers, signature=auth.rsplit("=", 1)[1])
