"""The job proxy's security, over HTTP, with the emulator as the vendor: a job reaches only
its own QPUs, session and vendor jobs, with a token that dies with the job; bodies, paths and
request rates are bounded; every request is audited; vendors never see a job token."""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness import Answer, BrokerUnderTest, StartBroker, bearer, raw, wait_for

from slurm_qpu.broker.limits import Limits
from slurm_qpu_emulator import Emulator

QPU, OTHER = "ibm_manila", "ibm_brisbane"
EXPIRED = ("missing, unknown or expired job token (a job's token stops working when the job "
           "ends)")


@dataclass
class Job:
    """A job as the proxy sees it: its id, token and IBM session."""

    b: BrokerUnderTest
    job_id: int
    qpu: str
    env: dict[str, str]

    @property
    def token(self) -> str:
        return self.env[f"{self.qpu}_QRMI_IBM_QCS_IAM_APIKEY"]

    @property
    def session(self) -> str:
        return self.env[f"{self.qpu}_QRMI_JOB_ACQUISITION_TOKEN"]

    def call(self, method: str, path: str, *, qpu: str | None = None,
             body: Any = None, token: str | None = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["content"] = json.dumps(body).encode()
        headers = {**bearer(token or self.token), **kw.pop("headers", {})}
        return httpx.request(method, f"{self.b.url}/p/{qpu or self.qpu}/{path}",
                             headers=headers, **kw)

    def new_ibm_job(self, **fields: Any) -> httpx.Response:
        return self.call("POST", "api/v1/jobs", body={
            "program_id": "sampler", "params": {"pubs": [], "version": 2}, **fields})


def start_job(b: BrokerUnderTest, job_id: int, qpu: str = QPU) -> Job:
    lease = b.acquire(job_id, qpu)
    assert lease["state"] == "acquired", lease
    return Job(b, job_id, qpu, lease["env"])


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"])


def refused(response: httpx.Response | Answer, status: int, message: str) -> bool:
    code = response.status_code if isinstance(response, httpx.Response) else response.status
    body = response.json()
    assert (code, body["message"]) == (status, message)
    assert body["errors"] == [{"message": message, "code": status}]  # what IBM's SDK shows
    return True


def vendor_calls(emulator: Emulator, since: int) -> list[Any]:
    """What reached the vendor's API since ``since`` (the broker's own IAM logins aside)."""
    return [r for r in emulator.requests()[since:] if r.path != "/identity/token"]


def nothing_reached_the_vendor(emulator: Emulator, since: int) -> bool:
    """The emulator logs a request once it has answered it, which may be after the broker
    answered the job: give a request that did get through the time to show up."""
    if not wait_for(lambda: bool(vendor_calls(emulator, since)), timeout=0.5):
        return True
    # it got through: the emulator may still be printing the traceback of its answer to a
    # closed connection. Let it finish before pytest formats ours: both call ast.parse
    # (3.11's tracebacks do), which is not thread-safe ("AST constructor recursion depth
    # mismatch")
    time.sleep(0.3)
    return False


def runtime(emulator: Emulator) -> Any:
    return next(s for s in emulator.server.services if s.prefix == "/api/v1").state


# ---------------------------------------------------------------------------- finished jobs

def test_a_finished_jobs_token_is_refused_on_every_route(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    lease = b.acquire(7, f"{QPU},EMU_FREE,ibm_kawasaki")
    assert lease["state"] == "acquired", lease
    job = Job(b, 7, QPU, lease["env"])
    access = job.call("POST", "identity/token",
                      data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                            "apikey": job.token}).json()["access_token"]
    created = job.new_ibm_job().json()["id"]
    b.node().release(7)
    before = len(emulator.requests())
    routes = [("GET", "api/v1/backends"), ("GET", f"api/v1/backends/{QPU}/configuration"),
              ("GET", f"api/v1/sessions/{job.session}"), ("DELETE", f"api/v1/sessions/"
                                                                    f"{job.session}/close"),
              ("POST", "api/v1/jobs"), ("GET", "api/v1/jobs"), ("GET", f"api/v1/jobs/{created}"),
              ("GET", "api/v1/instances/usage"), ("POST", "identity/token")]
    others = [("EMU_FREE", "GET", "core-fast/api/v1/devices"),
              ("EMU_FREE", "POST", "core-fast/api/v1/batches"),
              ("EMU_FREE", "GET", "core-fast/api/v2/batches/b1"),
              ("ibm_kawasaki", "GET", "v1/backends"), ("ibm_kawasaki", "POST", "v1/jobs"),
              ("ibm_kawasaki", "POST", "identity/token")]
    for token in (job.token, access):
        for qpu, method, path in [(QPU, m, p) for m, p in routes] + others:
            response = job.call(method, path, qpu=qpu, token=token, body={})
            assert refused(response, 401, EXPIRED), (qpu, path)
    # the SDKs' API-key exchange sends the token in a form, not a header
    form = httpx.post(f"{b.url}/p/{QPU}/identity/token", data={"apikey": job.token})
    assert refused(form, 401, EXPIRED)
    assert len(emulator.requests()) == before


# ---------------------------------------------------------------------------- other jobs

def test_a_job_cannot_reach_another_jobs_session(b: BrokerUnderTest, emulator: Emulator) -> None:
    a, other = start_job(b, 7), start_job(b, 8)
    assert a.session != other.session
    before = len(emulator.requests())
    for method, path in (("GET", f"api/v1/sessions/{other.session}"),
                         ("PATCH", f"api/v1/sessions/{other.session}"),
                         ("DELETE", f"api/v1/sessions/{other.session}/close")):
        response = a.call(method, path, body={"accepting_jobs": False})
        assert refused(response, 403, f"session {other.session} is not this job's session "
                                      f"({a.session})")
    assert len(emulator.requests()) == before
    assert a.call("GET", f"api/v1/sessions/{a.session}").json()["id"] == a.session


def test_a_job_cannot_reach_a_qpu_it_did_not_request(b: BrokerUnderTest) -> None:
    a = start_job(b, 7)
    start_job(b, 8, OTHER)
    message = f"job 7 did not request QPU {OTHER} (it holds {QPU})"
    assert refused(a.call("GET", "api/v1/backends", qpu=OTHER), 403, message)
    assert refused(a.call("POST", "identity/token", qpu=OTHER), 403, message)
    assert refused(a.call("GET", "core-fast/api/v1/devices", qpu="EMU_FREE"), 403,
                   f"job 7 did not request QPU EMU_FREE (it holds {QPU})")


def test_a_job_cannot_open_a_new_session(b: BrokerUnderTest, emulator: Emulator) -> None:
    a = start_job(b, 7)
    sessions = len(runtime(emulator).sessions)
    response = a.call("POST", "api/v1/sessions", body={"backend": QPU, "mode": "dedicated"})
    assert refused(response, 403, (
        f"this job already has an IBM Quantum session ({a.session}), opened by slurm-qpu for "
        "the job's lifetime; run in it (for example with slurm_qpu.client.ibm_session(), or "
        "Session.from_id)"))
    assert len(runtime(emulator).sessions) == sessions


def test_a_job_cannot_touch_an_ibm_job_it_did_not_create(b: BrokerUnderTest) -> None:
    a, other = start_job(b, 7), start_job(b, 8)
    theirs = other.new_ibm_job()
    assert theirs.status_code == 200, theirs.text
    vendor_id = theirs.json()["id"]
    message = f"IBM Quantum job {vendor_id} was not created by this Slurm job"
    for method, path in (("GET", f"api/v1/jobs/{vendor_id}"),
                         ("GET", f"api/v1/jobs/{vendor_id}/results"),
                         ("POST", f"api/v1/jobs/{vendor_id}/cancel"),
                         ("DELETE", f"api/v1/jobs/{vendor_id}")):
        assert refused(a.call(method, path), 403, message)
    assert other.call("GET", f"api/v1/jobs/{vendor_id}").json()["id"] == vendor_id
    listed = a.call("GET", "api/v1/jobs").json()
    assert listed["jobs"] == [] and listed["count"] == 0


def test_a_new_ibm_job_must_be_for_the_jobs_qpu_and_session(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    a, other = start_job(b, 7), start_job(b, 8, OTHER)
    before = len(runtime(emulator).jobs)
    assert refused(a.new_ibm_job(backend=OTHER), 403, f"this job holds QPU {QPU}, not {OTHER}")
    assert refused(a.new_ibm_job(session_id=other.session), 403,
                   f"session {other.session} is not this job's session ({a.session})")
    assert refused(a.call("POST", "api/v1/jobs", content=b"[1]"), 400,
                   "the job request is not a JSON object")
    assert len(runtime(emulator).jobs) == before


def test_a_new_ibm_job_without_a_session_is_placed_in_the_jobs_session(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    a = start_job(b, 7)
    created = a.new_ibm_job()
    assert created.status_code == 200, created.text
    vendor_job = runtime(emulator).jobs[created.json()["id"]]
    assert (vendor_job.backend, vendor_job.session_id) == (QPU, a.session)
    assert a.call("GET", f"api/v1/jobs/{vendor_job.id}").status_code == 200  # it is the job's
    assert [j["id"] for j in a.call("GET", "api/v1/jobs").json()["jobs"]] == [vendor_job.id]


def test_the_backend_list_shows_only_the_jobs_qpu(b: BrokerUnderTest) -> None:
    a = start_job(b, 7)
    devices = a.call("GET", "api/v1/backends").json()["devices"]
    assert [d["name"] for d in devices] == [QPU]
    assert refused(a.call("GET", f"api/v1/backends/{OTHER}/configuration"), 403,
                   f"this job holds QPU {QPU}, not {OTHER}")
    assert a.call("GET", f"api/v1/backends/{QPU}/configuration").status_code == 200


def test_a_route_no_view_knows_is_refused(b: BrokerUnderTest, emulator: Emulator) -> None:
    a = start_job(b, 7)
    before = len(emulator.requests())
    assert refused(a.call("GET", "api/v1/sessions"), 403,
                   "GET /api/v1/sessions is not available to jobs through the broker")
    assert refused(a.call("GET", "admin"), 404, "not an IBM Quantum API route: /admin")
    assert len(emulator.requests()) == before


# ---------------------------------------------------------------------------- bad tokens

def test_bad_tokens_are_refused(b: BrokerUnderTest, emulator: Emulator) -> None:
    a = start_job(b, 7)
    forged = a.token[:-1] + ("A" if a.token[-1] != "A" else "B")
    before = len(emulator.requests())
    for headers in (bearer("garbage"), bearer(forged), bearer(a.token[:-1]),
                    bearer(a.token.replace("sqpu_7_", "sqpu_8_")), bearer("a.b.c"), {},
                    {"Authorization": "Basic !!!not base64"},
                    {"Authorization": f"Token {a.token}"}):
        response = httpx.get(f"{b.url}/p/{QPU}/api/v1/backends", headers=headers)
        assert refused(response, 401, EXPIRED), headers
    assert len(emulator.requests()) == before


# ---------------------------------------------------------------------------- limits

@pytest.fixture
def small(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"], limits=Limits(max_body=1024))


# the view reads a new IBM job's body; a session update's body is passed on as it comes
ROUTES = [pytest.param("POST", "api/v1/jobs", id="read-by-the-view"),
          pytest.param("PATCH", "api/v1/sessions/{session}", id="streamed")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_body_declared_over_the_limit_is_refused_before_the_vendor_sees_it(
        small: BrokerUnderTest, emulator: Emulator, method: str, path: str) -> None:
    a = start_job(small, 7)
    before = len(emulator.requests())
    answer = raw(small.url, method, f"/p/{QPU}/{path.format(session=a.session)}",
                 body=b"{" + b" " * 2046 + b"}",
                 headers={**bearer(a.token), "Content-Type": "application/json"})
    assert refused(answer, 413, "request body of 2048 bytes is over the broker's limit of "
                                "1024 bytes")
    assert nothing_reached_the_vendor(emulator, before)


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_chunked_body_growing_over_the_limit_is_refused_before_the_vendor_sees_it(
        small: BrokerUnderTest, emulator: Emulator, method: str, path: str) -> None:
    a = start_job(small, 7)
    before = len(emulator.requests())
    answer = raw(small.url, method, f"/p/{QPU}/{path.format(session=a.session)}",
                 chunks=[b"{" + b" " * 511] + [b" " * 512] * 3 + [b"}"],
                 headers={**bearer(a.token), "Content-Type": "application/json"})
    assert refused(answer, 413, "request body is over the broker's limit of 1024 bytes")
    assert nothing_reached_the_vendor(emulator, before)


def test_a_body_under_the_limit_goes_through(small: BrokerUnderTest) -> None:
    a = start_job(small, 7)
    answer = raw(small.url, "PATCH", f"/p/{QPU}/api/v1/sessions/{a.session}",
                 body=json.dumps({"accepting_jobs": True}).encode(),
                 headers={**bearer(a.token), "Content-Type": "application/json"})
    assert answer.status == 204, answer.body


@pytest.mark.parametrize("path,message", [
    ("/api/v1/../../admin", "request path not allowed ('.' or '..' segments)"),
    ("/api/v1/%2e%2e/%2E%2E/admin", "request path not allowed ('.' or '..' segments)"),
    ("/api/v1/./backends", "request path not allowed ('.' or '..' segments)"),
    ("/api/v1/jobs%2F..%2Fsessions", "request path not allowed (encoded separators or empty "
                                     "segments)"),
    ("///api/v1/backends", "request path not allowed (encoded separators or empty segments)"),
    ("/api/v1//backends", "request path not allowed (encoded separators or empty segments)"),
    ("/api/v1\\backends", "request path not allowed (encoded separators or empty segments)"),
    ("/api/v1/%5cbackends", "request path not allowed (encoded separators or empty segments)"),
    ("/api/v1/backends%00", "request path not allowed (encoded separators or empty segments)"),
], ids=["dotdot", "encoded-dotdot", "dot", "encoded-slash", "double-slash-start",
        "double-slash", "backslash", "encoded-backslash", "nul"])
def test_path_tricks_are_refused(b: BrokerUnderTest, emulator: Emulator, path: str,
                                 message: str) -> None:
    a = start_job(b, 7)
    before = len(emulator.requests())
    answer = raw(b.url, "GET", f"/p/{QPU}{path}", headers=bearer(a.token))
    assert refused(answer, 400, message)
    assert vendor_calls(emulator, before) == []


def test_one_empty_segment_after_the_qpu_name_is_a_clients_join_and_means_the_same_route(
        b: BrokerUnderTest) -> None:
    # qrmi joins "/v1/..." onto an endpoint ending in "/" (which Felis's provider needs)
    a = start_job(b, 7)
    joined = raw(b.url, "GET", f"/p/{QPU}//api/v1/backends", headers=bearer(a.token))
    assert joined.status == 200, joined.body
    assert [d["name"] for d in joined.json()["devices"]] == [QPU]


def test_a_job_over_its_rate_limit_waits_and_other_jobs_do_not(
        emulator: Emulator, start_broker: StartBroker) -> None:
    b = start_broker(emulator.qrmi_config()["resources"], limits=Limits(rate=0.01, burst=2))
    a, other = start_job(b, 7), start_job(b, 8)
    assert [a.call("GET", "api/v1/backends").status_code for _ in range(2)] == [200, 200]
    limited = a.call("GET", "api/v1/backends")
    assert refused(limited, 429, "job 7 is over its rate limit of 0.01 requests per second")
    assert int(limited.headers["Retry-After"]) >= 1
    assert other.call("GET", "api/v1/backends").status_code == 200


# ---------------------------------------------------------------------------- audit

AUDIT = re.compile(r'^job=(\S+) user=(\S+) qpu=(\S+) route="([A-Z]+ \S+)" status=(\S+) '
                   r"bytes_in=(\d+) bytes_out=(\d+) ms=\d+\.\d client=\S+$")


def proxied(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "slurm_qpu.audit" and ' /p/' in r.getMessage()]


def test_each_proxied_request_is_audited_once_without_its_token(
        b: BrokerUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    a = start_job(b, 7)
    with caplog.at_level(logging.INFO, "slurm_qpu.audit"):
        backends = a.call("GET", "api/v1/backends")
        created = a.new_ibm_job()
        a.call("GET", "api/v1/backends", qpu=OTHER)
        a.call("GET", "api/v1/backends", token="garbage")
        # the line is written once the answer is sent: the acquire's may come late too
        assert wait_for(lambda: len(proxied(caplog)) >= 4)
    assert created.status_code == 200, created.text
    lines = proxied(caplog)
    parsed = [AUDIT.match(line) for line in lines]
    assert all(parsed), lines
    # each thread writes its line after answering: the order may vary
    got = sorted(m.groups()[:5] for m in parsed if m)
    assert got == sorted([
        ("7", "alice", QPU, f"GET /p/{QPU}/api/v1/backends", "200"),
        ("7", "alice", QPU, f"POST /p/{QPU}/api/v1/jobs", str(created.status_code)),
        ("7", "alice", OTHER, f"GET /p/{OTHER}/api/v1/backends", "403"),
        ("-", "-", QPU, f"GET /p/{QPU}/api/v1/backends", "401")])
    sizes = {(m.group(4), m.group(5)): (int(m.group(6)), int(m.group(7))) for m in parsed if m}
    assert sizes[(f"GET /p/{QPU}/api/v1/backends", "200")] == (0, len(backends.content))
    assert sizes[(f"POST /p/{QPU}/api/v1/jobs", "200")][0] > 0  # the job request's body
    assert not any(a.token in line for line in lines)


# ---------------------------------------------------------------------------- upstream

def test_the_vendor_never_sees_a_job_token_and_always_the_real_service_crn(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    a = start_job(b, 7)
    before = len(emulator.requests())
    access = a.call("POST", "identity/token", data={"apikey": a.token}).json()["access_token"]
    placeholder = a.env[f"{QPU}_QRMI_IBM_QCS_SERVICE_CRN"]
    headers = {"Service-CRN": placeholder, "X-Api-Key": a.token, "Cookie": f"t={a.token}"}
    for token in (a.token, access):
        assert a.call("GET", "api/v1/backends", token=token, headers=headers).status_code == 200
        assert a.new_ibm_job().status_code == 200
        assert a.call("GET", f"api/v1/sessions/{a.session}", token=token,
                      headers=headers).status_code == 200
    logins = [r for r in emulator.requests()[before:] if r.path == "/identity/token"]
    assert len(logins) == 1  # the broker's, with the site's API key (in the form)
    seen = vendor_calls(emulator, before)
    assert len(seen) == 6
    for request in [*logins, *seen]:
        assert a.token not in " ".join(request.headers.values())
    for request in seen:
        values = " ".join(request.headers.values())
        assert a.token not in values and access not in values and placeholder not in values
        assert request.headers["service-crn"] == emulator.config.service_crn
        assert request.headers["authorization"].startswith("Bearer ")
        assert "cookie" not in request.headers and "x-api-key" not in request.headers


# ---------------------------------------------------------------------------- Pasqal

def test_a_pasqal_job_reaches_only_its_device_and_its_own_batches(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    lease = b.acquire(7, "EMU_FREE")
    token = lease["env"]["EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN"]
    assert token.startswith("sqpu_7_1_")
    before = len(emulator.requests())

    def call(method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, f"{b.url}/p/EMU_FREE/{path}", headers=bearer(token),
                             content=None if body is None else json.dumps(body).encode())

    assert refused(call("POST", "core-fast/api/v1/batches", {"device_type": "FRESNEL"}), 403,
                   "this job holds QPU EMU_FREE, not FRESNEL")
    assert refused(call("GET", "core-fast/api/v2/batches/b-of-another-job"), 403,
                   "Pasqal batch b-of-another-job was not created by this Slurm job")
    assert refused(call("GET", "core-fast/api/v2/jobs/j-of-another-job"), 403,
                   "Pasqal job j-of-another-job was not created by this Slurm job")
    assert refused(call("PATCH", "core-fast/api/v2/batches/cancel", {"batch_ids": ["x"]}), 403,
                   "cancelling batches by list is not available through the broker; cancel "
                   "each batch")
    assert nothing_reached_the_vendor(emulator, before)
    devices = call("GET", "core-fast/api/v1/devices")
    assert devices.status_code == 200, devices.text


def test_a_pasqal_batch_goes_to_the_sites_project_whatever_the_job_names(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    token = b.acquire(7, "EMU_FREE")["env"]["EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN"]
    project = emulator.config.pasqal_project_id
    url = f"{b.url}/p/EMU_FREE/core-fast/api/v1/batches"
    before = len(emulator.requests())
    foreign = httpx.post(url, headers=bearer(token), content=json.dumps(
        {"device_type": "EMU_FREE", "open": True, "project_id": "a-project-of-my-own"}))
    assert refused(foreign, 403, f"batches from this cluster go to Pasqal project {project}, "
                                 "not a-project-of-my-own")
    assert nothing_reached_the_vendor(emulator, before)
    # naming none, the batch is placed in the site's project (the vendor refuses a batch
    # without one)
    unnamed = httpx.post(url, headers=bearer(token),
                         content=json.dumps({"device_type": "EMU_FREE", "open": True}))
    assert unnamed.status_code == 200, unnamed.text
    assert unnamed.json()["data"]["project_id"] == project
    named = httpx.post(url, headers=bearer(token), content=json.dumps(
        {"device_type": "EMU_FREE", "open": True, "project_id": project}))
    assert named.status_code == 200, named.text


def test_the_iam_answer_is_a_jwt_naming_the_lease_that_ends_with_it(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    from slurm_qpu import jwt

    a = start_job(b, 7)
    before = len(emulator.requests())
    answer = a.call("POST", "identity/token", data={"apikey": a.token}).json()
    assert answer["token_type"] == "Bearer" and answer["refresh_token"] == "not_supported"
    claims = jwt.unb64(answer["access_token"].split(".")[1])
    assert json.loads(claims)["job"] == 7 and json.loads(claims)["gen"] == 1
    lease = b.service.journal.current(7)
    assert lease is not None and lease.expires_at is not None
    assert json.loads(claims)["exp"] <= lease.expires_at
    assert 0 < answer["expires_in"] <= 3600
    assert emulator.requests()[before:] == []  # answered by the broker, not the vendor's IAM


@pytest.mark.parametrize("body,status,message", [
    (gzip.compress(json.dumps({"device_type": "FRESNEL"}).encode()), 403,
     "this job holds QPU EMU_FREE, not FRESNEL"),
    (gzip.compress(b'{"device_type": "EMU_FREE"' + b" " * 4096 + b"}"), 413,
     "request body is over the broker's limit of 1024 bytes"),
    (b'{"device_type": "EMU_FREE"}', 400,
     "Content-Encoding says gzip but the body is not gzip data"),
], ids=["read-decoded", "inflates-over-the-limit", "not-gzip"])
def test_a_gzipped_request_body_is_read_decoded_and_bounded(
        small: BrokerUnderTest, emulator: Emulator, body: bytes, status: int,
        message: str) -> None:
    token = small.acquire(7, "EMU_FREE")["env"]["EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN"]
    before = len(emulator.requests())
    assert len(body) < 1024
    response = httpx.post(f"{small.url}/p/EMU_FREE/core-fast/api/v1/batches", content=body,
                          headers={**bearer(token), "Content-Encoding": "gzip",
                                   "Content-Type": "application/json"})
    assert refused(response, status, message)
    assert nothing_reached_the_vendor(emulator, before)
