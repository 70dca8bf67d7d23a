"""The environment every task of a --qpu job sees."""

from __future__ import annotations

import pytest

from slurm_qpu.config import ResourceDef
from slurm_qpu.jobenv.contract import (
    UNLIMITED_TIMEOUT_SECONDS,
    Acquired,
    EnvContract,
    build,
    rust_log_for,
    timeout_seconds,
)

SIM_A = ResourceDef(name="sim_a", type="local-simulator",
                    environment={"QRMI_LOCAL_SIM_NUM_QUBITS": "5"})
IBM = ResourceDef(name="ibm_fez", type="qiskit-runtime-service",
                  environment={"QRMI_IBM_QRS_ENDPOINT": "https://q", "SHARED": "x"})


def contract(**kw: object) -> EnvContract:
    args: dict[str, object] = {"job_id": 42, "uid": 1000, "time_limit_seconds": 600}
    args.update(kw)
    return build([Acquired(IBM, "sess-1"), Acquired(SIM_A, "sim-2")], **args)  # type: ignore[arg-type]


def test_resources_and_types_are_listed_in_request_order() -> None:
    forced = contract().forced
    assert forced["QRMI_JOB_QPU_RESOURCES"] == "ibm_fez,sim_a"
    assert forced["QRMI_JOB_QPU_TYPES"] == "ibm-quantum-compute-service,local-simulator"


def test_legacy_slurm_job_qpu_aliases_equal_the_qrmi_variables() -> None:
    forced = contract().forced
    assert forced["SLURM_JOB_QPU_RESOURCES"] == "ibm_fez,sim_a"
    assert forced["SLURM_JOB_QPU_TYPES"] == "ibm-quantum-compute-service,local-simulator"


def test_job_id_and_uid_are_forced() -> None:
    forced = contract().forced
    assert forced["QRMI_JOB_ID"] == "42"
    assert forced["QRMI_JOB_UID"] == "1000"


def test_unknown_uid_leaves_qrmi_job_uid_unset() -> None:
    assert "QRMI_JOB_UID" not in contract(uid=None).forced


def test_uid_zero_is_exported() -> None:
    assert contract(uid=0).forced["QRMI_JOB_UID"] == "0"


def test_every_config_setting_is_a_prefixed_default() -> None:
    assert contract().defaults == {
        "ibm_fez_QRMI_IBM_QRS_ENDPOINT": "https://q",
        "ibm_fez_QRMI_IBM_QCS_ENDPOINT": "https://q",  # legacy key under its current name
        "ibm_fez_SHARED": "x",
        "sim_a_QRMI_LOCAL_SIM_NUM_QUBITS": "5",
    }


def test_token_and_timeout_are_forced_per_resource() -> None:
    forced = contract().forced
    assert forced["ibm_fez_QRMI_JOB_ACQUISITION_TOKEN"] == "sess-1"
    assert forced["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == "sim-2"
    assert forced["ibm_fez_QRMI_JOB_TIMEOUT_SECONDS"] == "600"
    assert forced["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "600"


def test_exact_forced_keys() -> None:
    assert set(contract().forced) == {
        "QRMI_JOB_QPU_RESOURCES", "QRMI_JOB_QPU_TYPES", "SLURM_JOB_QPU_RESOURCES",
        "SLURM_JOB_QPU_TYPES", "QRMI_JOB_ID", "QRMI_JOB_UID",
        "ibm_fez_QRMI_JOB_ACQUISITION_TOKEN", "ibm_fez_QRMI_JOB_TIMEOUT_SECONDS",
        "sim_a_QRMI_JOB_ACQUISITION_TOKEN", "sim_a_QRMI_JOB_TIMEOUT_SECONDS",
    }


@pytest.mark.parametrize("limit", [None, 0, -1])
def test_job_without_time_limit_gets_eight_hours(limit: int | None) -> None:
    assert contract(time_limit_seconds=limit).forced["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "28800"
    assert timeout_seconds(limit) == UNLIMITED_TIMEOUT_SECONDS == 28800


def test_timeout_is_the_job_time_limit() -> None:
    assert timeout_seconds(3600) == 3600


def test_extra_env_is_forced() -> None:
    forced = contract(extra_env={"https_proxy": "http://proxy:3128"}).forced
    assert forced["https_proxy"] == "http://proxy:3128"


def test_config_setting_cannot_override_a_token() -> None:
    rdef = ResourceDef(name="s", type="local-simulator",
                       environment={"QRMI_JOB_ACQUISITION_TOKEN": "from-config"})
    c = build([Acquired(rdef, "real")], job_id=1, uid=None, time_limit_seconds=None)
    assert c.merged({})["s_QRMI_JOB_ACQUISITION_TOKEN"] == "real"


def test_merged_lets_user_values_win_for_defaults_only() -> None:
    c = contract()
    merged = c.merged({"sim_a_QRMI_LOCAL_SIM_NUM_QUBITS": "7",
                       "sim_a_QRMI_JOB_ACQUISITION_TOKEN": "user-fake",
                       "QRMI_JOB_ID": "1",
                       "UNRELATED": "u"})
    assert merged["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == "7"
    assert merged["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == "sim-2"
    assert merged["QRMI_JOB_ID"] == "42"
    assert "UNRELATED" not in merged


def test_merged_without_user_environment_is_defaults_plus_forced() -> None:
    c = contract()
    assert c.merged() == {**c.defaults, **c.forced}


def test_empty_acquisition_gives_empty_lists() -> None:
    c = build([], job_id=1, uid=None, time_limit_seconds=None)
    assert c.forced["QRMI_JOB_QPU_RESOURCES"] == ""
    assert c.defaults == {}


@pytest.mark.parametrize(("srun_debug", "rust_log"), [
    (None, "info"), ("", "info"), ("junk", "info"),
    ("0", "error"), ("1", "error"), ("2", "error"),
    ("3", "info"), ("4", "debug"), ("5", "trace"), ("9", "trace"),
])
def test_rust_log_follows_srun_verbosity(srun_debug: str | None, rust_log: str) -> None:
    assert rust_log_for(srun_debug) == rust_log
