"""The allow-list of settings a user may override from the submitting environment."""

from __future__ import annotations

import json

import pytest

from slurm_qpu.request.overrides import (
    Sorted,
    allowed_keys,
    apply,
    decode,
    sort_environment,
)
from slurm_qpu.vendors.ibm_quantum_compute import MAX_SESSION_TTL

QCS = "ibm-quantum-compute-service"
QCS_KEYS = "QRMI_IBM_QCS_SESSION_MODE, QRMI_IBM_QCS_SESSION_MAX_TTL, QRMI_IBM_QCS_TIMEOUT_SECONDS"


def not_allowed(var: str, hint: str) -> str:
    return (f"ignoring {var} from your environment: endpoints, credentials and other site "
            f"settings come from the site's QPU configuration ({hint})")


def test_an_allowed_setting_with_a_good_value_is_accepted() -> None:
    got = sort_environment({"ibm_x": QCS}, {"ibm_x_QRMI_IBM_QCS_SESSION_MODE": "batch",
                                            "ibm_x_QRMI_IBM_QCS_SESSION_MAX_TTL": "600",
                                            "ibm_x_QRMI_IBM_QCS_TIMEOUT_SECONDS": "1",
                                            "PATH": "/bin"})
    assert got == Sorted({"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch",
                                    "QRMI_IBM_QCS_SESSION_MAX_TTL": "600",
                                    "QRMI_IBM_QCS_TIMEOUT_SECONDS": "1"}}, [])


def test_an_endpoint_or_credential_is_refused_with_what_may_be_overridden() -> None:
    got = sort_environment({"ibm_x": QCS}, {
        "ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT": "https://evil.example",
        "ibm_x_QRMI_IBM_QCS_IAM_APIKEY": "mine"})
    assert got.accepted == {}
    assert got.refused == [
        not_allowed("ibm_x_QRMI_IBM_QCS_IAM_APIKEY", f"only {QCS_KEYS} may be overridden for "
                                                     "ibm_x"),
        not_allowed("ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT", f"only {QCS_KEYS} may be overridden "
                                                       "for ibm_x")]


def test_a_type_without_an_allow_list_accepts_nothing() -> None:
    got = sort_environment({"EMU_FREE": "pasqal-cloud"},
                           {"EMU_FREE_QRMI_PASQAL_CLOUD_BASE_URL": "https://evil.example"})
    assert got.accepted == {}
    assert got.refused == [not_allowed("EMU_FREE_QRMI_PASQAL_CLOUD_BASE_URL",
                                       "nothing may be overridden for EMU_FREE")]


@pytest.mark.parametrize("key,value,problem", [
    ("QRMI_IBM_QCS_SESSION_MODE", "forever", "expected one of dedicated, batch"),
    ("QRMI_IBM_QCS_SESSION_MODE", "Batch", "expected one of dedicated, batch"),
    ("QRMI_IBM_QCS_SESSION_MAX_TTL", "59", f"expected whole seconds between 60 and "
                                           f"{MAX_SESSION_TTL}"),
    ("QRMI_IBM_QCS_SESSION_MAX_TTL", str(MAX_SESSION_TTL + 1),
     f"expected whole seconds between 60 and {MAX_SESSION_TTL}"),
    ("QRMI_IBM_QCS_SESSION_MAX_TTL", "ten", f"expected whole seconds between 60 and "
                                            f"{MAX_SESSION_TTL}"),
    ("QRMI_IBM_QCS_TIMEOUT_SECONDS", "0", f"expected whole seconds between 1 and "
                                          f"{MAX_SESSION_TTL}"),
    ("QRMI_IBM_QCS_TIMEOUT_SECONDS", "1.5", f"expected whole seconds between 1 and "
                                            f"{MAX_SESSION_TTL}"),
], ids=["mode", "mode-case", "ttl-low", "ttl-high", "ttl-word", "timeout-zero",
        "timeout-fraction"])
def test_an_allowed_setting_with_a_bad_value_is_refused_with_the_reason(
        key: str, value: str, problem: str) -> None:
    got = sort_environment({"ibm_x": QCS}, {f"ibm_x_{key}": value})
    assert got.accepted == {}
    assert got.refused == [f"ignoring ibm_x_{key}={value!r}: {problem}"]


@pytest.mark.parametrize("value", [" 600", "600 ", "+600", "6_00", "٦٠٠", "0x258"])
def test_seconds_are_plain_digits_as_qrmi_parses_them(value: str) -> None:
    got = sort_environment({"ibm_x": QCS}, {"ibm_x_QRMI_IBM_QCS_SESSION_MAX_TTL": value})
    assert got.accepted == {}
    assert got.refused == [f"ignoring ibm_x_QRMI_IBM_QCS_SESSION_MAX_TTL={value!r}: expected "
                           f"whole seconds between 60 and {MAX_SESSION_TTL}"]


