"""IQM and Alice & Bob Felis QPUs in broker mode: a job holds only the proxy URL and its job
token (for Felis, in Felis's own key format), runs its programs through the proxy, and
reaches only its own quantum computer or target and its own vendor jobs; the broker counts
what they ran."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import BrokerUnderTest, StartBroker, bearer, set_job_environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import fake_felis
import fake_iqm
from vendor_fake import served

from slurm_qpu import client
from slurm_qpu.vendors.common.base import FelisProgram, IqmJob, TaskStatus

IQM_QPU, FELIS_QPU = "garnet_mock", fake_felis.NAME


@pytest.fixture
def iqm() -> Iterator[tuple[fake_iqm.FakeIqm, str]]:
    fake = fake_iqm.FakeIqm(qcs={"garnet:mock": fake_iqm._qc(), "emerald:mock": fake_iqm._qc()})
    with served(fake.handle) as url:
        yield fake, url


@pytest.fixture
def felis() -> Iterator[tuple[fake_felis.FakeFelis, str]]:
    fake = fake_felis.FakeFelis()
    with served(fake.handle) as url:
        yield fake, url + "/"


@pytest.fixture
def b(start_broker: StartBroker, iqm: tuple[fake_iqm.FakeIqm, str],
      felis: tuple[fake_felis.FakeFelis, str]) -> BrokerUnderTest:
    return start_broker([
        {"name": IQM_QPU, "type": "iqm-server",
         "environment": fake_iqm.settings(QRMI_IQM_ISA_ENDPOINT=iqm[1])},
        {"name": FELIS_QPU, "type": "alice-bob-felis",
         "environment": fake_felis.settings(QRMI_AB_FELIS_BASE_ENDPOINT=felis[1])}])


def acquired(b: BrokerUnderTest, job_id: int, qpus: str) -> dict[str, str]:
    lease = b.acquire(job_id, qpus)
    assert lease["state"] == "acquired", lease
    env: dict[str, str] = lease["env"]
    return env


CIRCUIT = {"name": "bell", "instructions": [], "metadata": {}}


# ---------------------------------------------------------------------------- IQM

def test_an_iqm_job_runs_through_the_proxy_with_only_its_job_token(
        b: BrokerUnderTest, iqm: tuple[fake_iqm.FakeIqm, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = iqm
    env = acquired(b, 7, IQM_QPU)
    assert env[f"{IQM_QPU}_QRMI_IQM_ISA_TOKEN"] != fake_iqm.TOKEN
    assert env[f"{IQM_QPU}_QRMI_IQM_ISA_ENDPOINT"].startswith(b.url + "/p/")
    set_job_environment(monkeypatch, env)
    qpu: Any = client.resource(IQM_QPU)
    assert qpu.is_accessible()
    body = {"circuits": [CIRCUIT, CIRCUIT], "shots": 25}
    task = qpu.task_start(IqmJob(json.dumps(body), "circuit"))
    assert qpu.task_status(task) == TaskStatus.QUEUED
    fake.finish(task)
    assert qpu.task_status(task) == TaskStatus.COMPLETED
    assert qpu.task_result(task).value
    # the vendor saw the site's token on every call, never the job's
    assert fake.payloads[task]["shots"] == 25
    [usage] = b.node().release(7)["usage"]
    assert (usage["qpu"], usage["vendor_jobs"], usage["shots"]) == (IQM_QPU, 1, 50)


def iqm_call(b: BrokerUnderTest, env: dict[str, str], method: str, path: str,
             body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{b.url}/p/{IQM_QPU}/{path}",
                         headers=bearer(env[f"{IQM_QPU}_QRMI_IQM_ISA_TOKEN"]),
                         content=None if body is None else json.dumps(body).encode())


def test_an_iqm_job_sees_only_its_quantum_computer(b: BrokerUnderTest) -> None:
    env = acquired(b, 7, IQM_QPU)
    listed = iqm_call(b, env, "GET", "api/v1/quantum-computers")
    assert listed.status_code == 200, listed.text
    assert [qc["alias"] for qc in listed.json()["quantum_computers"]] == ["garnet:mock"]
    assert iqm_call(b, env, "GET", "api/v1/quantum-computers/garnet:mock/health"
                    ).status_code == 200
    assert iqm_call(b, env, "GET", "api/v1/calibration-sets/garnet:mock/default"
                    ).status_code == 200


def test_an_iqm_job_reaches_only_its_own_iqm_jobs(
        b: BrokerUnderTest, iqm: tuple[fake_iqm.FakeIqm, str]) -> None:
    fake, _ = iqm
    mine, theirs = acquired(b, 7, IQM_QPU), acquired(b, 8, IQM_QPU)
    body = {"circuits": [CIRCUIT], "shots": 4}
    created = iqm_call(b, theirs, "POST", "api/v1/jobs/garnet:mock/circuit", body)
    assert created.status_code == 200, created.text
    other = created.json()["id"]
    before = len(fake.requests)
    for method, path in (("GET", f"api/v1/jobs/{other}"),
                         ("GET", f"api/v1/jobs/{other}/artifacts/measurements"),
                         ("POST", f"api/v1/jobs/{other}/cancel"),
                         ("DELETE", f"api/v1/jobs/{other}")):
        refused = iqm_call(b, mine, method, path)
        assert (refused.status_code, refused.json()["message"]) == \
            (403, f"IQM job {other} was not created by this Slurm job"), path
    assert fake.requests[before:] == []
    assert iqm_call(b, theirs, "POST", f"api/v1/jobs/{other}/cancel").status_code == 200


@pytest.mark.parametrize("method,path,message", [
    ("GET", "api/v1/quantum-computers/emerald:mock",
     "this job holds IQM quantum computer garnet:mock, not emerald:mock"),
    ("POST", "api/v1/jobs/emerald:mock/circuit",
     "this job holds IQM quantum computer garnet:mock, not emerald:mock"),
    ("GET", "api/v1/calibration-sets/emerald%3Amock/default",
     "this job holds IQM quantum computer garnet:mock, not emerald:mock"),
    ("POST", "api/v1/quantum-computers/garnet:mock/timeslots",
     "a job may read its quantum computer's details, not book timeslots or change anything "
     "through the broker"),
    ("GET", "station/garnet/settings",
     "not an IQM Server API route: /station/garnet/settings"),
    ("GET", "api/v1/users/me",
     "GET /api/v1/users/me is not available to jobs through the broker"),
], ids=["other-qc", "submit-to-other-qc", "encoded-alias", "timeslot", "station-proxy",
        "unlisted"])
def test_an_iqm_job_is_refused_what_is_not_its_own(
        b: BrokerUnderTest, iqm: tuple[fake_iqm.FakeIqm, str], method: str, path: str,
        message: str) -> None:
    fake, _ = iqm
    env = acquired(b, 7, IQM_QPU)
    before = len(fake.requests)
    refused = iqm_call(b, env, method, path, {"circuits": [CIRCUIT], "shots": 1})
    assert refused.json()["message"] == message
    assert refused.status_code in (403, 404)
    assert fake.requests[before:] == []


# ---------------------------------------------------------------------------- Felis

def test_a_felis_jobs_key_is_in_felis_format_and_names_no_secret(b: BrokerUnderTest) -> None:
    env = acquired(b, 7, FELIS_QPU)
    key = env[f"{FELIS_QPU}_QRMI_AB_FELIS_API_KEY"]
    user, _, password = base64.b64decode(key, validate=True).decode().partition(":")
    assert (user, password.startswith("sqpu_7_1_")) == ("slurm-job-7", True)
    assert key != fake_felis.API_KEY
    assert env[f"{FELIS_QPU}_QRMI_AB_FELIS_BASE_ENDPOINT"] == f"{b.url}/p/{FELIS_QPU}/"


def test_a_felis_program_runs_through_the_proxy_with_only_its_job_key(
        b: BrokerUnderTest, felis: tuple[fake_felis.FakeFelis, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = felis
    set_job_environment(monkeypatch, acquired(b, 7, FELIS_QPU))
    qpu: Any = client.resource(FELIS_QPU)
    assert qpu.is_accessible()
    task = qpu.task_start(FelisProgram("; QIR", json.dumps({"nbShots": 30})))
    assert fake.inputs[task] == "; QIR"
    fake.event(task, "SUCCEEDED")
    assert qpu.task_status(task) == TaskStatus.COMPLETED
    assert "0,412" in str(qpu.task_result(task).value)
    [usage] = b.node().release(7)["usage"]
    assert (usage["qpu"], usage["vendor_jobs"], usage["shots"]) == (FELIS_QPU, 1, 30)


def test_the_qrmi_wheel_runs_a_felis_program_with_only_the_jobs_environment(
        b: BrokerUnderTest, felis: tuple[fake_felis.FakeFelis, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    fake, _ = felis
    set_job_environment(monkeypatch, acquired(b, 7, FELIS_QPU))
    resource = qrmi.QuantumResource(FELIS_QPU, qrmi.ResourceType.AliceBobFelis)
    target = json.loads(resource.target().value)
    assert target["name"] == fake_felis.TARGET
    task = resource.task_start(qrmi.Payload.AliceBobFelis(
        human_qir="; QIR", input_params=json.dumps({"nbShots": 12})))
    assert fake.inputs[task] == "; QIR"


def felis_call(b: BrokerUnderTest, env: dict[str, str], method: str, path: str,
               body: Any = None) -> httpx.Response:
    key = env[f"{FELIS_QPU}_QRMI_AB_FELIS_API_KEY"]
    return httpx.request(method, f"{b.url}/p/{FELIS_QPU}/{path}",
                         headers={"Authorization": f"Basic {key}"},
                         content=None if body is None else json.dumps(body).encode())


def test_a_felis_job_sees_only_its_target_and_its_own_felis_jobs(
        b: BrokerUnderTest, felis: tuple[fake_felis.FakeFelis, str]) -> None:
    fake, _ = felis
    mine, theirs = acquired(b, 7, FELIS_QPU), acquired(b, 8, FELIS_QPU)
    targets = felis_call(b, mine, "GET", "v1/targets/")
    assert [t["name"] for t in targets.json()] == [fake_felis.TARGET]
    body = {"target": fake_felis.TARGET, "inputParams": {"nbShots": 5}}
    other = felis_call(b, theirs, "POST", "v1/jobs/", body).json()["id"]
    before = len(fake.requests)
    for method, path in (("GET", f"v1/jobs/{other}"), ("GET", f"v1/jobs/{other}/output"),
                         ("DELETE", f"v1/jobs/{other}"), ("POST", f"v1/jobs/{other}/input")):
        refused = felis_call(b, mine, method, path)
        assert (refused.status_code, refused.json()["message"]) == \
            (403, f"Felis job {other} was not created by this Slurm job"), path
    wrong = felis_call(b, mine, "POST", "v1/jobs/",
                       {"target": "EMU:40Q:PHYSICAL_CATS", "inputParams": {}})
    assert (wrong.status_code, wrong.json()["message"]) == \
        (403, f"this job holds Felis target {fake_felis.TARGET}, not EMU:40Q:PHYSICAL_CATS")
    assert fake.requests[before:] == []


def test_the_qrmi_wheel_runs_an_iqm_job_with_only_the_jobs_environment(
        b: BrokerUnderTest, iqm: tuple[fake_iqm.FakeIqm, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    fake, _ = iqm
    set_job_environment(monkeypatch, acquired(b, 7, IQM_QPU))
    resource = qrmi.QuantumResource(IQM_QPU, qrmi.ResourceType.IQMServer)
    task = resource.task_start(qrmi.Payload.IQMServer(
        iqmjson=json.dumps({"circuits": [CIRCUIT], "shots": 8}), job_type="circuit",
        use_timeslot=False, tag="qrmi"))
    assert fake.payloads[task]["shots"] == 8
    fake.finish(task)
    assert resource.task_status(task) == qrmi.TaskStatus.Completed
