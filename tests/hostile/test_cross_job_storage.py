"""IBM Quantum System job storage is one bucket shared by every job of the QPU: a job uses it
through the broker with S3 credentials of its own, and must reach only its own objects, by
any S3 operation, header, query or presigned URL."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from harness import BrokerUnderTest, StartBroker
from qs_harness import BUCKET, QPU, REGION, Job, job_boto3, qs_job, s3_error, site_boto3

from slurm_qpu.vendors.common.s3 import authorization
from slurm_qpu_emulator import Emulator


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"])


JOB_IDS = itertools.count(100)  # the emulator's store outlives a test: new ids, new prefixes


@pytest.fixture
def alice(b: BrokerUnderTest) -> Job:
    return qs_job(b, next(JOB_IDS))


@pytest.fixture
def mallory(b: BrokerUnderTest) -> Job:
    """Another user's job on the same QPU, hence the same site bucket."""
    return qs_job(b, next(JOB_IDS))


def store_requests(emulator: Emulator) -> int:
    return sum(1 for r in emulator.requests() if r.path.startswith(f"/{BUCKET}"))


def test_a_job_sees_none_of_another_jobs_objects_in_the_shared_bucket(
        emulator: Emulator, alice: Job, mallory: Job) -> None:
    mine = job_boto3(alice)
    mine.put_object(Bucket=BUCKET, Key="results_1.json", Body=b'{"secret": 1}')
    mine.put_object(Bucket=BUCKET, Key="dir/input_1.json", Body=b"{}")
    theirs = job_boto3(mallory)
    assert theirs.list_objects_v2(Bucket=BUCKET).get("Contents") is None
    assert theirs.list_objects_v2(Bucket=BUCKET, Prefix="slurm-qpu/").get("Contents") is None
    assert theirs.list_objects_v2(Bucket=BUCKET, StartAfter="").get("Contents") is None
    assert theirs.list_objects(Bucket=BUCKET, Marker="a").get("Contents") is None
    for key in ("results_1.json", alice.stored("results_1.json")):  # by name, by full name
        with pytest.raises(ClientError) as exc:
            theirs.get_object(Bucket=BUCKET, Key=key)
        assert s3_error(exc)[0] == "NoSuchKey"
        theirs.put_object(Bucket=BUCKET, Key=key, Body=b"overwritten")
        theirs.delete_object(Bucket=BUCKET, Key=key)
    # the owner's objects are untouched, and it sees them under the names it chose
    assert mine.get_object(Bucket=BUCKET, Key="results_1.json")["Body"].read() == \
        b'{"secret": 1}'
    listed = mine.list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listed["Contents"]] == ["dir/input_1.json", "results_1.json"]
    after = mine.list_objects_v2(Bucket=BUCKET, StartAfter="dir/input_1.json")
    assert [o["Key"] for o in after["Contents"]] == ["results_1.json"]
    site = site_boto3(emulator)
    assert site.get_object(Bucket=BUCKET, Key=alice.stored("results_1.json"))[
        "Body"].read() == b'{"secret": 1}'


def test_a_listing_pages_through_the_jobs_own_objects_only(alice: Job, mallory: Job) -> None:
    mine = job_boto3(alice)
    for k in range(5):
        mine.put_object(Bucket=BUCKET, Key=f"k{k}", Body=b"x")
    job_boto3(mallory).put_object(Bucket=BUCKET, Key="k9", Body=b"x")
    pages = mine.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, MaxKeys=2)
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == \
        [f"k{k}" for k in range(5)]


def test_presigned_urls_a_job_hands_the_service_stay_inside_its_own_objects(
        emulator: Emulator, alice: Job, mallory: Job) -> None:
    job_boto3(alice).put_object(Bucket=BUCKET, Key="input_1.json", Body=b"{}")
    answer = mallory.proxy("POST", "/v1/jobs", json={
        "id": "mallory-1", "backend": QPU, "program_id": "sampler", "timeout_secs": 60,
        "storage": mallory.storage("1")})
    assert answer.status_code == 204, answer.text
    token = httpx.post(f"{emulator.url}/identity/token", data={
        "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
        "apikey": emulator.config.api_key}).json()["access_token"]
    seen = httpx.get(f"{emulator.url}/quantum-system/v1/jobs/mallory-1", headers={
        "Authorization": f"Bearer {token}",
        "Service-CRN": emulator.config.service_crn}).json()["storage"]
    for part in ("input", "results", "logs"):
        path = httpx.URL(seen[part]["presigned_url"]).path
        assert path == f"/{BUCKET}/{mallory.stored(part)}_1.json", path


