"""The emulated IBM Quantum System API (+ IAM + S3): raw API shapes, the qrmi wheel's
``ibm-quantum-system`` resource, and slurm-qpu's own ``ibm-quantum-system`` type."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from slurm_qpu.vendors.common.base import (
    JobContext,
    QiskitPrimitive,
    ResourceSpec,
    TaskNotReady,
    TaskStatus,
)
from slurm_qpu.vendors.common.http import RetryPolicy, VendorUnavailable
from slurm_qpu.vendors.ibm_quantum_system.resource import IbmQuantumSystemType, Lanes
from slurm_qpu_emulator import primitives
from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.iam import IamService
from slurm_qpu_emulator.ibm_system import QuantumSystemService, ibm_system_services
from slurm_qpu_emulator.s3 import S3Service, object_url, presign
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Server

QPU = "ibm_kawasaki"
BUCKET = "qpu-jobs"
# ISA for kawasaki (basis ecr, id, rz, sx, x): H on qubit 0, X on qubit 1
QASM = ('OPENQASM 3.0; include "stdgates.inc"; bit[2] meas; rz(pi/2) $0; sx $0; rz(pi/2) $0; '
        "x $1; meas[0] = measure $0; meas[1] = measure $1;")
SAMPLER = {"pubs": [[QASM, None, 64]], "version": 2, "support_qiskit": False}


@dataclasses.dataclass
class Lab:
    server: Server
    qs: QuantumSystemService
    s3: S3Service
    config: EmulatorConfig
    issuer: TokenIssuer

    @property
    def api(self) -> str:
        return f"{self.server.url}/quantum-system"

    def token(self) -> str:
        response = httpx.post(f"{self.server.url}/identity/token", data={
            "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
            "apikey": self.config.api_key})
        return str(response.json()["access_token"])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}",
                "Service-CRN": self.config.service_crn}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.api + path, headers=self.headers(), **kwargs)

    def job_body(self, job_id: str | None = None, params: Any = SAMPLER,
                 base: str | None = None, expires: int = 600, **extra: Any) -> dict[str, Any]:
        """Upload ``params`` as the input and the POST /v1/jobs body that names it."""
        job_id = job_id or str(uuid.uuid4())
        raw = params if isinstance(params, bytes) else json.dumps(params).encode()
        self.s3.put(BUCKET, f"input_{job_id}.json", raw)

        def url(part: str, method: str) -> dict[str, str]:
            where = object_url(base or self.server.url, BUCKET, f"{part}_{job_id}.json")
            return {"type": "s3_compatible",
                    "presigned_url": presign(self.config, method, where, expires)}

        return {"id": job_id, "backend": QPU, "program_id": "sampler", "log_level": "info",
                "timeout_secs": 600, "storage": {"input": url("input", "GET"),
                                                 "results": url("results", "PUT"),
                                                 "logs": url("logs", "PUT")}, **extra}

    def submit(self, **kwargs: Any) -> str:
        body = self.job_body(**kwargs)
        response = self.call("POST", "/v1/jobs", json=body)
        assert response.status_code == 204, response.text
        return str(body["id"])

    def wait(self, job_id: str) -> dict[str, Any]:
        for _ in range(600):
            job: dict[str, Any] = self.call("GET", f"/v1/jobs/{job_id}").json()
            if job["status"] != "Running":
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} still Running")


@pytest.fixture
def fast_config(fast_config: EmulatorConfig) -> EmulatorConfig:
    """One backend, kawasaki, whose basis the circuits below are written for."""
    return dataclasses.replace(fast_config, qs_backends=(("ibm_kawasaki", "kawasaki"),))


def make_lab(serve: Callable[..., Server], config: EmulatorConfig, issuer: TokenIssuer) -> Lab:
    qs, s3 = ibm_system_services(config, issuer)
    assert isinstance(qs, QuantumSystemService) and isinstance(s3, S3Service)
    return Lab(serve(IamService(config, issuer), qs, s3), qs, s3, config, issuer)


@pytest.fixture
def lab(serve: Callable[..., Server], fast_config: EmulatorConfig, issuer: TokenIssuer) -> Lab:
    return make_lab(serve, fast_config, issuer)


@pytest.fixture
def slow_lab(serve: Callable[..., Server], fast_config: EmulatorConfig,
             issuer: TokenIssuer) -> Lab:
    """Jobs stay Running for 30 s (until cancelled), for cancel/lanes tests."""
    return make_lab(serve, dataclasses.replace(fast_config, job_seconds=30.0), issuer)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["status_code"] == response.status_code
    assert set(body) >= {"title", "trace", "errors"}
    (entry,) = body["errors"]
    assert entry["more_info"].startswith("https://")
    return {"title": body["title"], **entry}


# -- versions, backends, authentication --------------------------------------------------------
def test_version_and_versions_need_no_token(lab: Lab) -> None:
    assert httpx.get(f"{lab.api}/version").json() == {"version": "2025-08-01"}
    assert httpx.get(f"{lab.api}/versions").json() == {"versions": ["2025-08-01"]}


def test_backends_list_and_details(lab: Lab) -> None:
    assert lab.call("GET", "/v1/backends").json() == {"backends": [
        {"name": QPU, "status": "online", "version": "2.1.76", "locked": False}]}
    assert lab.call("GET", f"/v1/backends/{QPU}").json()["status"] == "online"


def test_backend_configuration_properties_and_lanes(lab: Lab) -> None:
    conf = lab.call("GET", f"/v1/backends/{QPU}/configuration").json()
    assert conf["backend_name"] == QPU and conf["n_qubits"] == 127
    assert conf["processor_type"]["revision"] == "3"  # a string in the API's schema
    props = lab.call("GET", f"/v1/backends/{QPU}/properties").json()
    assert props["backend_name"] == QPU and len(props["qubits"]) == 127
    assert lab.call("GET", f"/v1/backends/{QPU}/lanes").json() == {
        "hpc_workload_manager": {"lanes": 4}, "ibm_quantum_compute": {"lanes": 0}}


def test_unknown_backend_is_404_in_the_api_error_shape(lab: Lab) -> None:
    response = lab.call("GET", "/v1/backends/ibm_nowhere")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "1216"
    assert error["message"] == "Backend ibm_nowhere not found."


def test_pulse_defaults_are_not_available(lab: Lab) -> None:
    response = lab.call("GET", f"/v1/backends/{QPU}/defaults")
    assert response.status_code == 404
    assert error_of(response)["message"] == f"Pulse defaults are not available for backend {QPU}."


def test_missing_token_is_401(lab: Lab) -> None:
    response = httpx.get(f"{lab.api}/v1/backends",
                         headers={"Service-CRN": lab.config.service_crn})
    assert response.status_code == 401
    error = error_of(response)
    assert error["title"] == "authentication failed"
    assert error["code"] == "1200"
    assert error["message"] == "You are not authorized to perform this action."


def test_apikey_authorization_is_401(lab: Lab) -> None:
    response = httpx.get(f"{lab.api}/v1/backends", headers={
        "Authorization": f"apikey {lab.config.api_key}", "Service-CRN": lab.config.service_crn})
    assert response.status_code == 401
    assert error_of(response)["message"] == "You are not authorized to perform this action."


def test_expired_token_is_401(lab: Lab) -> None:
    headers = lab.headers()
    lab.issuer.expire_all()
    response = httpx.get(f"{lab.api}/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == "You are not authorized to perform this action."


def test_wrong_service_crn_is_401(lab: Lab) -> None:
    response = httpx.get(f"{lab.api}/v1/backends", headers={
        "Authorization": f"Bearer {lab.token()}", "Service-CRN": "crn:v1:other"})
    assert response.status_code == 401
    assert error_of(response)["message"] == (
        "Invalid Service-CRN 'crn:v1:other': not a provisioned IBM Quantum System instance.")


# -- jobs --------------------------------------------------------------------------------------
def test_job_runs_to_completed_with_results_and_logs_in_s3(lab: Lab) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    job_id = lab.submit()
    running = lab.call("GET", f"/v1/jobs/{job_id}").json()
    assert running["status"] == "Running"  # no Queued in this API
    assert "end_time" not in running
    job = lab.wait(job_id)
    assert job["status"] == "Completed", job
    assert set(job) >= {"id", "backend", "program_id", "created_time", "end_time",
                        "timeout_secs", "storage", "log_level"}
    assert job["usage"]["quantum_nanoseconds"] > 0
    result = json.loads(lab.s3.get(BUCKET, f"results_{job_id}.json"), cls=RuntimeDecoder)
    counts = result[0].data.meas.get_counts()
    assert sum(counts.values()) == 64
    assert set(counts) <= {"10", "11"}  # qubit 1 is flipped, qubit 0 in superposition
    assert "pub 0" in lab.s3.get(BUCKET, f"logs_{job_id}.json").decode()
    assert [j["id"] for j in lab.call("GET", "/v1/jobs").json()["jobs"]] == [job_id]
    assert lab.call("DELETE", f"/v1/jobs/{job_id}").status_code == 204
    gone = lab.call("GET", f"/v1/jobs/{job_id}")
    assert gone.status_code == 404
    error = error_of(gone)
    assert (error["code"], error["message"]) == ("1291", f"Job not found. Job ID: {job_id}.")


def test_input_behind_an_other_host_name_is_fetched_over_http(lab: Lab) -> None:
    host = lab.server.url.replace("127.0.0.1", "localhost")
    job_id = lab.submit(base=host)
    assert lab.wait(job_id)["status"] == "Completed"
    fetched = [r for r in lab.server.log if r.path == f"/qpu-jobs/input_{job_id}.json"]
    assert fetched and fetched[0].headers["host"] == host.removeprefix("http://")


def test_job_body_is_validated(lab: Lab) -> None:
    cases = [({"program_id": "noise-learner"}, "Invalid program_id specified."),
             ({"backend": "ibm_nowhere"}, "backend: ibm_nowhere is not available."),
             ({"timeout_secs": 0}, "Field required: timeout_secs (an integer >= 1)."),
             ({"log_level": "loud"},
              "log_level must be one of debug, info, warning, error, critical."),
             ({"storage": {}}, "Field required: storage.input."),
             ({"storage": None}, "Field required: storage."),
             ({"id": ""}, "Field required: id (a string of 1 to 256 characters)."),
             ({"storage": {"input": {"type": "ibmcloud_cos"}}},
              "storage.input: ibmcloud_cos is for IBM internal use only; use s3_compatible."),
             ({"storage": {"input": {"type": "nfs"}}},
              "storage.input.type must be s3_compatible or ibmcloud_cos."),
             ({"storage": {"input": {"type": "s3_compatible"}}},
              "storage.input.presigned_url is required for s3_compatible storage.")]
    for override, message in cases:
        response = lab.call("POST", "/v1/jobs", json={**lab.job_body(), **override})
        assert response.status_code == 400, override
        error = error_of(response)
        assert error["title"] == "validation failed"
        assert error["message"] == message


def test_job_body_must_be_a_json_object(lab: Lab) -> None:
    not_object = lab.call("POST", "/v1/jobs", json=["a", "list"])
    assert not_object.status_code == 400
    assert error_of(not_object)["message"] == "The request body must be a JSON object."
    not_json = lab.call("POST", "/v1/jobs", content=b"{")
    assert not_json.status_code == 400
    assert error_of(not_json)["message"] == "request body is not JSON"


def test_duplicate_job_id_is_409(lab: Lab) -> None:
    job_id = lab.submit()
    response = lab.call("POST", "/v1/jobs", json=lab.job_body(job_id))
    assert response.status_code == 409
    assert error_of(response)["message"] == (
        f"Job with duplicate id already exists. Job ID: {job_id}")


def test_cancel_running_job_then_cancel_again_is_409(slow_lab: Lab) -> None:
    job_id = slow_lab.submit()
    deleting = slow_lab.call("DELETE", f"/v1/jobs/{job_id}")
    assert deleting.status_code == 409
    assert error_of(deleting)["message"] == (
        f"Deleting a job in a non-terminal state is not possible. Job ID: {job_id}.")
    assert slow_lab.call("POST", f"/v1/jobs/{job_id}/cancel").status_code == 204
    job = slow_lab.call("GET", f"/v1/jobs/{job_id}").json()
    assert job["status"] == "Cancelled" and "end_time" in job
    again = slow_lab.call("POST", f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert error_of(again)["message"] == f"Job is not cancellable. Job ID: {job_id}."
    assert f"results_{job_id}.json" not in slow_lab.s3.keys(BUCKET)


def test_lanes_full_is_429(slow_lab: Lab) -> None:
    slow_lab.qs.lanes = 1
    first = slow_lab.submit()
    response = slow_lab.call("POST", "/v1/jobs", json=slow_lab.job_body())
    assert response.status_code == 429
    assert error_of(response)["message"] == (
        f"The maximum number of execution lanes for backend {QPU} has been reached.")
    assert slow_lab.call("POST", f"/v1/jobs/{first}/cancel").status_code == 204
    third = slow_lab.submit()
    assert slow_lab.call("POST", f"/v1/jobs/{third}/cancel").status_code == 204


def test_maintenance_pauses_backend_and_refuses_jobs(lab: Lab) -> None:
    assert lab.server.set_maintenance(QPU, True) == ["ibm-quantum-system"]
    assert lab.call("GET", f"/v1/backends/{QPU}").json() == {
        "name": QPU, "version": "2.1.76", "status": "paused",
        "message": "The backend is paused for maintenance."}
    response = lab.call("POST", "/v1/jobs", json=lab.job_body())
    assert response.status_code == 423
    assert error_of(response)["message"] == (
        f"The requested backend {QPU} is paused for maintenance and cannot run jobs.")
    lab.server.set_maintenance(QPU, False)
    assert lab.call("GET", f"/v1/backends/{QPU}").json()["status"] == "online"


def test_input_that_is_not_json_fails_the_job_with_a_reason(lab: Lab) -> None:
    job = lab.wait(lab.submit(params=b"not json"))
    assert job["status"] == "Failed"
    assert job["reason_code"] == 1517
    assert job["reason_message"].startswith("The job input is not JSON:")
    assert job["reason_solution"] == "Upload the primitive input as JSON."
    assert "ERROR 1517" in lab.s3.get(BUCKET, f"logs_{job['id']}.json").decode()


def test_input_the_primitive_rejects_fails_the_job(lab: Lab,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(*args: Any) -> Any:
        raise primitives.PrimitiveError("Pub 0: the circuit is not ISA")

    monkeypatch.setattr(primitives, "run_primitive", reject)
    job = lab.wait(lab.submit())
    assert (job["status"], job["reason_code"], job["reason_message"]) == (
        "Failed", 1517, "Pub 0: the circuit is not ISA")
    assert job["reason_solution"] == (
        "Check the job input against the primitive's schema and the backend's target.")


def test_emulator_bug_fails_the_job_instead_of_hanging(lab: Lab,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(primitives, "run_primitive", crash)
    job = lab.wait(lab.submit())
    assert (job["status"], job["reason_code"], job["reason_message"]) == (
        "Failed", 1000, "Internal error: boom")


def test_results_that_cannot_be_stored_fail_the_job(lab: Lab) -> None:
    body = lab.job_body()
    where = object_url(lab.server.url, BUCKET, f"results_{body['id']}.json")
    body["storage"]["results"]["presigned_url"] = presign(
        EmulatorConfig(s3_access_key="intruder"), "PUT", where, 600)
    assert lab.call("POST", "/v1/jobs", json=body).status_code == 204
    job = lab.wait(body["id"])
    assert (job["status"], job["reason_code"]) == ("Failed", 1518)
    assert job["reason_message"].startswith(
        "Could not PUT the job results at its presigned URL: HTTP 403")
    assert job["reason_solution"] == "Check the results and logs presigned URLs."


def test_expired_input_url_fails_the_job(lab: Lab) -> None:
    real = lab.s3.clock
    lab.s3.clock = lambda: real() + 120
    job = lab.wait(lab.submit(expires=60))
    assert job["status"] == "Failed"
    assert job["reason_message"].startswith("Could not GET the job input at its presigned URL: "
                                            "HTTP 403")
    assert "Request has expired" in job["reason_message"]
    assert job["reason_solution"] == (
        "Check the input presigned URL and that it has not expired.")


def test_job_longer_than_its_timeout_fails(serve: Callable[..., Server],
                                           fast_config: EmulatorConfig,
                                           issuer: TokenIssuer) -> None:
    lab = make_lab(serve, dataclasses.replace(fast_config, job_seconds=2.0), issuer)
    job = lab.wait(lab.submit(timeout_secs=1))
    assert (job["status"], job["reason_code"]) == ("Failed", 1305)
    assert job["reason_message"] == (
        f"Job {job['id']} ran longer than its timeout of 1 seconds and was stopped.")
    assert job["reason_solution"] == "Raise timeout_secs or submit a shorter job."


def test_qrmi_resources_entry(lab: Lab) -> None:
    base = "http://emulator.example:8290"
    (entry,) = lab.qs.qrmi_resources(base)
    c = lab.config
    assert entry == {"name": QPU, "type": "ibm-quantum-system", "environment": {
        "QRMI_IBM_QS_ENDPOINT": f"{base}/quantum-system", "QRMI_IBM_QS_IAM_ENDPOINT": base,
        "QRMI_IBM_QS_IAM_APIKEY": c.api_key, "QRMI_IBM_QS_SERVICE_CRN": c.service_crn,
        "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": c.s3_access_key,
        "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": c.s3_secret_key,
        "QRMI_IBM_QS_S3_ENDPOINT": base, "QRMI_IBM_QS_S3_BUCKET": c.s3_bucket,
        "QRMI_IBM_QS_S3_REGION": c.s3_region}}


# -- the qrmi wheel ----------------------------------------------------------------------------
@pytest.fixture
def qrmi_env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    (entry,) = lab.qs.qrmi_resources(lab.server.url)
    for key, value in entry["environment"].items():
        monkeypatch.setenv(f"{QPU}_{key}", value)
    monkeypatch.setenv(f"{QPU}_QRMI_JOB_TIMEOUT_SECONDS", "600")  # qrmi's task_start needs it
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", QPU)
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "ibm-quantum-system")
    return lab


def test_qrmi_runs_a_sampler_job_against_the_emulator(qrmi_env: Lab) -> None:
    qrmi = pytest.importorskip("qrmi")
    from qiskit_ibm_runtime.json import RuntimeDecoder

    resource = qrmi.QuantumResource(QPU, qrmi.ResourceType.IBMQuantumSystem)
    task = resource.task_start(qrmi.Payload.QiskitPrimitive(input=json.dumps(SAMPLER),
                                                            program_id="sampler"))
    for _ in range(300):
        status = resource.task_status(task)
        if status != qrmi.TaskStatus.Running:
            break
        time.sleep(0.05)
    assert status == qrmi.TaskStatus.Completed
    result = json.loads(resource.task_result(task).value, cls=RuntimeDecoder)
    assert sum(result[0].data.meas.get_counts().values()) == 64
    assert "pub 0" in resource.task_logs(task)
    resource.task_stop(task)  # GET, then DELETE (it is final)
    assert qrmi_env.call("GET", f"/v1/jobs/{task}").status_code == 404
    # qrmi's Rust S3 client uploaded the input with a CRC32 checksum header
    upload = next(r for r in qrmi_env.server.log if r.method == "PUT")
    assert upload.headers["user-agent"].startswith("aws-sdk-rust/")
    assert "x-amz-checksum-crc32" in upload.headers


def test_qrmi_service_lists_the_resource_and_its_lanes(qrmi_env: Lab) -> None:
    qrmi = pytest.importorskip("qrmi")
    (resource,) = qrmi.QRMIService().resources()
    status = resource.status().to_dict()
    assert status["status"] == "online"
    assert status["capacity"] == {"available_slots": 4, "max_slots": 4}


def test_qrmi_sees_a_paused_backend_as_not_online(qrmi_env: Lab) -> None:
    qrmi = pytest.importorskip("qrmi")
    qrmi_env.server.set_maintenance(QPU, True)
    resource = qrmi.QuantumResource(QPU, qrmi.ResourceType.IBMQuantumSystem)
    assert resource.status().to_dict()["status"] == "paused"


# -- slurm-qpu's own ibm-quantum-system type ---------------------------------------------------
def own_qpu(lab: Lab, retry: RetryPolicy | None = None) -> Any:
    (entry,) = lab.qs.qrmi_resources(lab.server.url)
    spec = ResourceSpec(QPU, "ibm-quantum-system", entry["environment"],
                        JobContext(42, 1000, "alice", 600))
    return IbmQuantumSystemType(retry=retry or RetryPolicy(backoff=0.0, deadline=10.0)) \
        .create(spec)


def test_slurm_qpu_type_runs_a_sampler_job_against_the_emulator(lab: Lab) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    qpu = own_qpu(lab)
    assert qpu.is_accessible()
    assert qpu.lanes() == Lanes(4, 0)
    task = qpu.task_start(QiskitPrimitive(json.dumps(SAMPLER), "sampler"))
    for _ in range(300):
        if qpu.task_status(task) is not TaskStatus.RUNNING:
            break
        time.sleep(0.05)
    assert qpu.task_status(task) is TaskStatus.COMPLETED
    result = json.loads(qpu.task_result(task).value, cls=RuntimeDecoder)
    assert sum(result[0].data.meas.get_counts().values()) == 64
    assert "pub 0" in qpu.task_logs(task)
    target = json.loads(qpu.target().value)
    assert target["configuration"]["backend_name"] == QPU


def test_slurm_qpu_type_reports_the_failure_reason(lab: Lab) -> None:
    qpu = own_qpu(lab)
    task = qpu.task_start(QiskitPrimitive(json.dumps({"pubs": [["not qasm", None, 8]],
                                                      "version": 2}), "sampler"))
    for _ in range(300):
        if qpu.task_status(task) is not TaskStatus.RUNNING:
            break
        time.sleep(0.05)
    with pytest.raises(TaskNotReady, match=r"failed: .*\(code 1517\)"):
        qpu.task_result(task)


def test_slurm_qpu_type_cancels_a_running_job(slow_lab: Lab) -> None:
    qpu = own_qpu(slow_lab)
    task = qpu.task_start(QiskitPrimitive(json.dumps(SAMPLER), "sampler"))
    qpu.task_stop(task)
    assert qpu.task_status(task) is TaskStatus.CANCELLED


def test_slurm_qpu_type_sees_maintenance(lab: Lab) -> None:
    lab.server.set_maintenance(QPU, True)
    qpu = own_qpu(lab, RetryPolicy(backoff=0.01, deadline=10))
    assert not qpu.is_accessible()
    with pytest.raises(VendorUnavailable, match="paused for maintenance"):
        qpu.task_start(QiskitPrimitive(json.dumps(SAMPLER), "sampler"))
