"""Reading the job's QPUs from the environment contract, inside a task."""

from __future__ import annotations

import pytest

from slurm_qpu.config import ResourceDef
from slurm_qpu.jobenv import JobEnvError, job_resource, job_resources
from slurm_qpu.jobenv.contract import Acquired, build
from slurm_qpu.vendors.common.base import JobContext, ResourceError, ResourceSpec

JOB = {
    "QRMI_JOB_QPU_RESOURCES": "ibm_fez,sim_a",
    "QRMI_JOB_QPU_TYPES": "ibm-quantum-compute-service,local-simulator",
    "QRMI_JOB_ID": "42",
    "QRMI_JOB_UID": "1000",
    "SLURM_JOB_USER": "alice",
    "ibm_fez_QRMI_IBM_QCS_ENDPOINT": "https://q",
    "ibm_fez_QRMI_JOB_ACQUISITION_TOKEN": "sess-1",
    "ibm_fez_QRMI_JOB_TIMEOUT_SECONDS": "600",
    "sim_a_QRMI_LOCAL_SIM_NUM_QUBITS": "5",
    "sim_a_QRMI_JOB_ACQUISITION_TOKEN": "sim-2",
    "sim_a_QRMI_JOB_TIMEOUT_SECONDS": "600",
    "PATH": "/usr/bin",
}


def error(environ: dict[str, str], name: str | None = None) -> str:
    with pytest.raises(JobEnvError) as excinfo:
        if name is None:
            job_resources(environ)
        else:
            job_resource(name, environ)
    return str(excinfo.value)


def test_job_resources_lists_the_job_qpus_in_request_order_with_their_types() -> None:
    specs = job_resources(JOB)
    assert [(s.name, s.type) for s in specs] == [
        ("ibm_fez", "ibm-quantum-compute-service"), ("sim_a", "local-simulator")]


def test_each_resource_gets_its_own_settings_unprefixed_including_the_token() -> None:
    ibm, sim = job_resources(JOB)
    assert dict(ibm.environment) == {"QRMI_IBM_QCS_ENDPOINT": "https://q",
                                     "QRMI_JOB_ACQUISITION_TOKEN": "sess-1",
                                     "QRMI_JOB_TIMEOUT_SECONDS": "600"}
    assert dict(sim.environment) == {"QRMI_LOCAL_SIM_NUM_QUBITS": "5",
                                     "QRMI_JOB_ACQUISITION_TOKEN": "sim-2",
                                     "QRMI_JOB_TIMEOUT_SECONDS": "600"}


def test_job_context_has_job_id_uid_user_and_the_resource_timeout() -> None:
    env = dict(JOB, sim_a_QRMI_JOB_TIMEOUT_SECONDS="60")
    ibm, sim = job_resources(env)
    assert ibm.job == JobContext(job_id=42, uid=1000, user="alice", timeout_seconds=600)
    assert sim.job.timeout_seconds == 60


def test_missing_optional_job_values_are_none() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "sim_a", "QRMI_JOB_QPU_TYPES": "local-simulator"}
    assert job_resources(env) == [ResourceSpec("sim_a", "local-simulator", {}, JobContext())]


def test_legacy_slurm_variables_are_read_when_the_qrmi_ones_are_unset() -> None:
    env = {"SLURM_JOB_QPU_RESOURCES": "sim_a", "SLURM_JOB_QPU_TYPES": "local-simulator"}
    assert [s.name for s in job_resources(env)] == ["sim_a"]


def test_qrmi_variables_win_over_the_legacy_slurm_ones() -> None:
    env = dict(JOB, SLURM_JOB_QPU_RESOURCES="other", SLURM_JOB_QPU_TYPES="pasqal-cloud")
    assert [s.name for s in job_resources(env)] == ["ibm_fez", "sim_a"]


def test_qrmi_list_delimiter_splits_the_lists() -> None:
    env = dict(JOB, QRMI_LIST_DELIMITER=";", QRMI_JOB_QPU_RESOURCES="ibm_fez;sim_a",
               QRMI_JOB_QPU_TYPES="ibm-quantum-compute-service;local-simulator")
    assert [s.name for s in job_resources(env)] == ["ibm_fez", "sim_a"]


def test_spaces_around_list_items_are_ignored() -> None:
    env = dict(JOB, QRMI_JOB_QPU_RESOURCES=" ibm_fez , sim_a ",
               QRMI_JOB_QPU_TYPES="ibm-quantum-compute-service, local-simulator")
    assert [(s.name, s.type) for s in job_resources(env)] == [
        ("ibm_fez", "ibm-quantum-compute-service"), ("sim_a", "local-simulator")]


def test_legacy_type_is_read_as_its_successor_with_legacy_keys_under_current_names() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "ibm_fez", "QRMI_JOB_QPU_TYPES": "qiskit-runtime-service",
           "ibm_fez_QRMI_IBM_QRS_IAM_APIKEY": "legacy-key",
           "ibm_fez_QRMI_IBM_QRS_ENDPOINT": "https://old",
           "ibm_fez_QRMI_IBM_QCS_ENDPOINT": "https://new"}
    (spec,) = job_resources(env)
    assert spec.type == "ibm-quantum-compute-service"
    assert spec.environment["QRMI_IBM_QCS_IAM_APIKEY"] == "legacy-key"
    assert spec.environment["QRMI_IBM_QCS_ENDPOINT"] == "https://new"  # current name wins