CALLS: dict[str, Callable[[Any, Job], Any]] = {
    "copy_object": lambda s3, other: s3.copy_object(
        Bucket=BUCKET, Key="mine", CopySource={"Bucket": BUCKET,
                                              "Key": other.stored("results_1.json")}),
    "copy_from_another_bucket": lambda s3, other: s3.copy_object(
        Bucket=BUCKET, Key="mine", CopySource={"Bucket": "other-bucket", "Key": "x"}),
    "upload_part_copy": lambda s3, other: s3.upload_part_copy(
        Bucket=BUCKET, Key="mine", UploadId="u", PartNumber=1,
        CopySource={"Bucket": BUCKET, "Key": other.stored("results_1.json")}),
    "put_with_acl": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                ACL="public-read"),
    "put_with_grant": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                  GrantRead="uri=everyone"),
    "put_with_tagging": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                    Tagging="a=b"),
    "put_with_retention": lambda s3, _: s3.put_object(
        Bucket=BUCKET, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=datetime(2099, 1, 1, tzinfo=UTC)),
    "put_with_legal_hold": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                       ObjectLockLegalHoldStatus="ON"),
    "put_with_website_redirect": lambda s3, _: s3.put_object(
        Bucket=BUCKET, Key="k", Body=b"x", WebsiteRedirectLocation="https://example.org/"),
    "put_with_storage_class": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                          StorageClass="GLACIER"),
    "put_with_encryption": lambda s3, _: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x",
                                                       ServerSideEncryption="AES256"),
    "put_object_acl": lambda s3, _: s3.put_object_acl(Bucket=BUCKET, Key="k",
                                                      ACL="public-read"),
    "get_object_acl": lambda s3, _: s3.get_object_acl(Bucket=BUCKET, Key="k"),
    "put_object_tagging": lambda s3, _: s3.put_object_tagging(
        Bucket=BUCKET, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
    "get_object_tagging": lambda s3, _: s3.get_object_tagging(Bucket=BUCKET, Key="k"),
    "put_object_retention": lambda s3, _: s3.put_object_retention(
        Bucket=BUCKET, Key="k", Retention={"Mode": "GOVERNANCE",
                                           "RetainUntilDate": datetime(2099, 1, 1)}),
    "put_object_legal_hold": lambda s3, _: s3.put_object_legal_hold(
        Bucket=BUCKET, Key="k", LegalHold={"Status": "ON"}),
    "delete_objects": lambda s3, other: s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": other.stored("results_1.json")}]}),
    "list_object_versions": lambda s3, _: s3.list_object_versions(Bucket=BUCKET),
    "list_multipart_uploads": lambda s3, _: s3.list_multipart_uploads(Bucket=BUCKET),
    "get_bucket_policy": lambda s3, _: s3.get_bucket_policy(Bucket=BUCKET),
    "put_bucket_policy": lambda s3, _: s3.put_bucket_policy(Bucket=BUCKET, Policy="{}"),
    "get_bucket_acl": lambda s3, _: s3.get_bucket_acl(Bucket=BUCKET),
    "put_bucket_website": lambda s3, _: s3.put_bucket_website(
        Bucket=BUCKET, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}),
    "delete_bucket": lambda s3, _: s3.delete_bucket(Bucket=BUCKET),
    "list_buckets": lambda s3, _: s3.list_buckets(),
    "other_bucket": lambda s3, _: s3.get_object(Bucket="other-bucket", Key="k"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_operations_beyond_the_jobs_own_objects_are_refused_before_the_store(
        emulator: Emulator, alice: Job, mallory: Job, call: str) -> None:
    job_boto3(alice).put_object(Bucket=BUCKET, Key="results_1.json", Body=b"{}")
    before = store_requests(emulator)
    with pytest.raises(ClientError) as exc:
        CALLS[call](job_boto3(mallory), alice)
    code, message = s3_error(exc)
    assert code == "AccessDenied", (code, message)
    assert "not available" in message or "may use the bucket" in message, message
    assert store_requests(emulator) == before  # nothing reached the site's store


def test_refusals_name_what_was_asked_for(mallory: Job) -> None:
    s3 = job_boto3(mallory)
    expected = {
        "copy_object": "copying objects (the source can be another job's object or another "
                       "bucket) are not available to jobs (S3 header x-amz-copy-source)",
        "put_with_tagging": "object tags are not available to jobs (S3 header x-amz-tagging)",
        "put_object_acl": "the S3 sub-resource or parameter 'acl' is not available to jobs "
                          "through the broker",
        "delete_objects": "deleting several objects in one request (DeleteObjects) is not "
                          "available through the broker; delete them one by one",
        "list_object_versions": "the S3 sub-resource or parameter 'versions' is not "
                                "available to jobs through the broker",
        "put_bucket_policy": "creating, deleting or configuring the bucket qpu-jobs is not "
                             "available to jobs",
    }
    for call, message in expected.items():
        with pytest.raises(ClientError) as exc:
            CALLS[call](s3, mallory)
        assert s3_error(exc)[1] == message, call


def signed_put(job: Job, key: str, body: bytes, extra: dict[str, str]) -> httpx.Response:
    """A PUT signed with the job's credentials over every header it carries."""
    when = datetime.now(UTC).replace(microsecond=0)
    url = f"{job.s3_endpoint}{BUCKET}/{key}"
    import hashlib

    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": httpx.URL(url).netloc.decode(), "x-amz-date": f"{when:%Y%m%dT%H%M%SZ}",
               "x-amz-content-sha256": payload, **{k.lower(): v for k, v in extra.items()}}
    auth = authorization(job.credentials, REGION, "PUT", url, headers, payload, when)
    return httpx.put(url, content=body, headers={**headers, "authorization": auth})


