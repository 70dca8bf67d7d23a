"""qrmi_config.json: loading, and errors that name the file, the resource and the field."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_qpu.config import ConfigError, Problem, ResourceDef, load_config, parse_config

NAME_RULE = ("cannot prefix an environment variable: use letters, digits and '_', not "
             "starting with a digit (pattern [A-Za-z_][A-Za-z0-9_]*)")
KNOWN_TYPES = ("alice-bob-felis, direct-access, ibm-quantum-compute-service, "
               "ibm-quantum-system, iqm-server, local-simulator, pasqal-cloud, pasqal-local, "
               "qiskit-runtime-service")
WriteJson = Callable[..., Path]
RESOURCE_FIELDS = ("unknown field (allowed: name, type, environment, is_dynamic, slurm; use a key "
                   "starting with '_' for comments)")


def sim(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "type": "local-simulator", **extra}


def problems_of(write_json: WriteJson, data: object) -> tuple[Path, list[str]]:
    path = write_json(data)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    return path, [str(p) for p in excinfo.value.problems]


# ---------------------------------------------------------------- valid files


def test_example_config_loads_with_its_two_simulators(example_config: Path) -> None:
    config = load_config(example_config)
    assert config.names() == ["sim_a", "sim_b"]
    assert [r.type for r in config.resources] == ["local-simulator", "local-simulator"]
    assert config.get("sim_b").environment == {"QRMI_LOCAL_SIM_NUM_QUBITS": "20"}


def test_get_of_unknown_name_is_none(example_config: Path) -> None:
    assert load_config(example_config).get("nope") is None


def test_comment_keys_are_ignored_at_top_and_resource_level(write_json: WriteJson) -> None:
    path = write_json({"_comment": ["top"], "_types": "x",
                       "resources": [sim("a", _comment="res", _note={"k": 1})]})
    config = load_config(path)
    assert config.names() == ["a"]
    assert config.resources[0] == ResourceDef(name="a", type="local-simulator")


def test_is_dynamic_defaults_to_false_and_environment_to_empty(write_json: WriteJson) -> None:
    resource = load_config(write_json({"resources": [sim("a")]})).resources[0]
    assert resource.is_dynamic is False
    assert resource.environment == {}


def test_config_accepts_path_given_as_string(example_config: Path) -> None:
    assert load_config(str(example_config)).names() == ["sim_a", "sim_b"]


# ---------------------------------------------------------------- legacy types


def test_legacy_qiskit_runtime_service_reads_as_ibm_quantum_compute_service() -> None:
    r = ResourceDef(name="q", type="qiskit-runtime-service")
    assert r.current_type == "ibm-quantum-compute-service"
    assert r.is_legacy_type is True


def test_legacy_direct_access_reads_as_ibm_quantum_system() -> None:
    r = ResourceDef(name="d", type="direct-access")
    assert r.current_type == "ibm-quantum-system"
    assert r.is_legacy_type is True


def test_current_type_is_not_legacy() -> None:
    r = ResourceDef(name="s", type="ibm-quantum-system")
    assert r.current_type == "ibm-quantum-system"
    assert r.is_legacy_type is False


def test_legacy_qrs_keys_are_also_given_under_qcs_names() -> None:
    r = ResourceDef(name="q", type="qiskit-runtime-service",
                    environment={"QRMI_IBM_QRS_ENDPOINT": "https://e", "OTHER": "o"})
    assert r.effective_environment() == {
        "QRMI_IBM_QRS_ENDPOINT": "https://e",
        "QRMI_IBM_QCS_ENDPOINT": "https://e",
        "OTHER": "o",
    }


def test_current_key_wins_over_legacy_copy_when_both_are_set() -> None:
    r = ResourceDef(name="q", type="qiskit-runtime-service",
                    environment={"QRMI_IBM_QRS_IAM_APIKEY": "old",
                                 "QRMI_IBM_QCS_IAM_APIKEY": "new"})
    env = r.effective_environment()
    assert env["QRMI_IBM_QCS_IAM_APIKEY"] == "new"
    assert env["QRMI_IBM_QRS_IAM_APIKEY"] == "old"


def test_legacy_da_keys_are_also_given_under_qs_names() -> None:
    r = ResourceDef(name="d", type="direct-access",
                    environment={"QRMI_IBM_DA_ENDPOINT": "http://da", "QRMI_IBM_DA_AWS_KEY": "k"})
    assert r.effective_environment() == {
        "QRMI_IBM_DA_ENDPOINT": "http://da",
        "QRMI_IBM_QS_ENDPOINT": "http://da",
        "QRMI_IBM_DA_AWS_KEY": "k",
        "QRMI_IBM_QS_AWS_KEY": "k",
    }


def test_effective_environment_of_current_type_is_a_copy_of_environment() -> None:
    r = ResourceDef(name="s", type="local-simulator", environment={"A": "1"})
    env = r.effective_environment()
    env["B"] = "2"
    assert r.effective_environment() == {"A": "1"}


def test_legacy_types_validate_in_a_file(write_json: WriteJson) -> None:
    path = write_json({"resources": [{"name": "q", "type": "qiskit-runtime-service"},
                                     {"name": "d", "type": "direct-access"}]})
    config = load_config(path)
    assert [r.current_type for r in config.resources] == ["ibm-quantum-compute-service",
                                                          "ibm-quantum-system"]


# ---------------------------------------------------------------- errors


def test_name_with_dash_names_file_resource_and_field(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("ibm-fez")]})
    assert problems == [f"{path}: resource 'ibm-fez': field 'name': name 'ibm-fez' {NAME_RULE}"]


def test_name_starting_with_digit_is_rejected(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("1q")]})
    assert problems == [f"{path}: resource '1q': field 'name': name '1q' {NAME_RULE}"]


def test_unknown_type_lists_known_types(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [{"name": "a", "type": "ibm-cloud"}]})
    assert problems == [f"{path}: resource 'a': field 'type': unknown type 'ibm-cloud'; "
                        f"known: {KNOWN_TYPES}"]


def test_environment_key_that_is_not_an_env_name_is_rejected(write_json: WriteJson) -> None:
    path, problems = problems_of(
        write_json, {"resources": [sim("a", environment={"bad-key": "1", "GOOD": "2",
                                                         "9X": "3"})]})
    assert problems == [f"{path}: resource 'a': field 'environment': key(s) 'bad-key', '9X' "
                        "are not environment variable names"]


def test_non_string_environment_value_names_the_key(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a", environment={"N": 5})]})
    assert problems == [f"{path}: resource 'a': field 'environment.N': "
                        "Input should be a valid string"]


def test_misspelt_field_is_reported_as_unknown_field(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a", enviroment={})]})
    assert problems == [f"{path}: resource 'a': field 'enviroment': {RESOURCE_FIELDS}"]


def test_unknown_top_level_field_lists_allowed_top_level_fields(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a")], "resource": []})
    assert problems == [f"{path}: field 'resource': unknown field (allowed: resources)"]


def test_missing_resources_list_is_reported(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {})
    assert problems == [f"{path}: field 'resources': required field is missing"]


def test_resource_without_name_is_labelled_by_position(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a"),
                                                            {"type": "local-simulator"}]})
    assert problems == [f"{path}: resource #2: field 'name': required field is missing"]


def test_resource_without_type_is_reported(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [{"name": "a"}]})
    assert problems == [f"{path}: resource 'a': field 'type': required field is missing"]


def test_duplicate_names_report_both_positions(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a"), sim("b"), sim("a")]})
    assert problems == [f"{path}: resource 'a' (#3): field 'name': duplicate name "
                        "(first defined as resource #1)"]


def test_every_duplicate_is_reported(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [sim("a"), sim("a"), sim("a")]})
    assert problems == [
        f"{path}: resource 'a' (#2): field 'name': duplicate name (first defined as resource #1)",
        f"{path}: resource 'a' (#3): field 'name': duplicate name (first defined as resource #1)",
    ]


def test_config_error_collects_all_problems_of_one_file(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, {"resources": [
        {"name": "a-b", "type": "nope", "enviroment": {}},
        {"type": "local-simulator"},
        sim("ok"),
        sim("ok"),
    ]})
    assert problems == [
        f"{path}: resource 'a-b': field 'name': name 'a-b' {NAME_RULE}",
        f"{path}: resource 'a-b': field 'type': unknown type 'nope'; known: {KNOWN_TYPES}",
        f"{path}: resource 'a-b': field 'enviroment': {RESOURCE_FIELDS}",
        f"{path}: resource #2: field 'name': required field is missing",
        f"{path}: resource 'ok' (#4): field 'name': duplicate name (first defined as resource #3)",
    ]


def test_config_error_message_is_every_problem_on_its_own_line(write_json: WriteJson) -> None:
    path = write_json({"resources": [sim("a-b"), sim("c-d")]})
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    lines = str(excinfo.value).splitlines()
    assert lines == [f"{path}: resource 'a-b': field 'name': name 'a-b' {NAME_RULE}",
                     f"{path}: resource 'c-d': field 'name': name 'c-d' {NAME_RULE}"]


def test_top_level_that_is_not_an_object_is_reported(write_json: WriteJson) -> None:
    path, problems = problems_of(write_json, [sim("a")])
    assert problems == [f"{path}: Input should be a valid dictionary or instance of QrmiConfig"]


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"resources": [\n  {"name": "a",}\n]}', encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value) == (f"{path}: invalid JSON at line 2 column 16: Expecting "
                                  "property name enclosed in double quotes")


def test_empty_file_is_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value) == f"{path}: invalid JSON at line 1 column 1: Expecting value"


def test_missing_file_is_reported_by_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert [str(p) for p in excinfo.value.problems] == [f"{path}: file not found"]
    assert excinfo.value.problems[0] == Problem(str(path), "file not found")


def test_non_utf8_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"resources": [{"name": "caf\xe9"}]}')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value).startswith(f"{path}: cannot read: 'utf-8' codec can't decode")


def test_unreadable_file_says_permission_denied(example_config: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read a mode 000 file")
    example_config.chmod(0)
    try:
        with pytest.raises(ConfigError) as excinfo:
            load_config(example_config)
    finally:
        example_config.chmod(0o600)
    assert str(excinfo.value) == (f"{example_config}: permission denied (the config is meant "
                                  "to be readable by root only)")


def test_permission_error_says_permission_denied_even_as_root(
    example_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as excinfo:
        load_config(example_config)
    assert str(excinfo.value) == (f"{example_config}: permission denied (the config is meant "
                                  "to be readable by root only)")


def test_parse_config_names_the_given_file_label() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"resources": [{"name": "x"}]}, file="inline")
    assert str(excinfo.value) == "inline: resource 'x': field 'type': required field is missing"


def test_problem_str_without_resource_or_field_is_file_and_message() -> None:
    assert str(Problem("f.json", "file not found")) == "f.json: file not found"


def test_comment_key_inside_environment_is_not_a_setting(write_json: WriteJson) -> None:
    path = write_json({"resources": [sim("a", environment={"_comment": "note",
                                                           "QRMI_LOCAL_SIM_NUM_QUBITS": "5"})]})
    resource = load_config(path).resources[0]
    assert resource.effective_environment() == {"QRMI_LOCAL_SIM_NUM_QUBITS": "5"}