def test_settings_of_a_qpu_whose_name_extends_another_are_not_mixed_in() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "sim,sim_a",
           "QRMI_JOB_QPU_TYPES": "local-simulator,local-simulator",
           "sim_QRMI_LOCAL_SIM_NUM_QUBITS": "3", "sim_a_QRMI_LOCAL_SIM_NUM_QUBITS": "5"}
    sim, sim_a = job_resources(env)
    assert dict(sim.environment) == {"QRMI_LOCAL_SIM_NUM_QUBITS": "3"}
    assert dict(sim_a.environment) == {"QRMI_LOCAL_SIM_NUM_QUBITS": "5"}


def test_empty_lists_mean_a_job_without_qpus() -> None:
    assert job_resources({"QRMI_JOB_QPU_RESOURCES": "", "QRMI_JOB_QPU_TYPES": ""}) == []


def test_what_the_contract_exports_is_read_back_unchanged() -> None:
    ibm = ResourceDef(name="ibm_fez", type="qiskit-runtime-service",
                      environment={"QRMI_IBM_QRS_ENDPOINT": "https://q"})
    sim = ResourceDef(name="sim_a", type="local-simulator",
                      environment={"QRMI_LOCAL_SIM_NUM_QUBITS": "5"})
    env = build([Acquired(ibm, "sess-1"), Acquired(sim, "sim-2")], job_id=7, uid=1000,
                time_limit_seconds=300).merged({"sim_a_QRMI_LOCAL_SIM_NUM_QUBITS": "9"})
    got = job_resources(env)
    assert [(s.name, s.type) for s in got] == [("ibm_fez", "ibm-quantum-compute-service"),
                                               ("sim_a", "local-simulator")]
    assert got[0].environment["QRMI_IBM_QCS_ENDPOINT"] == "https://q"
    assert got[0].environment["QRMI_JOB_ACQUISITION_TOKEN"] == "sess-1"
    assert got[1].environment["QRMI_LOCAL_SIM_NUM_QUBITS"] == "9"  # the user's value won
    assert got[1].job == JobContext(job_id=7, uid=1000, timeout_seconds=300)


def test_outside_a_qpu_job_the_error_says_to_submit_with_qpu() -> None:
    assert error({"PATH": "/bin"}) == (
        "not inside a QPU job: QRMI_JOB_QPU_RESOURCES is not set; submit the job with "
        "sbatch --qpu=NAME (names: slurm-qpu list)")


def test_job_env_error_is_a_resource_error() -> None:
    assert issubclass(JobEnvError, ResourceError)


def test_names_without_types_is_an_error() -> None:
    assert error({"QRMI_JOB_QPU_RESOURCES": "sim_a"}) == (
        "QRMI_JOB_QPU_RESOURCES is set but QRMI_JOB_QPU_TYPES is not; the job's QPU "
        "environment is incomplete")


def test_legacy_names_without_legacy_types_is_an_error_naming_them() -> None:
    assert error({"SLURM_JOB_QPU_RESOURCES": "sim_a", "QRMI_JOB_QPU_TYPES": "x"}) == (
        "SLURM_JOB_QPU_RESOURCES is set but SLURM_JOB_QPU_TYPES is not; the job's QPU "
        "environment is incomplete")


def test_length_mismatch_between_names_and_types_is_an_error() -> None:
    env = dict(JOB, QRMI_JOB_QPU_TYPES="local-simulator")
    assert error(env) == (
        "QRMI_JOB_QPU_RESOURCES lists 2 QPU(s) (ibm_fez,sim_a) but QRMI_JOB_QPU_TYPES lists "
        "1 type(s) (local-simulator); the job's QPU environment is inconsistent")


def test_an_empty_list_entry_is_an_error() -> None:
    env = dict(JOB, QRMI_JOB_QPU_RESOURCES="ibm_fez,,sim_a")
    assert error(env) == "QRMI_JOB_QPU_RESOURCES='ibm_fez,,sim_a' has an empty entry"


def test_a_job_id_that_is_not_a_number_is_an_error() -> None:
    assert error(dict(JOB, QRMI_JOB_ID="abc")) == "QRMI_JOB_ID='abc' is not an integer"


def test_a_timeout_that_is_not_a_number_is_an_error() -> None:
    env = dict(JOB, sim_a_QRMI_JOB_TIMEOUT_SECONDS="1h")
    assert error(env) == "sim_a_QRMI_JOB_TIMEOUT_SECONDS='1h' is not an integer"


def test_job_resource_finds_the_named_qpu() -> None:
    spec = job_resource("sim_a", JOB)
    assert (spec.name, spec.environment["QRMI_JOB_ACQUISITION_TOKEN"]) == ("sim_a", "sim-2")


def test_job_resource_of_an_unknown_name_lists_the_job_qpus() -> None:
    assert error(JOB, "ibm_kingston") == (
        "QPU 'ibm_kingston' is not one of this job's QPUs (ibm_fez, sim_a); use one of them "
        "or submit with sbatch --qpu=ibm_kingston")


def test_job_resource_in_a_job_without_qpus_says_none() -> None:
    env = {"QRMI_JOB_QPU_RESOURCES": "", "QRMI_JOB_QPU_TYPES": ""}
    assert error(env, "sim_a") == (
        "QPU 'sim_a' is not one of this job's QPUs (none); use one of them or submit with "
        "sbatch --qpu=sim_a")


def test_job_resource_reads_the_process_environment_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "sim_a")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "local-simulator")
    monkeypatch.setenv("sim_a_QRMI_JOB_ACQUISITION_TOKEN", "tok")
    assert job_resource("sim_a").environment["QRMI_JOB_ACQUISITION_TOKEN"] == "tok"
