"""The emulated IBM Quantum Compute (Qiskit Runtime) REST API over raw HTTP: shapes, auth,
content types, sessions, maintenance, injected faults, and the primitives' input errors."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from slurm_qpu_emulator import ibm_runtime
from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.iam import GRANT_TYPE, IamService
from slurm_qpu_emulator.ibm_backends import load_backend
from slurm_qpu_emulator.ibm_runtime import (
    IbmRuntimeService,
    RuntimeState,
    ibm_runtime_services,
)
from slurm_qpu_emulator.primitives import PrimitiveError, run_primitive
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Fault, Server

# ISA for ibm_manila (basis cx, id, rz, sx, x; cx on 0-1): a Bell pair
BELL = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] meas; rz(1.5707963267948966) $0; '
        "sx $0; rz(1.5707963267948966) $0; cx $0, $1; "
        "meas[0] = measure $0; meas[1] = measure $1;")
BELL_STATE = BELL.split(" bit[2]")[0] + (" rz(1.5707963267948966) $0; sx $0; "
                                          "rz(1.5707963267948966) $0; cx $0, $1;")
Serve = Callable[..., Server]
LONG = "emulator:seconds=60"  # stays Queued for 30 s: long enough to act on it


@dataclasses.dataclass
class Api:
    server: Server
    config: EmulatorConfig
    issuer: TokenIssuer
    http: httpx.Client

    def token(self) -> str:
        response = self.http.post(f"{self.server.url}/identity/token",
                                  data={"grant_type": GRANT_TYPE, "apikey": self.config.api_key})
        return str(response.json()["access_token"])

    def job(self, tags: list[str] | None = None, backend: str = "ibm_manila",
            program: str = "sampler", **extra: Any) -> dict[str, Any]:
        params = extra.pop("params", {"pubs": [[BELL, None, 200]], "version": 2})
        response = self.http.post("/jobs", json={"program_id": program, "backend": backend,
                                                 "params": params, "tags": tags or [],
                                                 **extra})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def status(self, job_id: str) -> str:
        return str(self.http.get(f"/jobs/{job_id}").json()["state"]["status"])

    def wait(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["status"] not in ("Queued", "Running"):
                return dict(job)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")

    @property
    def state(self) -> RuntimeState:
        service = next(s for s in self.server.services if s.prefix == "/api/v1")
        assert isinstance(service, IbmRuntimeService)
        return service.state

    def session(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/sessions", json={"backend": "ibm_manila", **body})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def api(serve: Serve, fast_config: EmulatorConfig, issuer: TokenIssuer) -> Iterator[Api]:
    server = serve(IamService(fast_config, issuer), *ibm_runtime_services(fast_config, issuer))
    # one client per test: building one loads the CA bundle, which is slow (plain HTTP here)
    lab = Api(server, fast_config, issuer, httpx.Client(
        base_url=f"{server.url}/api/v1", timeout=10, verify=False,
        headers={"Service-CRN": fast_config.service_crn}))
    lab.http.headers["Authorization"] = f"Bearer {lab.token()}"
    yield lab
    lab.http.close()


def error(response: httpx.Response) -> str:
    body = response.json()
    assert body["status_code"] == response.status_code
    assert body["trace"] and body["errors"][0]["more_info"].startswith("https://")
    return str(body["errors"][0]["message"])


# -- authentication ------------------------------------------------------------------------

def test_requests_without_a_token_are_401_with_the_ibm_cloud_error_body(api: Api) -> None:
    response = api.http.get("/backends", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "unauthorized"
    assert error(response) == ("Unauthorized: the bearer token is missing, invalid or "
                               "expired; obtain a new one from IBM Cloud IAM")


def test_an_apikey_authorization_header_is_401(api: Api) -> None:
    # what the SDK falls back to when IAM refuses its key
    response = api.http.get("/backends",
                            headers={"Authorization": f"apikey {api.config.api_key}"})
    assert response.status_code == 401


def test_a_wrong_service_crn_is_401(api: Api) -> None:
    response = api.http.get("/backends", headers={"Service-CRN": "crn:v1:other"})
    assert response.status_code == 401
    assert error(response) == ("Unauthorized: the Service-CRN header does not name an "
                               "instance these credentials can use")


def test_an_expired_token_is_401_and_a_new_one_works(api: Api) -> None:
    api.issuer.expire_all()
    assert api.http.get("/backends").status_code == 401
    fresh = {"Authorization": f"Bearer {api.token()}"}
    assert api.http.get("/backends", headers=fresh).status_code == 200


def test_unknown_paths_are_authenticated_before_routing(api: Api) -> None:
    assert api.http.get("/nowhere", headers={"Authorization": ""}).status_code == 401
    assert api.http.get("/nowhere").status_code == 404


def test_any_ibm_api_version_header_is_accepted(api: Api) -> None:
    for version in ("2024-01-01", "2026-04-15"):
        assert api.http.get("/backends", headers={"IBM-API-Version": version}).is_success


# -- backends and usage ----------------------------------------------------------------------

def test_backends_list_devices_with_status_and_queue_length(api: Api) -> None:
    devices = api.http.get("/backends", params={"include_mocks": "true"}).json()["devices"]
    assert [d["name"] for d in devices] == ["ibm_manila", "ibm_brisbane"]
    manila = devices[0]
    assert manila["status"] == {"name": "online"}
    assert manila["queue_length"] == 0 and manila["qubits"] == 5
    assert manila["processor_type"]["revision"] == "5.11"
    assert devices[1]["processor_type"] == {"family": "Eagle", "revision": "3"}


def test_backend_status_is_active_with_a_queue_length(api: Api) -> None:
    status = api.http.get("/backends/ibm_manila/status").json()
    assert status == {"state": True, "status": "active", "message": "", "length_queue": 0,
                      "backend_version": "1.2.6"}


def test_configuration_and_properties_are_the_snapshots_under_the_emulators_name(
        api: Api) -> None:
    conf = api.http.get("/backends/ibm_manila/configuration").json()
    assert conf["backend_name"] == "ibm_manila" and conf["n_qubits"] == 5
    assert conf["online_date"] and "cx" in conf["basis_gates"]
    props = api.http.get("/backends/ibm_manila/properties",
                         params={"updated_before": "2026-01-01T00:00:00"}).json()
    assert props["backend_name"] == "ibm_manila" and len(props["qubits"]) == 5


def test_an_unknown_backend_is_404(api: Api) -> None:
    response = api.http.get("/backends/ibm_nowhere/configuration")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"
    assert error(response) == "Backend ibm_nowhere not found."


def test_instance_usage_has_the_fields_the_sdk_reads(api: Api) -> None:
    usage = api.http.get("/instances/usage").json()
    assert usage["usage_limit_reached"] is False
    assert usage["usage_consumed_seconds"] == 0 and usage["usage_limit_seconds"] is None


def test_the_experimental_mount_shares_jobs_with_api_v1(api: Api) -> None:
    job = api.job(tags=[LONG])
    other = api.http.get(f"{api.server.url}/experimental/api/v1/jobs/{job['id']}")
    assert other.json()["id"] == job["id"]


# -- jobs ------------------------------------------------------------------------------------

def test_job_creation_answers_id_and_backend(api: Api) -> None:
    created = api.job()
    assert created["backend"] == "ibm_manila" and len(created["id"]) == 20


def test_a_job_completes_with_the_fields_qrmi_requires(api: Api) -> None:
    job = api.wait(api.job(cost=600)["id"])
    assert job["status"] == job["state"]["status"] == "Completed"
    assert job["program"] == {"id": "sampler"} and job["cost"] == 600
    assert job["created"].endswith("Z") and job["backend"] == "ibm_manila"
    assert job["params"]["pubs"][0][0] == BELL


def test_results_are_text_plain_runtime_encoded_counts(api: Api) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    job = api.wait(api.job()["id"])
    response = api.http.get(f"/jobs/{job['id']}/results")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith('{"__type__": "PrimitiveResult"')
    counts = json.loads(response.text, cls=RuntimeDecoder)[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 200


def test_logs_are_text_plain_and_tell_the_jobs_story(api: Api) -> None:
    job = api.wait(api.job()["id"])
    response = api.http.get(f"/jobs/{job['id']}/logs")
    assert response.headers["content-type"].startswith("text/plain")
    assert "queued on ibm_manila" in response.text and "job completed" in response.text
    assert "StatevectorSampler on 2 active of 5 qubits" in response.text


def test_metrics_have_timestamps_and_usage(api: Api) -> None:
    job = api.wait(api.job()["id"])
    metrics = api.http.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["timestamps"]["finished"] and metrics["usage"]["status"] == "completed"
    assert metrics["usage"]["quantum_seconds"] > 0


def test_results_of_an_unfinished_job_are_404(api: Api) -> None:
    job = api.job(tags=[LONG])
    response = api.http.get(f"/jobs/{job['id']}/results")
    assert response.status_code == 404
    assert error(response) == f"Job {job['id']} has no results: it is Queued."


def test_the_seconds_tag_keeps_a_job_queued(api: Api) -> None:
    assert api.status(api.job(tags=[LONG])["id"]) == "Queued"


def test_cancel_is_204_then_409_once_final(api: Api) -> None:
    job = api.job(tags=[LONG])
    assert api.http.post(f"/jobs/{job['id']}/cancel").status_code == 204
    assert api.status(job["id"]) == "Cancelled"
    again = api.http.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert error(again) == f"Job {job['id']} cannot be cancelled: it is already Cancelled."


def test_delete_removes_the_job(api: Api) -> None:
    job = api.job(tags=[LONG])
    assert api.http.delete(f"/jobs/{job['id']}").status_code == 204
    missing = api.http.get(f"/jobs/{job['id']}")
    assert missing.status_code == 404 and error(missing) == f"Job {job['id']} not found."


def test_tags_can_be_replaced(api: Api) -> None:
    job = api.job(tags=[LONG])
    assert api.http.put(f"/jobs/{job['id']}/tags", json={"tags": ["a", "b"]}).status_code == 204
    assert api.http.get(f"/jobs/{job['id']}").json()["tags"] == ["a", "b"]


def test_job_list_filters_and_pages(api: Api) -> None:
    session = api.session()
    waiting = api.job(tags=[LONG, "mine"], session_id=session["id"])
    done = api.wait(api.job()["id"])
    other = api.job(tags=[LONG], backend="ibm_brisbane",
                    params={"pubs": [["OPENQASM 3.0; bit[1] c; c[0] = measure $0;"]],
                            "version": 2})

    def ids(**query: Any) -> list[str]:
        body = api.http.get("/jobs", params={"exclude_params": "true", **query}).json()
        assert set(body) == {"jobs", "count", "offset", "limit"}
        assert all("params" not in j for j in body["jobs"])
        return [j["id"] for j in body["jobs"]]

    assert ids() == [other["id"], done["id"], waiting["id"]]  # newest first
    assert ids(sort="ASC") == [waiting["id"], done["id"], other["id"]]
    assert ids(pending="true") == [other["id"], waiting["id"]]
    assert ids(pending="false") == [done["id"]]
    assert ids(session_id=session["id"]) == [waiting["id"]]
    assert ids(backend="ibm_brisbane") == [other["id"]]
    assert ids(tags="mine") == [waiting["id"]]
    page = api.http.get("/jobs", params={"limit": 1, "offset": 1}).json()
    assert [j["id"] for j in page["jobs"]] == [done["id"]]
    assert (page["count"], page["offset"], page["limit"]) == (3, 1, 1)


def test_an_unknown_program_is_404(api: Api) -> None:
    response = api.http.post("/jobs", json={"program_id": "circuit-cutter",
                                            "backend": "ibm_manila", "params": {}})
    assert response.status_code == 404
    assert error(response) == "Program not found: circuit-cutter"


def test_a_real_program_the_emulator_does_not_run_is_400(api: Api) -> None:
    response = api.http.post("/jobs", json={"program_id": "noise-learner",
                                            "backend": "ibm_manila", "params": {}})
    assert response.status_code == 400
    assert error(response) == ("Program noise-learner is not available on the slurm-qpu "
                               "emulator (it runs sampler, estimator).")


def test_a_job_without_backend_is_400(api: Api) -> None:
    response = api.http.post("/jobs", json={"program_id": "sampler", "params": {}})
    assert response.status_code == 400 and error(response) == "backend is required."


def test_a_job_on_an_unknown_backend_is_404(api: Api) -> None:
    response = api.http.post("/jobs", json={"program_id": "sampler", "backend": "ibm_x",
                                            "params": {}})
    assert response.status_code == 404 and error(response) == "Backend ibm_x not found."


def test_a_non_isa_circuit_fails_the_job_with_the_services_reason(api: Api) -> None:
    qasm = ('OPENQASM 3.0; include "stdgates.inc"; bit[1] c; h $0; c[0] = measure $0;')
    job = api.wait(api.job(params={"pubs": [[qasm]], "version": 2})["id"])
    assert job["status"] == "Failed" and job["state"]["reason_code"] == 1002
    reason = ("The instruction h on qubits (0,) is not supported by the target system. "
              "Circuits that do not match the target hardware definition are no longer "
              "supported.")
    assert job["state"]["reason"] == reason
    assert api.http.get(f"/jobs/{job['id']}/results").text == reason


def test_a_job_running_past_its_cost_is_cancelled_ran_too_long(api: Api) -> None:
    job = api.wait(api.job(tags=["emulator:seconds=2.2"], cost=1)["id"])
    assert job["status"] == "Cancelled - Ran too long"
    assert job["state"]["reason_code"] == 1305
    assert job["state"]["reason"] == "Job was cancelled because it exceeded 1 seconds"


def test_estimator_gives_exact_expectation_values_from_qasm3(api: Api) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    observables = [{"IIIZZ": 1.0}, {"IIIXX": 1.0}, {"IIIZI": 1.0}]
    params = {"pubs": [[BELL_STATE, observables, [], 0.01]], "version": 2}
    job = api.wait(api.job(program="estimator", params=params)["id"])
    result = json.loads(api.http.get(f"/jobs/{job['id']}/results").text, cls=RuntimeDecoder)
    assert result[0].data.evs.round(6).tolist() == [1.0, 1.0, 0.0]


def test_only_the_active_qubits_of_a_wide_circuit_are_simulated(api: Api) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    qasm = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] c; x $100; '
            "c[0] = measure $100; c[1] = measure $7;")
    params = {"pubs": [[qasm, None, 50]], "version": 2}
    job = api.wait(api.job(backend="ibm_brisbane", params=params)["id"])
    result = json.loads(api.http.get(f"/jobs/{job['id']}/results").text, cls=RuntimeDecoder)
    assert result[0].data.c.get_counts() == {"01": 50}
    assert result.metadata["emulator"]["synthetic"] is False


def test_the_oldest_finished_jobs_are_forgotten_beyond_max_jobs(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ibm_runtime, "MAX_JOBS", 2)
    first = api.wait(api.job()["id"])
    second = api.wait(api.job()["id"])
    api.job(tags=[LONG])
    assert api.http.get(f"/jobs/{first['id']}").status_code == 404
    assert api.http.get(f"/jobs/{second['id']}").status_code == 200


# -- sessions --------------------------------------------------------------------------------

def test_a_new_session_is_open_with_the_fields_qrmi_requires(api: Api) -> None:
    session = api.session(mode="batch", max_ttl=600, instance=api.config.service_crn)
    assert session["backend_name"] == "ibm_manila" and session["mode"] == "batch"
    assert session["state"] == "open" and session["accepting_jobs"] is True
    assert session["max_ttl"] == 600 and 0 < session["active_ttl"] <= 600
    assert session["timestamps"][0]["status"] == "open"
    assert api.http.get(f"/sessions/{session['id']}").json()["id"] == session["id"]


def test_sessions_default_to_dedicated_with_the_maximum_ttl(api: Api) -> None:
    session = api.session()
    assert (session["mode"], session["max_ttl"]) == ("dedicated", 28800)


def test_an_invalid_session_mode_is_400(api: Api) -> None:
    response = api.http.post("/sessions", json={"backend": "ibm_manila", "mode": "shared"})
    assert response.status_code == 400
    assert error(response) == "Invalid session mode 'shared': expected dedicated or batch."


def test_a_max_ttl_beyond_the_limit_is_400(api: Api) -> None:
    response = api.http.post("/sessions", json={"backend": "ibm_manila", "max_ttl": 99999})
    assert response.status_code == 400
    assert error(response) == "max_ttl must be an integer from 1 to 28800 seconds."


def test_an_unknown_session_is_404(api: Api) -> None:
    response = api.http.get("/sessions/nosuchsession")
    assert response.status_code == 404 and error(response) == "unknown session"


def test_a_session_becomes_active_when_its_first_job_runs(api: Api) -> None:
    session = api.session()
    job = api.wait(api.job(session_id=session["id"])["id"])
    assert job["session_id"] == session["id"]
    after = api.http.get(f"/sessions/{session['id']}").json()
    assert after["state"] == "active" and after["activated_at"]
    assert [t["status"] for t in after["timestamps"]] == ["open", "active"]


def test_closing_an_idle_session_closes_it_at_once(api: Api) -> None:
    session = api.session()
    response = api.http.patch(f"/sessions/{session['id']}", json={"accepting_jobs": False})
    assert response.status_code == 204
    after = api.http.get(f"/sessions/{session['id']}").json()
    assert after["state"] == "closed" and after["accepting_jobs"] is False
    assert after["closed_at"]


def test_a_closing_session_waits_for_its_jobs(api: Api) -> None:
    session = api.session()
    job = api.job(tags=[LONG], session_id=session["id"])
    api.http.patch(f"/sessions/{session['id']}", json={"accepting_jobs": False})
    during = api.http.get(f"/sessions/{session['id']}").json()
    assert during["state"] == "open" and during["accepting_jobs"] is False
    api.http.post(f"/jobs/{job['id']}/cancel")
    assert api.http.get(f"/sessions/{session['id']}").json()["state"] == "closed"


def test_a_closed_session_refuses_new_jobs(api: Api) -> None:
    session = api.session()
    api.http.patch(f"/sessions/{session['id']}", json={"accepting_jobs": False})
    response = api.http.post("/jobs", json={"program_id": "sampler", "backend": "ibm_manila",
                                            "session_id": session["id"],
                                            "params": {"pubs": [[BELL]], "version": 2}})
    assert response.status_code == 400
    assert error(response) == f"Session {session['id']} is closed and no longer accepts jobs."


def test_patch_needs_accepting_jobs(api: Api) -> None:
    session = api.session()
    response = api.http.patch(f"/sessions/{session['id']}", json={"state": "closed"})
    assert response.status_code == 400
    assert error(response) == "accepting_jobs (true or false) is required."


def test_a_session_job_must_use_the_sessions_backend(api: Api) -> None:
    session = api.session()
    response = api.http.post("/jobs", json={"program_id": "sampler", "backend": "ibm_brisbane",
                                            "session_id": session["id"], "params": {}})
    assert response.status_code == 400
    assert error(response) == f"Session {session['id']} runs on ibm_manila, not on ibm_brisbane."


def test_an_idle_active_session_becomes_inactive_after_the_interactive_ttl(api: Api) -> None:
    session = api.session()
    api.wait(api.job(session_id=session["id"])["id"])
    with api.state.lock:
        api.state.sessions[session["id"]].last_job_completed -= 61  # a minute has passed
    after = api.http.get(f"/sessions/{session['id']}").json()
    assert after["state"] == "inactive" and after["accepting_jobs"] is True


def test_a_session_past_its_max_ttl_closes_and_fails_its_queued_jobs(api: Api) -> None:
    session = api.session(max_ttl=100)
    job = api.job(tags=[LONG], session_id=session["id"])
    with api.state.lock:
        api.state.sessions[session["id"]].created -= 101  # its max_ttl has run out
    after = api.http.get(f"/sessions/{session['id']}").json()
    assert after["state"] == "closed" and after["active_ttl"] == 0
    failed = api.http.get(f"/jobs/{job['id']}").json()
    assert failed["status"] == "Failed" and failed["state"]["reason_code"] == 4001
    assert failed["state"]["reason"] == "Job is part of a session that's been closed"


def test_cancelling_a_session_cancels_its_queued_jobs(api: Api) -> None:
    session = api.session()
    job = api.job(tags=[LONG], session_id=session["id"])
    assert api.http.delete(f"/sessions/{session['id']}/close").status_code == 204
    assert api.status(job["id"]) == "Cancelled"
    assert api.http.get(f"/sessions/{session['id']}").json()["state"] == "closed"


# -- maintenance, qrmi config, faults --------------------------------------------------------

def test_maintenance_pauses_the_backend_and_refuses_jobs(api: Api) -> None:
    assert api.server.set_maintenance("ibm_manila", True)
    status = api.http.get("/backends/ibm_manila/status").json()
    assert status["state"] is False and status["status"] == "maintenance"
    assert status["message"] == "The backend is paused for maintenance."
    listed = api.http.get("/backends").json()["devices"][0]
    assert listed["status"] == {"name": "paused", "reason": "maintenance"}
    refused = api.http.post("/jobs", json={"program_id": "sampler", "backend": "ibm_manila",
                                           "params": {"pubs": [[BELL]], "version": 2}})
    assert refused.status_code == 400
    assert error(refused) == "The Backend is not available: ibm_manila is paused for maintenance."
    api.server.set_maintenance("ibm_manila", False)
    assert api.http.get("/backends/ibm_manila/status").json()["status"] == "active"


def test_qrmi_resources_come_from_the_api_v1_mount_only(
        fast_config: EmulatorConfig, issuer: TokenIssuer) -> None:
    v1, experimental = ibm_runtime_services(fast_config, issuer)
    assert experimental.qrmi_resources("http://h:1") == []
    assert v1.qpu_names() == experimental.qpu_names() == ["ibm_manila", "ibm_brisbane"]
    entry = v1.qrmi_resources("http://h:1/")[0]
    assert entry["name"] == "ibm_manila" and entry["type"] == "ibm-quantum-compute-service"
    assert entry["environment"] == {
        "QRMI_IBM_QCS_ENDPOINT": "http://h:1/api/v1", "QRMI_IBM_QCS_IAM_ENDPOINT": "http://h:1",
        "QRMI_IBM_QCS_IAM_APIKEY": fast_config.api_key,
        "QRMI_IBM_QCS_SERVICE_CRN": fast_config.service_crn,
        "QRMI_IBM_QCS_SESSION_MODE": "dedicated"}


def test_an_injected_5xx_answers_in_the_ibm_error_shape(api: Api) -> None:
    api.server.inject(Fault(path="/api/v1/backends$", status=503, count=1))
    response = api.http.get("/backends")
    assert response.status_code == 503 and error(response) == "injected fault"
    assert response.json()["errors"][0]["code"] == "service_unavailable"
    assert api.http.get("/backends").status_code == 200


def test_injected_latency_times_out_a_short_client_timeout(api: Api) -> None:
    api.server.inject(Fault(path="/api/v1/backends$", delay=1.0, count=1))
    with pytest.raises(httpx.ReadTimeout):
        api.http.get("/backends", timeout=0.2)
    assert api.http.get("/backends").status_code == 200


# -- primitive input errors (what a Failed job's reason says) ---------------------------------

@pytest.mark.parametrize(("params", "message"), [
    ({"pubs": [[BELL]], "version": 1},
     "Error in the validation process of the job. Only version 2 of the sampler primitive is "
     "supported; use SamplerV2 / EstimatorV2."),
    ({"pubs": [], "version": 2},
     "Error in the validation process of the job. 'pubs' must be a non-empty list."),
    ({"pubs": [["OPENQASM 3.0; qubit q; bogus q;"]], "version": 2},
     "Error in the validation process of the job. Pub 0: the OpenQASM 3 circuit could not be "
     "parsed: "),
    ({"pubs": [[42]], "version": 2},
     "Error in the validation process of the job. Pub 0: expected a circuit (QPY or "
     "OpenQASM 3), got int."),
    ({"pubs": [['OPENQASM 3.0; include "stdgates.inc"; x $0;']], "version": 2},
     "Error in the validation process of the job. Pub 0: the circuit has no output classical "
     "registers, so the result would have no data."),
    ({"pubs": [[BELL, None, 5, 6]], "version": 2},
     "Error in the validation process of the job. Pub 0 must have 1 to 3 elements, not 4."),
    ({"pubs": [['OPENQASM 3.0; include "stdgates.inc"; bit[1] c; x $9; c[0] = measure $9;']],
      "version": 2},
     "Error in the validation process of the job. Pub 0: the circuit uses qubit 9 but "
     "ibm_manila has 5 qubits."),
    ({"pubs": [[BELL, None, "many"]], "version": 2},
     "Error in the validation process of the job. Pub 0: shots must be an integer"),
    ({"pubs": [{"__type__": "QuantumCircuit", "__value__": "not-qpy"}], "version": 2},
     "Error in the validation process of the job. The params could not be decoded: "),
])
def test_invalid_sampler_input_is_a_primitive_error(params: dict[str, Any], message: str,
                                                     fast_config: EmulatorConfig) -> None:
    with pytest.raises(PrimitiveError) as raised:
        run_primitive("sampler", params, load_backend("ibm_manila", "manila"), fast_config)
    assert str(raised.value).startswith(message)


def test_an_estimator_pub_without_observables_is_a_primitive_error(
        fast_config: EmulatorConfig) -> None:
    with pytest.raises(PrimitiveError) as raised:
        run_primitive("estimator", {"pubs": [[BELL_STATE]], "version": 2},
                      load_backend("ibm_manila", "manila"), fast_config)
    assert str(raised.value) == ("Error in the validation process of the job. Pub 0: an "
                                 "estimator pub needs a circuit and observables.")


def test_an_unknown_program_is_a_primitive_error(fast_config: EmulatorConfig) -> None:
    with pytest.raises(PrimitiveError) as raised:
        run_primitive("executor", {}, load_backend("ibm_manila", "manila"), fast_config)
    assert str(raised.value) == "Program executor is not supported by this backend."


def test_a_circuit_wider_than_max_qubits_simulated_gets_marked_synthetic_bits(
        fast_config: EmulatorConfig) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    config = dataclasses.replace(fast_config, max_qubits_simulated=1)
    outcome = run_primitive("sampler", {"pubs": [[BELL, None, 30]], "version": 2},
                            load_backend("ibm_manila", "manila"), config)
    result = json.loads(outcome.result, cls=RuntimeDecoder)
    bits = result[0].data.meas
    assert outcome.synthetic and result.metadata["emulator"]["synthetic"] is True
    assert (bits.num_shots, bits.num_bits) == (30, 2)
    assert result[0].metadata["emulator"]["reason"] == ("2 active qubits exceed "
                                                        "max_qubits_simulated=1")
    assert "SYNTHETIC" in outcome.logs


def test_a_circuit_the_reference_simulator_cannot_run_gets_marked_synthetic_bits(
        fast_config: EmulatorConfig) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    qasm = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] c; c[0] = measure $0; x $0; '
            "c[1] = measure $0;")
    outcome = run_primitive("sampler", {"pubs": [[qasm, None, 10]], "version": 2},
                            load_backend("ibm_manila", "manila"), fast_config)
    result = json.loads(outcome.result, cls=RuntimeDecoder)
    assert outcome.synthetic and result[0].data.c.num_bits == 2
    assert result[0].metadata["emulator"]["reason"] == (
        "the reference simulator cannot run it: 'StatevectorSampler cannot handle mid-circuit "
        "measurements'")
