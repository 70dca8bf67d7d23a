"""Guessing and flooding: a request proves which job it is before it costs that job
anything (job ids are public and a job's S3 access key id is made of its job id, so anyone
could name it), and an address whose credentials keep failing is slowed down, alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from botocore.exceptions import ClientError
from harness import BrokerUnderTest, StartBroker, bearer, fake_credential
from qs_harness import BUCKET, REGION, job_boto3, qs_job, s3_error
from wire import exchange, request, status

from slurm_qpu.broker.client import munge_payload
from slurm_qpu.broker.limits import Limits
from slurm_qpu.vendors.common.s3 import S3Credentials, authorization
from slurm_qpu.vendors.ibm_quantum_system import storage as s3proxy
from slurm_qpu_emulator import Emulator

ATTACKER, OTHER_NODE = "127.0.0.2", "127.0.0.3"


def forged_s3_get(url: str, job_id: int, gen: int = 1) -> bytes:
    """A GetObject signed with a guessed secret for a job's (predictable) access key id."""
    when = datetime.now(UTC).replace(microsecond=0)
    guess = S3Credentials(s3proxy.access_key_id(job_id, gen), "a-guessed-secret")
    target = f"{url}/p/ibm_kawasaki/s3/{BUCKET}/k"
    headers = {"host": httpx.URL(target).netloc.decode(), "x-amz-date": f"{when:%Y%m%dT%H%M%SZ}",
               "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    auth = authorization(guess, REGION, "GET", target, headers, "UNSIGNED-PAYLOAD", when)
    return request("GET", f"/p/ibm_kawasaki/s3/{BUCKET}/k",
                   {**{k: v for k, v in headers.items() if k != "host"},
                    "Authorization": auth})


def test_forged_s3_requests_never_spend_the_named_jobs_rate_limit(
        emulator: Emulator, start_broker: StartBroker) -> None:
    b = start_broker(emulator.qrmi_config()["resources"],
                     limits=Limits(rate=0.001, burst=3, auth_burst=1000))
    victim = qs_job(b, 61)
    for _ in range(20):
        replies, _ = exchange(b.url, forged_s3_get(b.url, 61), source=ATTACKER, expect=1)
        assert [r.status for r in replies] == [403]
        assert b"<Code>SignatureDoesNotMatch</Code>" in replies[0].body
    s3 = job_boto3(victim)
    for k in range(3):  # the victim's own burst is whole
        s3.put_object(Bucket=BUCKET, Key=f"k{k}", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="k4", Body=b"x")
    assert s3_error(exc)[0] == "SlowDown"  # and then its own requests, not others', count


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"],
                        limits=Limits(auth_failures=0.01, auth_burst=5))


def test_an_address_whose_credentials_keep_failing_is_slowed_down_alone(
        b: BrokerUnderTest) -> None:
    token = b.acquire(62, "ibm_manila")["env"]["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"]
    guess = request("GET", "/p/ibm_manila/api/v1/backends",
                    bearer("sqpu_62_1_" + "A" * 43))
    statuses = [status(b.url, guess, ATTACKER) for _ in range(5)]
    assert statuses == [401] * 5
    replies, _ = exchange(b.url, guess, source=ATTACKER, expect=1)
    assert [r.status for r in replies] == [429]
    assert replies[0].message.startswith("too many failed authentications from 127.0.0.2; "
                                         "try again in ")
    assert int(replies[0].headers["retry-after"]) >= 1
    # even a good credential from that address waits: checking it is the cost being limited
    good = request("GET", "/p/ibm_manila/api/v1/backends", bearer(token))
    assert status(b.url, good, ATTACKER) == 429
    # the same job from another node, and the node API, are served
    assert status(b.url, good, OTHER_NODE) == 200
    assert b.acquire(63, "ibm_manila")["state"] == "acquired"
    # public routes cost nothing to check and stay open to the address
    assert status(b.url, request("GET", "/v1/health"), ATTACKER) == 200


@pytest.mark.parametrize("attempt", ["s3", "iam form"])
def test_every_kind_of_failed_job_credential_counts(b: BrokerUnderTest, attempt: str) -> None:
    qs_job(b, 64)
    raw = {"s3": forged_s3_get(b.url, 64),
           "iam form": request("POST", "/p/ibm_manila/identity/token",
                               {"Content-Type": "application/x-www-form-urlencoded"},
                               b"grant_type=x&apikey=sqpu_1_1_" + b"B" * 43)}[attempt]
    statuses = [status(b.url, raw, ATTACKER) for _ in range(6)]
    assert statuses[-1] == 429 and 429 not in statuses[:5], statuses


def test_a_nodes_prologs_are_never_held_back_by_failures_on_its_address(
        b: BrokerUnderTest) -> None:
    """A job that keeps sending bad tokens shares its node's address with the node's
    prologs and epilogs: those are not made to wait, and bad MUNGE credentials (which
    cost munged little) are not counted against anyone."""
    guess = request("GET", "/p/ibm_manila/api/v1/backends", bearer("sqpu_65_1_" + "A" * 43))
    bogus = request("POST", "/v1/leases/9", {"Authorization": "MUNGE bogus"})
    for _ in range(8):
        status(b.url, guess, ATTACKER)
        assert status(b.url, bogus, ATTACKER) == 401
    assert status(b.url, guess, ATTACKER) == 429
    body = json.dumps({"qpus": "ibm_manila", "user": "alice", "uid": 1000,
                       "time_limit": 3600}).encode()
    credential = fake_credential(munge_payload("POST", "/v1/leases/66", body))
    b.jobs.ids.add(66)
    replies, _ = exchange(b.url, request("POST", "/v1/leases/66",
                                         {"Authorization": f"MUNGE {credential}",
                                          "Content-Type": "application/json"}, body),
                          source=ATTACKER, expect=1)
    assert [r.status for r in replies] == [200], replies
    assert replies[0].json()["state"] == "acquired"