def test_only_allow_listed_headers_reach_the_store(emulator: Emulator, mallory: Job) -> None:
    sneaky = {"X-HTTP-Method-Override": "DELETE", "X-Original-URL": "/other-bucket/k",
              "X-Rewrite-URL": "/other-bucket/k", "X-Forwarded-Host": "evil.example",
              "Forwarded": "host=evil.example", "Cookie": "session=1",
              "X-Amz-Expected-Bucket-Owner": "123"}
    refused = signed_put(mallory, "k", b"data", sneaky)
    assert refused.status_code == 403
    assert "x-amz-expected-bucket-owner is not available to jobs" in refused.text
    del sneaky["X-Amz-Expected-Bucket-Owner"]
    before = len(emulator.requests())
    answer = signed_put(mallory, "k", b"data", {**sneaky, "X-Amz-Meta-Run": "7",
                                                 "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    put = [r for r in emulator.requests()[before:] if r.method == "PUT"][-1]
    assert put.path == f"/{BUCKET}/{mallory.stored('k')}"
    assert put.headers["x-amz-meta-run"] == "7"
    assert put.headers["content-type"] == "application/json"
    for name in sneaky:
        assert name.lower() not in put.headers, name
    stored = site_boto3(emulator).head_object(Bucket=BUCKET, Key=mallory.stored("k"))
    assert stored["Metadata"] == {"run": "7"}


def test_a_job_cannot_place_an_object_outside_its_prefix_by_encoding(
        emulator: Emulator, mallory: Job) -> None:
    s3 = job_boto3(mallory)
    for key in ("../job-21.1/x", "a/../../x", "./x"):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        assert s3_error(exc)[0] in ("AccessDenied", "400"), key
    keys = site_boto3(emulator).list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert all(o["Key"].startswith("slurm-qpu/job-") for o in keys), json.dumps(
        [o["Key"] for o in keys])


def test_an_object_comes_back_byte_for_byte_whatever_its_type(mallory: Job) -> None:
    """Whether the broker reads a store's answer (to take its prefix off the keys) depends
    on what was asked, never on the type the object was stored with."""
    s3 = job_boto3(mallory)
    body = f"<Doc><Key>{mallory.stored('report.txt')}</Key></Doc>".encode() * 100
    s3.put_object(Bucket=BUCKET, Key="doc.xml", Body=body, ContentType="application/xml")
    got = s3.get_object(Bucket=BUCKET, Key="doc.xml")
    assert got["Body"].read() == body
    assert s3.head_object(Bucket=BUCKET, Key="doc.xml")["ContentLength"] == len(body)


def test_a_presigned_url_dated_at_the_end_of_time_is_refused_not_an_error(
        b: BrokerUnderTest, mallory: Job, caplog: pytest.LogCaptureFixture) -> None:
    key = mallory.credentials.access_key_id
    url = (f"{mallory.s3_endpoint}{BUCKET}/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           f"&X-Amz-Credential={key}%2F99991231%2F{REGION}%2Fs3%2Faws4_request"
           "&X-Amz-Date=99991231T235959Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
           "&X-Amz-Signature=" + "0" * 64)
    answer = httpx.get(url)
    assert answer.status_code == 403, answer.text
    assert "<Code>RequestTimeTooSkewed</Code>" in answer.text
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
