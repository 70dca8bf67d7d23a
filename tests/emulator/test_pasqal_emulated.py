"""The emulated Pasqal Cloud: raw API shapes, then the unmodified pasqal-cloud SDK, pulser's
QPUBackend, the qrmi wheel's pasqal-cloud resource and slurm-qpu's own type against it."""

from __future__ import annotations

import gzip
import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import EmulatorDependencyMissing
from slurm_qpu_emulator.pasqal import (
    AUDIENCE,
    PASSWORD_REALM,
    PasqalCoreService,
    device_specs,
    pasqal_services,
)
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Fault, Server

FINAL = ("DONE", "ERROR", "CANCELED")


@dataclass
class Pasqal:
    server: Server
    config: EmulatorConfig
    issuer: TokenIssuer
    core: PasqalCoreService

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def root(self) -> str:
        return f"{self.server.url}/pasqal"

    def token(self, **form: str) -> str:
        form = form or {"grant_type": PASSWORD_REALM, "username": self.config.pasqal_username,
                        "password": self.config.pasqal_password, "client_id": "x",
                        "realm": "pcs-users", "audience": AUDIENCE}
        response = httpx.post(f"{self.root}/oauth/token", data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.Client(base_url=f"{self.root}/core-fast", headers=headers)


@pytest.fixture
def pasqal(serve: Callable[..., Server], fast_config: EmulatorConfig,
           issuer: TokenIssuer) -> Pasqal:
    services = pasqal_services(fast_config, issuer)
    core = next(s for s in services if isinstance(s, PasqalCoreService))
    return Pasqal(serve(*services), fast_config, issuer, core)


@pytest.fixture
def api(pasqal: Pasqal) -> Iterator[httpx.Client]:
    with pasqal.api() as client:
        yield client


@pytest.fixture(scope="module")
def sequence() -> str:
    """A 4-atom pulser sequence on AnalogDevice, as the SDK sends it."""
    from pulser import Pulse, Sequence
    from pulser.devices import AnalogDevice
    from pulser.register.special_layouts import TriangularLatticeLayout

    register = TriangularLatticeLayout(61, 5).define_register(0, 1, 2, 3)
    seq = Sequence(register, AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(200, 2, -10, 0), "rydberg")
    seq.measure("ground-rydberg")
    return str(seq.to_abstract_repr())


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success" and body["code"] == 200 and body["message"] == "OK."
    return body["data"]


def failure(response: httpx.Response, status: int) -> str:
    """The JSend error description, after checking the shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == ("fail" if status < 500 else "error")
    assert body["code"] == status and isinstance(body["message"], str)
    return str(body["data"]["description"])


def create(api: httpx.Client, pasqal: Pasqal, sequence: str, **extra: Any) -> dict[str, Any]:
    body = {"sequence_builder": sequence, "jobs": [{"runs": 10}], "device_type": "FRESNEL",
            "project_id": pasqal.config.pasqal_project_id, **extra}
    return dict(data(api.post("/api/v1/batches", json=body)))


def wait_batch(api: httpx.Client, batch_id: str, until: tuple[str, ...] = FINAL) -> str:
    deadline = time.monotonic() + 15  # a guard against hanging, not a timing check
    while time.monotonic() < deadline:
        status = str(data(api.get(f"/api/v1/batches/{batch_id}/status"))["status"])
        if status in until:
            return status
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never reached {until}")


# -- token endpoint ----------------------------------------------------------------------

def test_password_realm_grant_returns_jwt_with_exp_and_expires_in(pasqal: Pasqal) -> None:
    response = httpx.post(f"{pasqal.root}/oauth/token", data={
        "grant_type": PASSWORD_REALM, "username": pasqal.config.pasqal_username,
        "password": pasqal.config.pasqal_password, "realm": "pcs-users", "client_id": "x"})
    body = response.json()
    assert response.status_code == 200 and body["token_type"] == "Bearer"
    assert body["expires_in"] == pasqal.issuer.lifetime
    claims = pasqal.issuer.claims(body["access_token"])
    assert claims is not None and claims["sub"] == pasqal.config.pasqal_username
    assert isinstance(claims["exp"], int)


def test_keycloak_password_grant_and_client_credentials_grant(pasqal: Pasqal) -> None:
    cfg = pasqal.config
    user = pasqal.token(grant_type="password", username=cfg.pasqal_username,
                        password=cfg.pasqal_password, client_id="cloud-sdk")
    service = pasqal.token(grant_type="client_credentials", client_id=cfg.pasqal_client_id,
                           client_secret=cfg.pasqal_client_secret, audience=AUDIENCE)
    assert (pasqal.issuer.claims(service) or {})["sub"] == f"{cfg.pasqal_client_id}@clients"
    for token in (user, service):
        with pasqal.api(token) as api:
            assert data(api.get("/api/v1/devices/specs")).keys() == set(cfg.pasqal_devices)


def test_token_json_body_is_accepted(pasqal: Pasqal) -> None:
    cfg = pasqal.config
    response = httpx.post(f"{pasqal.root}/oauth/token", json={
        "grant_type": "client_credentials", "client_id": cfg.pasqal_client_id,
        "client_secret": cfg.pasqal_client_secret})
    assert response.status_code == 200 and response.json()["access_token"]


@pytest.mark.parametrize(("form", "status", "error", "description"), [
    ({"grant_type": PASSWORD_REALM, "username": "emulator-user", "password": "nope"},
     403, "invalid_grant", "Wrong email or password."),
    ({"grant_type": "client_credentials", "client_id": "emulator-client",
      "client_secret": "nope"}, 403, "access_denied", "Unauthorized"),
    ({"grant_type": "implicit"}, 403, "unauthorized_client",
     "Grant type 'implicit' not allowed for the client."),
    ({"grant_type": "password", "password": "x"}, 400, "invalid_request",
     "Missing required parameter: username"),
])
def test_token_errors_use_the_oauth_error_shape(pasqal: Pasqal, form: dict[str, str],
                                                status: int, error: str,
                                                description: str) -> None:
    response = httpx.post(f"{pasqal.root}/oauth/token", data=form)
    assert response.status_code == status
    assert response.json() == {"error": error, "error_description": description}


# -- authentication on the APIs ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/core-fast/api/v1/devices/specs", "/core-fast/api/v2/jobs",
                                  "/core-fast/api/v1/devices", "/account/api/v1/projects"])
def test_api_requires_bearer_token(pasqal: Pasqal, path: str) -> None:
    response = httpx.get(f"{pasqal.root}{path}")
    assert failure(response, 401) == "Missing, invalid or expired bearer token."


def test_expired_and_foreign_tokens_are_refused(pasqal: Pasqal) -> None:
    foreign = pasqal.issuer.issue("iam-ServiceId-x")  # same key, not a Pasqal token
    with pasqal.api(foreign) as api:
        assert failure(api.get("/api/v2/jobs"), 401).startswith("Missing, invalid")
    with pasqal.api() as api:
        pasqal.issuer.expire_all()
        assert failure(api.get("/api/v2/jobs"), 401).startswith("Missing, invalid")


def test_public_specs_and_device_lookup_need_no_token(pasqal: Pasqal) -> None:
    public = data(httpx.get(f"{pasqal.root}/core-fast/api/v1/devices/public-specs"))
    assert [d["device_type"] for d in public] == list(pasqal.config.pasqal_devices)
    found = data(httpx.get(f"{pasqal.root}/core-fast/api/v1/devices",
                           params={"device_type": "FRESNEL"}))
    assert found == [{"device_type": "FRESNEL", "status": "UP", "availability": "ACTIVE",
                      "maintenance": False}]
    assert data(httpx.get(f"{pasqal.root}/core-fast/api/v1/devices",
                          params={"device_type": "EMU_SV"})) == []


def test_account_lists_the_active_project(pasqal: Pasqal) -> None:
    headers = {"Authorization": f"Bearer {pasqal.token()}"}
    projects = data(httpx.get(f"{pasqal.root}/account/api/v1/projects", headers=headers,
                              params={"project_status": "ACTIVE"}))
    assert [p["id"] for p in projects] == [pasqal.config.pasqal_project_id]
    assert data(httpx.get(f"{pasqal.root}/account/api/v1/projects", headers=headers,
                          params={"project_status": "ARCHIVED"})) == []


# -- devices -------------------------------------------------------------------------------

def test_device_specs_are_pulser_devices(api: httpx.Client) -> None:
    from pulser.json.abstract_repr.deserializer import deserialize_device

    specs = data(api.get("/api/v1/devices/specs"))
    assert deserialize_device(specs["FRESNEL"]).name == "AnalogDevice"
    assert deserialize_device(specs["EMU_MPS"]).name == "DigitalAnalogDevice"
    one = data(api.get("/api/v1/devices/specs/FRESNEL"))
    assert one == {"device_type": "FRESNEL", "specs": specs["FRESNEL"]}
    assert failure(api.get("/api/v1/devices/specs/EMU_SV"), 404) == "Device EMU_SV not found."


def test_device_specs_without_pulser_name_the_install_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    device_specs.cache_clear()
    monkeypatch.setitem(sys.modules, "pulser.devices", None)
    with pytest.raises(EmulatorDependencyMissing, match="Pasqal device specs need pulser-core"):
        device_specs("AnalogDevice")
    device_specs.cache_clear()


# -- batches and jobs ----------------------------------------------------------------------

def test_gzip_batch_runs_to_done_with_counter_per_atom(pasqal: Pasqal, api: httpx.Client,
                                                       sequence: str) -> None:
    body = {"sequence_builder": sequence, "jobs": [{"runs": 25}], "device_type": "FRESNEL",
            "project_id": pasqal.config.pasqal_project_id, "open": False}
    response = api.post("/api/v1/batches", content=gzip.compress(json.dumps(body).encode()),
                        headers={"Content-Encoding": "gzip",
                                 "Content-Type": "application/json"})
    batch = data(response)
    assert batch["status"] == "PENDING" and batch["jobs"][0]["status"] == "PENDING"
    assert batch["user_id"] == pasqal.config.pasqal_username
    assert wait_batch(api, batch["id"]) == "DONE"
    got = data(api.get(f"/api/v2/batches/{batch['id']}"))
    assert got["sequence_builder"] == sequence and got["job_ids"] == [batch["jobs"][0]["id"]]
    assert got["jobs_count_per_status"] == {"DONE": 1} and got["end_datetime"]
    link = data(api.get(f"/api/v1/jobs/{got['job_ids'][0]}/results_link"))["results_link"]
    result = httpx.get(link).json()  # no token: it stands in for a presigned URL
    assert sum(result["counter"].values()) == 25 and len(result["raw"]) == 25
    assert {len(bits) for bits in result["counter"]} == {4}
    assert result["emulator"]["synthetic"] is True


def test_results_link_is_null_until_done_and_unknown_key_is_404(
        pasqal: Pasqal, api: httpx.Client, sequence: str) -> None:
    batch = create(api, pasqal, sequence, tags=["emulator:seconds=30"])
    job_id = batch["jobs"][0]["id"]
    assert data(api.get(f"/api/v1/jobs/{job_id}/results_link")) == {"results_link": None}
    assert data(api.get(f"/api/v1/batches/{batch['id']}/full_results")) == {}
    missing = httpx.get(f"{pasqal.root}/results/nope")
    assert missing.status_code == 404 and "The specified key does not exist." in missing.text
    data(api.patch(f"/api/v2/batches/{batch['id']}/cancel"))


def test_job_and_batch_status_shapes(pasqal: Pasqal, api: httpx.Client, sequence: str) -> None:
    batch = create(api, pasqal, sequence)
    job_id = batch["jobs"][0]["id"]
    wait_batch(api, batch["id"])
    assert data(api.get(f"/api/v1/batches/{batch['id']}/status")) == {
        "id": batch["id"], "status": "DONE", "jobs_count_per_status": {"DONE": 1}}
    assert data(api.get(f"/api/v1/jobs/{job_id}/status")) == {"id": job_id, "status": "DONE"}
    job = data(api.get(f"/api/v2/jobs/{job_id}"))
    assert job["sequence"] is None and job["runs"] == 10 and job["start_timestamp"]
    results = data(api.get(f"/api/v1/batches/{batch['id']}/full_results"))
    assert list(results) == [job_id] and sum(results[job_id]["counter"].values()) == 10
    assert failure(api.get("/api/v2/jobs/nope"), 404) == "Job nope not found."
    assert failure(api.get("/api/v2/batches/nope"), 404) == "Batch nope not found."


def test_jobs_list_paginates_in_creation_order(pasqal: Pasqal, api: httpx.Client,
                                               sequence: str) -> None:
    batch = create(api, pasqal, sequence,
                   jobs=[{"runs": 1}, {"runs": 2}, {"runs": 3}])
    params = {"batch_id": batch["id"], "order_by": "creation_order",
              "order_by_direction": "ASC", "limit": "2"}
    first = api.get("/api/v2/jobs", params=params).json()
    assert [j["runs"] for j in first["data"]] == [1, 2]
    assert first["pagination"] == {"total": 3, "offset": 0, "end": 2}
    second = api.get("/api/v2/jobs", params={**params, "offset": "2"}).json()
    assert [j["runs"] for j in second["data"]] == [3]
    newest = data(api.get("/api/v2/jobs", params={"batch_id": batch["id"]}))
    assert [j["runs"] for j in newest] == [3, 2, 1]
    assert failure(api.get("/api/v2/jobs", params={"offset": "x"}), 422) == \
        "query parameter offset must be an integer"
    listed = api.get("/api/v1/batches", params={"id": batch["id"]}).json()
    assert [b["id"] for b in listed["data"]] == [batch["id"]]
    assert listed["pagination"]["total"] == 1
    data(api.patch(f"/api/v2/batches/{batch['id']}/cancel"))


def test_open_batch_takes_jobs_until_closed(pasqal: Pasqal, api: httpx.Client,
                                            sequence: str) -> None:
    batch = create(api, pasqal, sequence, jobs=[], open=True)
    assert batch["open"] is True and batch["status"] == "PENDING"
    assert failure(api.patch(f"/api/v2/batches/{batch['id']}/complete"), 400) == \
        f"Batch {batch['id']} has no jobs and cannot be closed."
    added = data(api.post(f"/api/v2/batches/{batch['id']}/jobs", json=[{"runs": 5}]))
    assert [j["runs"] for j in added["jobs"]] == [5]
    closed = data(api.patch(f"/api/v2/batches/{batch['id']}/complete"))
    assert closed["open"] is False and closed["complete"] is True
    assert failure(api.post(f"/api/v2/batches/{batch['id']}/jobs", json=[{"runs": 5}]), 400) \
        == f"Batch {batch['id']} is closed: it accepts no more jobs."
    assert wait_batch(api, batch["id"]) == "DONE"


def test_cancel_batch_and_refuse_to_cancel_a_finished_one(pasqal: Pasqal, api: httpx.Client,
                                                          sequence: str) -> None:
    slow = create(api, pasqal, sequence, tags=["emulator:seconds=30"],
                  jobs=[{"runs": 1}, {"runs": 2}])
    cancelled = data(api.patch(f"/api/v2/batches/{slow['id']}/cancel"))
    assert cancelled["status"] == "CANCELED"
    assert cancelled["jobs_count_per_status"] == {"CANCELED": 2}
    quick = create(api, pasqal, sequence)
    wait_batch(api, quick["id"])
    assert failure(api.patch(f"/api/v2/batches/{quick['id']}/cancel"), 400) == \
        f"Batch {quick['id']} is already DONE and cannot be cancelled."
    many = data(api.patch("/api/v1/batches/cancel",
                          json={"batch_ids": [quick["id"], "nope"]}))
    assert many["batches"] == []
    assert many["errors"] == {quick["id"]: f"Batch {quick['id']} is already DONE and cannot "
                                           "be cancelled.", "nope": "Batch nope not found."}
    assert failure(api.patch("/api/v1/batches/cancel", json={}), 422) == \
        "batch_ids must be a list of batch ids"


def test_cancel_single_job_and_jobs_of_a_batch(pasqal: Pasqal, api: httpx.Client,
                                               sequence: str) -> None:
    batch = create(api, pasqal, sequence, tags=["emulator:seconds=30"], open=True,
                   jobs=[{"runs": 1}, {"runs": 2}, {"runs": 3}])
    first, second, third = (j["id"] for j in batch["jobs"])
    assert data(api.patch(f"/api/v2/jobs/{first}/cancel"))["status"] == "CANCELED"
    assert failure(api.patch(f"/api/v2/jobs/{first}/cancel"), 400) == \
        f"Job {first} is already CANCELED and cannot be cancelled."
    out = data(api.patch(f"/api/v2/batches/{batch['id']}/cancel/jobs",
                         params={"id": [first, second]}))
    assert [j["id"] for j in out["jobs"]] == [second]
    assert out["errors"] == {first: "Job is already CANCELED and cannot be cancelled."}
    assert data(api.get(f"/api/v1/jobs/{third}/status"))["status"] in ("PENDING", "RUNNING")
    data(api.patch(f"/api/v2/batches/{batch['id']}/cancel"))


def test_emulator_seconds_tag_keeps_the_job_running(pasqal: Pasqal, api: httpx.Client,
                                                    sequence: str) -> None:
    batch = create(api, pasqal, sequence, tags=["emulator:seconds=60"])
    assert wait_batch(api, batch["id"], until=("RUNNING", *FINAL)) == "RUNNING"
    data(api.patch(f"/api/v2/batches/{batch['id']}/cancel"))
    assert wait_batch(api, batch["id"]) == "CANCELED"


def test_emulator_error_tag_fails_the_jobs(pasqal: Pasqal, api: httpx.Client,
                                           sequence: str) -> None:
    batch = create(api, pasqal, sequence, tags=["emulator:error"])
    assert wait_batch(api, batch["id"]) == "ERROR"
    job = data(api.get(f"/api/v2/jobs/{batch['jobs'][0]['id']}"))
    assert job["errors"] == ["emulated failure requested by the tag emulator:error"]


def test_tags_can_be_replaced(pasqal: Pasqal, api: httpx.Client, sequence: str) -> None:
    batch = create(api, pasqal, sequence)
    tagged = data(api.patch(f"/api/v1/batches/{batch['id']}/tags", json=["a", "b"]))
    assert tagged["tags"] == ["a", "b"]
    assert failure(api.patch(f"/api/v1/batches/{batch['id']}/tags", json={"a": 1}), 422) == \
        "tags must be a list of strings"


def test_batch_without_device_type_goes_to_the_sequences_device(
        pasqal: Pasqal, api: httpx.Client, sequence: str) -> None:
    batch = create(api, pasqal, sequence, device_type=None)
    assert batch["device_type"] == "FRESNEL"
    other = json.loads(sequence)
    other["device"]["name"] = "MockDevice"
    assert failure(api.post("/api/v1/batches", json={
        "sequence_builder": json.dumps(other), "jobs": [{"runs": 1}],
        "project_id": pasqal.config.pasqal_project_id}), 422) == (
        "device_type is required: the sequence's device 'MockDevice' is none of "
        "FRESNEL, EMU_FREE, EMU_MPS.")


def test_mappable_register_counts_the_jobs_qubits(pasqal: Pasqal, api: httpx.Client) -> None:
    from pulser import Pulse, Sequence
    from pulser.devices import AnalogDevice
    from pulser.register.special_layouts import TriangularLatticeLayout

    seq = Sequence(TriangularLatticeLayout(61, 5).make_mappable_register(6), AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(200, 2, -10, 0), "rydberg")
    seq.measure("ground-rydberg")
    batch = create(api, pasqal, seq.to_abstract_repr(),
                   jobs=[{"runs": 5, "variables": {"qubits": {"q0": 0, "q1": 3, "q2": 5}}}])
    wait_batch(api, batch["id"])
    results = data(api.get(f"/api/v1/batches/{batch['id']}/full_results"))
    assert {len(bits) for r in results.values() for bits in r["counter"]} == {3}


def test_json_register_is_counted_without_pulser(pasqal: Pasqal, api: httpx.Client) -> None:
    handmade = json.dumps({"register": [{"name": "a", "x": 0, "y": 0},
                                        {"name": "b", "x": 5, "y": 0}]})
    batch = create(api, pasqal, handmade)
    wait_batch(api, batch["id"])
    results = data(api.get(f"/api/v1/batches/{batch['id']}/full_results"))
    assert {len(bits) for r in results.values() for bits in r["counter"]} == {2}


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"project_id": "other"}, 403, "You are not a member of project other."),
    ({"device_type": "EMU_SV"}, 400,
     "Device type EMU_SV is not available; available: FRESNEL, EMU_FREE, EMU_MPS."),
    ({"sequence_builder": "not json"}, 422,
     "sequence is not a pulser abstract representation with a register"),
    ({"sequence_builder": 5}, 422, "sequence_builder must be a string"),
    ({"jobs": {"runs": 1}}, 422, "jobs must be a list"),
    ({"jobs": [3]}, 422, "each job must be an object"),
    ({"jobs": [{"runs": 0}]}, 422, "job runs must be a positive integer, got 0"),
    ({"jobs": [{"runs": 1, "variables": [1]}]}, 422, "job variables must be an object"),
    ({"sequence_builder": None}, 422,
     "a job without its own sequence needs the batch's sequence_builder"),
    ({"jobs": []}, 422, "a closed batch needs at least one job"),
    ({"tags": "x"}, 422, "tags must be a list of strings"),
    ({"tags": ["emulator:seconds=soon"]}, 422,
     "tag 'emulator:seconds=soon': emulator:seconds= needs a number"),
    ({"tags": ["emulator:seconds=-1"]}, 422,
     "tag 'emulator:seconds=-1': seconds must be within 0..86400"),
])
def test_invalid_batches_are_refused(pasqal: Pasqal, api: httpx.Client, sequence: str,
                                     change: dict[str, Any], status: int, message: str) -> None:
    body = {"sequence_builder": sequence, "jobs": [{"runs": 1}], "device_type": "FRESNEL",
            "project_id": pasqal.config.pasqal_project_id, **change}
    assert failure(api.post("/api/v1/batches", json=body), status) == message


def test_batch_body_must_be_an_object(api: httpx.Client) -> None:
    assert failure(api.post("/api/v1/batches", json=[1]), 422) == \
        "the request body must be a JSON object"


# -- maintenance, faults, qrmi config ------------------------------------------------------

def test_maintenance_makes_device_inactive_and_refuses_new_batches(
        pasqal: Pasqal, api: httpx.Client, sequence: str) -> None:
    # the worker runs one job at a time: while it is busy, FRESNEL's job is surely queued
    busy = create(api, pasqal, sequence, device_type="EMU_MPS", tags=["emulator:seconds=60"])
    queued = create(api, pasqal, sequence)
    assert pasqal.server.set_maintenance("FRESNEL", True) == ["pasqal-cloud"]
    data(api.patch(f"/api/v2/batches/{busy['id']}/cancel"))
    device = data(httpx.get(f"{pasqal.root}/core-fast/api/v1/devices",
                            params={"device_type": "FRESNEL"}))[0]
    assert (device["availability"], device["status"]) == ("INACTIVE", "DOWN")
    refused = api.post("/api/v1/batches", json={
        "sequence_builder": sequence, "jobs": [{"runs": 1}], "device_type": "FRESNEL",
        "project_id": pasqal.config.pasqal_project_id})
    assert failure(refused, 503) == \
        "Device FRESNEL is under maintenance and does not accept new batches."
    time.sleep(0.5)  # longer than a job takes: it must not have started meanwhile
    assert data(api.get(f"/api/v2/batches/{queued['id']}"))["status"] == "PENDING"
    pasqal.server.set_maintenance("FRESNEL", False)
    assert wait_batch(api, queued["id"]) == "DONE"


def test_injected_faults_answer_in_each_apis_shape(pasqal: Pasqal, api: httpx.Client) -> None:
    pasqal.server.inject(Fault(path="/pasqal/core-fast/", status=503, count=1))
    assert failure(api.get("/api/v1/devices/specs"), 503) == "injected fault"
    pasqal.server.inject(Fault(path="/pasqal/oauth/", status=500, count=1))
    response = httpx.post(f"{pasqal.root}/oauth/token", data={})
    assert response.json() == {"error": "server_error", "error_description": "injected fault"}


def test_qrmi_resources_point_at_this_server(pasqal: Pasqal) -> None:
    entries = pasqal.core.qrmi_resources("http://emu:9000")
    assert [e["name"] for e in entries] == ["FRESNEL", "EMU_FREE", "EMU_MPS"]
    assert {e["type"] for e in entries} == {"pasqal-cloud"}
    assert entries[0]["environment"] == {
        "QRMI_PASQAL_CLOUD_BASE_URL": "http://emu:9000/pasqal",
        "QRMI_PASQAL_CLOUD_AUTH_ENDPOINT": "http://emu:9000/pasqal/oauth/token",
        "QRMI_PASQAL_CLOUD_PROJECT_ID": "emulator-project",
        "QRMI_PASQAL_CLOUD_CLIENT_ID": "emulator-client",
        "QRMI_PASQAL_CLOUD_CLIENT_SECRET": "emulator-client-secret"}
    assert pasqal.core.qpu_names() == ["FRESNEL", "EMU_FREE", "EMU_MPS"]


# -- the unmodified pasqal-cloud SDK -----------------------------------------------------

def sdk_kwargs(pasqal: Pasqal, password: str | None = None) -> dict[str, Any]:
    from pasqal_cloud.endpoints import Endpoints, TokenProviderConf

    return {"username": pasqal.config.pasqal_username,
            "password": password or pasqal.config.pasqal_password,
            "project_id": pasqal.config.pasqal_project_id,
            "endpoints": Endpoints(core=f"{pasqal.root}/core-fast",
                                   account=f"{pasqal.root}/account"),
            "auth_config": TokenProviderConf(
                token_endpoint=f"{pasqal.root}/oauth/token", public_client_id="x",
                audience=AUDIENCE, realm="pcs-users", grant_type=PASSWORD_REALM)}


@pytest.fixture
def no_sdk_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK pauses 1 s, 2 s, ... between retries: skip the pauses (SDK-local patch)."""
    import pasqal_cloud.utils.retry as retry

    monkeypatch.setattr(retry, "time", types.SimpleNamespace(sleep=lambda _s: None))


def test_sdk_creates_batch_and_reads_results(pasqal: Pasqal, sequence: str,
                                             no_sdk_retry_pause: None) -> None:
    from pasqal_cloud.device import DeviceTypeName
    from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient

    client = PasqalCloudClient(**sdk_kwargs(pasqal))
    assert [p.id for p in client.get_all_projects()] == [pasqal.config.pasqal_project_id]
    assert set(client.get_device_specs_dict()) == set(pasqal.config.pasqal_devices)
    batch = client.create_batch(sequence, jobs=[{"runs": 40}, {"runs": 8}],
                                device_type=DeviceTypeName.FRESNEL)
    assert [job.runs for job in batch.ordered_jobs] == [40, 8]
    pasqal.server.inject(Fault(path="/api/v1/batches/.*/status", status=502, count=1))
    deadline = time.monotonic() + 15
    while client.get_batch_status(batch.id).value not in FINAL:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = client.get_batch(batch.id)
    assert done.status == "DONE" and done.sequence_builder == sequence
    counts = [job.result for job in done.ordered_jobs]
    assert [sum(c.values()) for c in counts if c] == [40, 8]
    assert {len(bits) for c in counts if c for bits in c} == {4}
    assert done.ordered_jobs[0].full_result["emulator"]["synthetic"] is True  # type: ignore[index]
    jobs = client.get_jobs()
    assert jobs.total == 2 and {job.batch_id for job in jobs.results} == {batch.id}
    posts = [r for r in pasqal.server.log if r.method == "POST" and "batches" in r.path]
    assert posts[0].headers.get("content-encoding") == "gzip"  # gunzipped by the server
    assert any(r.status == 502 for r in pasqal.server.log)  # the SDK retried past the fault


def test_sdk_cancels_a_batch(pasqal: Pasqal, sequence: str) -> None:
    from pasqal_cloud.device import DeviceTypeName
    from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient

    client = PasqalCloudClient(**sdk_kwargs(pasqal))
    batch = client.create_batch(sequence, jobs=[{"runs": 1}], device_type=DeviceTypeName.EMU_MPS,
                                tags=["emulator:seconds=30"])
    assert client.cancel_batch(batch.id).status == "CANCELED"


def test_sdk_bad_password_raises_token_provider_error(pasqal: Pasqal) -> None:
    from pasqal_cloud.authentication import TokenProviderError
    from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient

    with pytest.raises(TokenProviderError, match=r"403: Wrong email or password\."):
        PasqalCloudClient(**sdk_kwargs(pasqal, password="wrong"))


def test_sdk_maintenance_refusal_reaches_the_user(pasqal: Pasqal, sequence: str) -> None:
    from pasqal_cloud.device import DeviceTypeName
    from pasqal_cloud.errors import BatchCreationError
    from pasqal_cloud.pasqal_cloud_client import PasqalCloudClient

    client = PasqalCloudClient(**sdk_kwargs(pasqal))
    pasqal.server.set_maintenance("FRESNEL", True)
    with pytest.raises(BatchCreationError, match="under maintenance"):
        client.create_batch(sequence, jobs=[{"runs": 1}], device_type=DeviceTypeName.FRESNEL)


def test_pulser_qpu_backend_runs_through_pasqal_cloud_connection(pasqal: Pasqal,
                                                                 sequence: str) -> None:
    from pasqal_cloud import PasqalCloudConnection
    from pulser import QPUBackend, Sequence

    connection = PasqalCloudConnection(**sdk_kwargs(pasqal))
    seq = Sequence.from_abstract_repr(sequence)
    results = QPUBackend(seq, connection=connection).run(job_params=[{"runs": 30}])
    deadline = time.monotonic() + 15
    while results.get_batch_status().name != "DONE":  # instead of wait=True's 2 s polls
        assert time.monotonic() < deadline
        time.sleep(0.05)
    counts = results.results[0].bitstring_counts  # type: ignore[attr-defined]
    assert sum(counts.values()) == 30 and {len(b) for b in counts} == {4}


# -- the qrmi wheel's pasqal-cloud resource ----------------------------------------------

@pytest.fixture
def qrmi_env(pasqal: Pasqal, monkeypatch: pytest.MonkeyPatch) -> None:
    for entry in pasqal.core.qrmi_resources(pasqal.url):
        for key, value in entry["environment"].items():
            monkeypatch.setenv(f"{entry['name']}_{key}", value)


def test_qrmi_pasqal_cloud_runs_a_sequence(pasqal: Pasqal, sequence: str,
                                           qrmi_env: None) -> None:
    import qrmi

    resource = qrmi.QuantumResource("FRESNEL", qrmi.ResourceType.PasqalCloud)
    assert resource.is_accessible()
    task = resource.task_start(qrmi.Payload.PasqalCloud(sequence=sequence, job_runs=12))
    deadline = time.monotonic() + 15
    while (status := resource.task_status(task)) in (qrmi.TaskStatus.Queued,
                                                      qrmi.TaskStatus.Running):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == qrmi.TaskStatus.Completed
    counter = json.loads(resource.task_result(task).value)["counter"]
    assert sum(counter.values()) == 12 and {len(b) for b in counter} == {4}
    target = json.loads(resource.target().value)
    assert target[0]["device_type"] == "FRESNEL"
    grants = [r for r in pasqal.server.log if r.path == "/pasqal/oauth/token"]
    assert grants and all(r.status == 200 for r in grants)


def test_qrmi_with_user_credentials_stops_a_task_and_sees_maintenance(
        pasqal: Pasqal, sequence: str, qrmi_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import qrmi

    for key in ("CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"EMU_MPS_QRMI_PASQAL_CLOUD_{key}")
    monkeypatch.setenv("PASQAL_USERNAME", pasqal.config.pasqal_username)  # qrmi's own names
    monkeypatch.setenv("PASQAL_PASSWORD", pasqal.config.pasqal_password)
    resource = qrmi.QuantumResource("EMU_MPS", qrmi.ResourceType.PasqalCloud)
    # qrmi's payload has no tags: slow this device's jobs down through the config instead
    pasqal.config.job_seconds = 30
    task = resource.task_start(qrmi.Payload.PasqalCloud(sequence=sequence, job_runs=1))
    resource.task_stop(task)
    assert resource.task_status(task) == qrmi.TaskStatus.Cancelled
    batch = pasqal.core.state.batches[task]
    assert batch.user_id == pasqal.config.pasqal_username  # the password grant was used
    pasqal.server.set_maintenance("EMU_MPS", True)
    assert not resource.is_accessible()


# -- slurm-qpu's own pasqal-cloud type -----------------------------------------------------

def slurm_qpu_resource(pasqal: Pasqal, name: str = "FRESNEL",
                       **overrides: str) -> Any:
    from slurm_qpu.vendors.common.base import ResourceSpec
    from slurm_qpu.vendors.common.http import RetryPolicy
    from slurm_qpu.vendors.pasqal_cloud.resource import PasqalCloudType

    entry = next(e for e in pasqal.core.qrmi_resources(pasqal.url) if e["name"] == name)
    spec = ResourceSpec(name, "pasqal-cloud", {**entry["environment"], **overrides})
    return PasqalCloudType(retry=RetryPolicy(backoff=0, deadline=5)).create(spec)


def test_slurm_qpu_pasqal_cloud_type_runs_a_sequence(pasqal: Pasqal, sequence: str) -> None:
    from slurm_qpu.vendors.common.base import PasqalSequence, TaskStatus

    resource = slurm_qpu_resource(pasqal)
    assert resource.is_accessible()
    token = resource.acquire()
    pasqal.server.inject(Fault(path="/pasqal/core-fast/api/v1/batches$", status=503, count=1))
    task = resource.task_start(PasqalSequence(sequence, 16))
    deadline = time.monotonic() + 15
    while (status := resource.task_status(task)) in (TaskStatus.QUEUED, TaskStatus.RUNNING):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status is TaskStatus.COMPLETED
    counter = json.loads(resource.task_result(task).value)["counter"]
    assert sum(counter.values()) == 16 and {len(b) for b in counter} == {4}
    assert json.loads(resource.target().value)[0]["device_type"] == "FRESNEL"
    resource.release(token)


def test_slurm_qpu_pasqal_cloud_type_with_user_credentials_and_maintenance(
        pasqal: Pasqal, sequence: str) -> None:
    from slurm_qpu.vendors.common.base import PasqalSequence, TaskStatus

    resource = slurm_qpu_resource(
        pasqal, "EMU_FREE", QRMI_PASQAL_CLOUD_CLIENT_ID="", QRMI_PASQAL_CLOUD_CLIENT_SECRET="",
        QRMI_PASQAL_CLOUD_USERNAME=pasqal.config.pasqal_username,
        QRMI_PASQAL_CLOUD_PASSWORD=pasqal.config.pasqal_password)
    pasqal.config.job_seconds = 30
    task = resource.task_start(PasqalSequence(sequence, 1))
    resource.task_stop(task)
    assert resource.task_status(task) is TaskStatus.CANCELLED
    pasqal.server.set_maintenance("EMU_FREE", True)
    assert not resource.is_accessible()
    assert resource.status_reason == "EMU_FREE availability is INACTIVE"
