"""Inputs a hostile job tries on the proxy and the node API that must all be refused, by
class: forged and replayed tokens and JWTs, other jobs' vendor objects named by path, case,
encoding, query or body, and overrides that would move an endpoint or a credential."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from harness import BrokerUnderTest, StartBroker, bearer

from slurm_qpu import jwt
from slurm_qpu_emulator import Emulator

QPU = "ibm_manila"
EXPIRED = ("missing, unknown or expired job token (a job's token stops working when the job "
           "ends)")


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"])


def ibm(b: BrokerUnderTest, job_id: int) -> dict[str, str]:
    lease = b.acquire(job_id, QPU)
    assert lease["state"] == "acquired", lease
    env = lease["env"]
    return {"token": env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"],
            "session": env[f"{QPU}_QRMI_JOB_ACQUISITION_TOKEN"]}


def call(b: BrokerUnderTest, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{b.url}/p/{QPU}/{path}",
                         headers={**bearer(token), **kw.pop("headers", {})}, **kw)


def forged_jwts(key: bytes, job_id: int, other: int) -> dict[str, str]:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "job": job_id, "gen": 1}
    head_none = jwt.b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = jwt.b64(json.dumps(claims).encode())
    return {
        "signed with another key": jwt.sign(b"not the broker's key", claims),
        "alg none": f"{head_none}.{body}.",
        "alg none, signature kept": f"{head_none}.{body}.{jwt.sign(key, claims).split('.')[2]}",
        "expired": jwt.sign(key, {**claims, "exp": now - 1}),
        "no expiry": jwt.sign(key, {"iat": now, "job": job_id, "gen": 1}),
        "another job's claims": jwt.sign(b"guess", {**claims, "job": other}),
        "the next generation": jwt.sign(key, {**claims, "gen": 2}),
        "job as a string": jwt.sign(key, {**claims, "job": str(job_id)}),
        "three dots": "a.b.c.d",
        "claims swapped in": ".".join([jwt.sign(key, claims).split(".")[0],
                                       jwt.b64(json.dumps({**claims, "job": other}).encode()),
                                       jwt.sign(key, claims).split(".")[2]]),
    }


def test_forged_and_tampered_access_tokens_are_refused(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    ibm(b, 71)
    ibm(b, 72)
    key = b.service.tokens.key  # even with the broker's key, a dead lease is dead
    before = len(emulator.requests())
    for name, token in forged_jwts(key, 71, 72).items():
        answer = call(b, "GET", "api/v1/backends", token)
        assert (answer.status_code, answer.json()["message"]) == (401, EXPIRED), name
    assert len(emulator.requests()) == before


def test_a_token_of_a_previous_run_of_the_same_job_is_refused(b: BrokerUnderTest) -> None:
    first = ibm(b, 73)
    b.node().release(73)
    second = ibm(b, 73)  # requeued: generation 2
    assert call(b, "GET", "api/v1/backends", first["token"]).status_code == 401
    assert call(b, "GET", "api/v1/backends", second["token"]).status_code == 200
    access = call(b, "POST", "identity/token", first["token"]).status_code
    assert access == 401


@pytest.mark.parametrize("template", [
    "api/v1/jobs/{id}", "api/v1/jobs/{id}/", "api/v1/jobs/{id}/results",
    "api/v1/jobs/{id}/cancel", "api/v1/jobs/{id}/logs", "api/v1/jobs/{id}/metrics",
    "experimental/api/v1/jobs/{id}", "api/v1/jobs/{id}%3Fx", "api/v1/jobs/{id}%23",
    "api/v1/jobs/%20{id}", "api/v1/Jobs/{id}", "api/v1/JOBS/{id}",
    "api/v1/jobs/{id};x", "api/v1/jobs/{id}?id={mine}", "api/v1/sessions/{session}",
    "api/v1/sessions/{session}/close", "api/v1/sessions/{session}%2F..",
    "api/v1/sessions/{session}?session_id={my_session}",
])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH"])
def test_another_jobs_vendor_objects_are_refused_however_they_are_named(
        b: BrokerUnderTest, emulator: Emulator, template: str, method: str) -> None:
    victim, attacker = ibm(b, 74), ibm(b, 75)
    made = call(b, "POST", "api/v1/jobs", victim["token"], json={
        "program_id": "sampler", "params": {"pubs": [], "version": 2}})
    assert made.status_code == 200, made.text
    mine = call(b, "POST", "api/v1/jobs", attacker["token"], json={
        "program_id": "sampler", "params": {"pubs": [], "version": 2}}).json()["id"]
    path = template.format(id=made.json()["id"], session=victim["session"], mine=mine,
                           my_session=attacker["session"])
    before = len(emulator.requests())
    answer = call(b, method, path, attacker["token"])
    assert answer.status_code in (400, 403, 404), (path, answer.status_code, answer.text)
    reached = [r for r in emulator.requests()[before:] if r.path != "/identity/token"]
    assert reached == [], (path, reached)


@pytest.mark.parametrize("body", [
    {"backend": "ibm_brisbane"}, {"session_id": "someone-elses"},
    {"backend": "IBM_MANILA"}, {"session_id": None, "backend": "ibm_brisbane"},
    {"backend": ["ibm_manila", "ibm_brisbane"]}, {"backend": {"name": "ibm_brisbane"}},
])
def test_a_new_job_cannot_be_pointed_at_another_backend_or_session(
        b: BrokerUnderTest, emulator: Emulator, body: dict[str, Any]) -> None:
    attacker = ibm(b, 76)
    before = len(emulator.requests())
    answer = call(b, "POST", "api/v1/jobs", attacker["token"], json={
        "program_id": "sampler", "params": {"pubs": [], "version": 2}, **body})
    assert answer.status_code == 403, answer.text
    assert [r for r in emulator.requests()[before:] if r.path != "/identity/token"] == []


def test_a_duplicate_json_key_cannot_smuggle_another_backend(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    """JSON parsers disagree on repeated keys: the broker re-serialises what it checked,
    so the vendor sees the one value the broker decided on."""
    attacker = ibm(b, 77)
    raw = (b'{"program_id": "sampler", "params": {"pubs": [], "version": 2}, '
           b'"backend": "ibm_manila", "backend": "ibm_brisbane"}')
    answer = call(b, "POST", "api/v1/jobs", attacker["token"], content=raw,
                  headers={"Content-Type": "application/json"})
    if answer.status_code == 200:
        made = [r for r in emulator.requests() if r.method == "POST"
                and r.path.endswith("/jobs")][-1]
        assert made.status == 200
        job = call(b, "GET", f"api/v1/jobs/{answer.json()['id']}", attacker["token"]).json()
        assert job["backend"] == QPU
    else:
        assert answer.status_code == 403


def test_overrides_of_endpoints_and_credentials_change_nothing(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    overrides = {QPU: {"QRMI_IBM_QCS_ENDPOINT": "http://evil.example/api/v1",
                       "QRMI_IBM_QCS_IAM_ENDPOINT": "http://evil.example",
                       "QRMI_IBM_QCS_IAM_APIKEY": "mine", "QRMI_IBM_QCS_SERVICE_CRN": "crn:x",
                       "QRMI_IBM_QCS_SESSION_MODE": "batch"}}
    lease = b.acquire(78, QPU, overrides=json.dumps(overrides))
    assert lease["state"] == "acquired", lease
    assert len(lease["warnings"]) == 4, lease["warnings"]
    env = lease["env"]
    assert env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"] == f"{b.url}/p/{QPU}/api/v1"
    assert "evil" not in json.dumps(env) and "crn:x" not in json.dumps(env)
    answer = call(b, "GET", f"api/v1/backends/{QPU}/configuration",
                  env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"])
    assert answer.status_code == 200  # reached the site's vendor, with the site's key
    for garbage in ("not json", "[1, 2]", json.dumps({QPU: "x"}), json.dumps({"other": {}})):
        again = b.acquire(79 + len(garbage), QPU, overrides=garbage)
        assert again["state"] == "acquired"
        assert again["env"][f"{QPU}_QRMI_IBM_QCS_ENDPOINT"] == f"{b.url}/p/{QPU}/api/v1"