def test_the_plugins_own_contract_variables_are_not_overrides() -> None:
    got = sort_environment({"ibm_x": QCS}, {"ibm_x_QRMI_JOB_ACQUISITION_TOKEN": "s",
                                            "ibm_x_QRMI_JOB_TIMEOUT_SECONDS": "5"})
    assert got == Sorted({}, [])


def test_a_qpu_whose_name_prefixes_another_does_not_claim_its_variables() -> None:
    got = sort_environment({"ibm": QCS, "ibm_x": QCS},
                           {"ibm_x_QRMI_IBM_QCS_SESSION_MODE": "batch",
                            "ibm_QRMI_IBM_QCS_SESSION_MODE": "dedicated"})
    assert got == Sorted({"ibm": {"QRMI_IBM_QCS_SESSION_MODE": "dedicated"},
                          "ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}, [])


def test_legacy_spellings_are_accepted_under_the_current_keys() -> None:
    got = sort_environment({"old": "qiskit-runtime-service", "new": QCS},
                           {"old_QRMI_IBM_QRS_SESSION_MODE": "batch",
                            "new_QRMI_IBM_QRS_SESSION_MODE": "batch",
                            "old_QRMI_IBM_QRS_IAM_ENDPOINT": "https://evil.example"})
    assert got.accepted == {"old": {"QRMI_IBM_QCS_SESSION_MODE": "batch"},
                            "new": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}
    assert got.refused == [not_allowed("old_QRMI_IBM_QRS_IAM_ENDPOINT",
                                       f"only {QCS_KEYS} may be overridden for old")]


def test_allowed_keys_of_a_legacy_type_are_its_successors() -> None:
    assert set(allowed_keys("direct-access")) == {"QRMI_IBM_QS_TIMEOUT_SECONDS"}
    assert allowed_keys("local-simulator") == {}


def test_overrides_survive_the_trip_from_sbatch_to_the_prolog() -> None:
    sent = sort_environment({"ibm_x": QCS}, {"ibm_x_QRMI_IBM_QCS_SESSION_MODE": "batch"})
    assert json.loads(sent.encode()) == {"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}
    assert decode(sent.encode(), {"ibm_x": QCS}) == sent


def test_what_sbatch_sends_is_checked_again() -> None:
    sent = json.dumps({"ibm_x": {"QRMI_IBM_QCS_IAM_ENDPOINT": "https://evil.example",
                                 "QRMI_IBM_QCS_SESSION_MODE": ["batch"]},
                       "not_requested": {"QRMI_IBM_QCS_SESSION_MODE": "batch"},
                       "ibm_y": "not an object"})
    got = decode(sent, {"ibm_x": QCS, "ibm_y": QCS})
    assert got.accepted == {}
    assert got.refused == [
        not_allowed("ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT", f"only {QCS_KEYS} may be overridden "
                                                       "for ibm_x"),
        "ignoring ibm_x_QRMI_IBM_QCS_SESSION_MODE=\"['batch']\": expected one of dedicated, "
        "batch"]


@pytest.mark.parametrize("text,message", [
    ("{not json", "ignoring the job's QPU overrides: not valid JSON"),
    ('["ibm_x"]', "ignoring the job's QPU overrides: not a JSON object"),
])
def test_overrides_that_are_not_a_json_object_are_ignored_with_the_reason(
        text: str, message: str) -> None:
    assert decode(text, {"ibm_x": QCS}) == Sorted({}, [message])


def test_no_overrides_decode_to_nothing() -> None:
    assert decode(None, {"ibm_x": QCS}) == Sorted({}, [])
    assert decode("", {"ibm_x": QCS}) == Sorted({}, [])


def test_apply_lays_the_overrides_over_the_config_and_drops_stale_legacy_spellings() -> None:
    config = {"QRMI_IBM_QRS_SESSION_MODE": "dedicated", "QRMI_IBM_QCS_SESSION_MODE": "dedicated",
              "QRMI_IBM_QCS_ENDPOINT": "https://q.example"}
    got = apply(config, "qiskit-runtime-service", {"QRMI_IBM_QCS_SESSION_MODE": "batch"})
    assert got == {"QRMI_IBM_QCS_SESSION_MODE": "batch",
                   "QRMI_IBM_QCS_ENDPOINT": "https://q.example"}
    assert config["QRMI_IBM_QRS_SESSION_MODE"] == "dedicated"  # the config is not changed
    assert apply(config, QCS, {}) == config
