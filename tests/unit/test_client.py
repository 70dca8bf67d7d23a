"""slurm_qpu.client: what a job's program reaches through the environment contract alone."""

from __future__ import annotations

import sys

import pytest

from slurm_qpu import client
from slurm_qpu.jobenv import JobEnvError

IBM_ENV = {
    "QRMI_JOB_QPU_RESOURCES": "ibm_fez,sim_a",
    "QRMI_JOB_QPU_TYPES": "ibm-quantum-compute-service,local-simulator",
    "QRMI_JOB_ID": "7",
    "ibm_fez_QRMI_IBM_QCS_ENDPOINT": "http://10.0.0.1:8290/api/v1",
    "ibm_fez_QRMI_IBM_QCS_IAM_ENDPOINT": "http://10.0.0.1:8290",
    "ibm_fez_QRMI_IBM_QCS_IAM_APIKEY": "key",
    "ibm_fez_QRMI_IBM_QCS_SERVICE_CRN": "crn:v1:x",
    "ibm_fez_QRMI_JOB_ACQUISITION_TOKEN": "session-1",
}


def test_qpus_lists_the_jobs_qpus_in_request_order() -> None:
    assert [(q.name, q.type) for q in client.qpus(IBM_ENV)] == [
        ("ibm_fez", "ibm-quantum-compute-service"), ("sim_a", "local-simulator")]


def test_outside_a_qpu_job_the_client_says_how_to_get_one() -> None:
    with pytest.raises(JobEnvError) as excinfo:
        client.ibm_session(environ={})
    assert str(excinfo.value).startswith("not inside a QPU job: QRMI_JOB_QPU_RESOURCES is "
                                         "not set; submit the job with sbatch --qpu=NAME")


def test_name_may_be_left_out_when_the_job_has_one_qpu_of_that_type() -> None:
    assert client._spec(None, IBM_ENV, "ibm-quantum-compute-service").name == "ibm_fez"


def test_name_is_required_when_the_job_has_several_qpus() -> None:
    with pytest.raises(client.ClientError) as excinfo:
        client.resource(environ=IBM_ENV)
    assert str(excinfo.value) == "this job has 2 QPUs (ibm_fez, sim_a); name the one you want"


def test_asking_a_qpu_for_the_wrong_vendor_names_both_types() -> None:
    with pytest.raises(client.ClientError) as excinfo:
        client.ibm_session("sim_a", IBM_ENV)
    assert str(excinfo.value) == ("QPU sim_a is of type local-simulator, not "
                                  "ibm-quantum-compute-service")


def test_no_qpu_of_the_wanted_type_is_an_error() -> None:
    with pytest.raises(client.ClientError) as excinfo:
        client.pasqal_client(environ=IBM_ENV)
    assert str(excinfo.value) == ("this job has no pasqal-cloud QPU; its QPUs: ibm_fez "
                                  "(ibm-quantum-compute-service), sim_a (local-simulator)")


def test_missing_sdk_gives_the_pip_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qiskit_ibm_runtime", None)  # import raises ImportError
    with pytest.raises(client.ClientError) as excinfo:
        client.ibm_session("ibm_fez", IBM_ENV)
    assert str(excinfo.value) == ("qiskit_ibm_runtime is not installed in this Python; install "
                                  "it with pip install 'slurm-qpu[ibm]'")


def test_missing_setting_names_the_variable() -> None:
    env = {k: v for k, v in IBM_ENV.items() if k != "ibm_fez_QRMI_JOB_ACQUISITION_TOKEN"}
    with pytest.raises(client.ClientError) as excinfo:
        client.ibm_session("ibm_fez", env)
    assert str(excinfo.value) == ("QPU ibm_fez: ibm_fez_QRMI_JOB_ACQUISITION_TOKEN is not set "
                                  "in this job's environment")


def test_resource_builds_slurm_qpus_own_type() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "sim_a", "QRMI_JOB_QPU_TYPES": "local-simulator"}
    assert client.resource(environ=env).resource_id == "sim_a"
