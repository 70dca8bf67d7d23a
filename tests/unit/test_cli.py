"""The slurm-qpu command: config check/publish, list, leases, help."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_qpu.cli import main
from slurm_qpu.lease.store import Lease, LeasedResource, LeaseState, LeaseStore

WriteJson = Callable[..., Path]
SECRET = "top-secret-api-key-123"


def secret_config(write_json: WriteJson) -> Path:
    return write_json({"resources": [
        {"name": "ibm_fez", "type": "qiskit-runtime-service",
         "environment": {"QRMI_IBM_QRS_IAM_APIKEY": SECRET}},
        {"name": "sim_a", "type": "local-simulator",
         "environment": {"QRMI_LOCAL_SIM_NUM_QUBITS": "5"}},
    ]})


# ---------------------------------------------------------------- config check


def test_config_check_of_valid_file_prints_ok_and_returns_0(
    example_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(example_config)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "sim_a: local-simulator, 1 setting(s)",
        "sim_b: local-simulator, 1 setting(s)",
        f"{example_config}: OK, 2 QPU(s)",
    ]
    assert err == ""


def test_config_check_notes_legacy_types(
    write_json: WriteJson, capsys: pytest.CaptureFixture[str]
) -> None:
    path = secret_config(write_json)
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("ibm_fez: ibm-quantum-compute-service, 1 setting(s) (legacy type "
            "'qiskit-runtime-service', read as 'ibm-quantum-compute-service')") in out.splitlines()
    assert SECRET not in out


def test_config_check_of_invalid_file_prints_every_problem_and_returns_1(
    write_json: WriteJson, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_json({"resources": [{"name": "a-b", "type": "local-simulator"},
                                     {"name": "c", "type": "nope"},
                                     {"type": "local-simulator"}]})
    assert main(["config", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{path}: resource 'a-b': field 'name': name 'a-b' cannot prefix")
    assert lines[1].startswith(f"{path}: resource 'c': field 'type': unknown type 'nope'; known:")
    assert lines[2] == f"{path}: resource #3: field 'name': required field is missing"
    assert lines[3] == f"{path}: 3 problems"


def test_config_check_counts_a_single_problem_in_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.json"
    assert main(["config", "check", str(missing)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"{missing}: file not found",
                                                   f"{missing}: 1 problem"]


# ---------------------------------------------------------------- config publish


def test_config_publish_writes_world_readable_catalog_of_names_and_current_types(
    write_json: WriteJson, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = secret_config(write_json)
    out = tmp_path / "pub" / "names.json"
    assert main(["config", "publish", str(config), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: ibm_fez, sim_a\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    data = json.loads(out.read_text())
    assert data["format"] == "slurm-qpu-catalog/1"
    assert data["resources"] == [
        {"name": "ibm_fez", "type": "ibm-quantum-compute-service", "is_simulator": False},
        {"name": "sim_a", "type": "local-simulator", "is_simulator": True}]


def test_config_publish_leaves_every_environment_value_out_of_the_catalog(
    write_json: WriteJson, tmp_path: Path
) -> None:
    config = secret_config(write_json)
    out = tmp_path / "names.json"
    assert main(["config", "publish", str(config), "--output", str(out)]) == 0
    text = out.read_text()
    assert SECRET not in text
    assert "QRMI_IBM_QRS_IAM_APIKEY" not in text
    assert "environment" not in text


def test_config_publish_defaults_to_qpu_names_json_beside_the_config(
    example_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "publish", str(example_config)]) == 0
    expected = example_config.with_name("qpu_names.json")
    assert capsys.readouterr().out == f"wrote {expected}: sim_a, sim_b\n"
    assert [r["name"] for r in json.loads(expected.read_text())["resources"]] == ["sim_a",
                                                                                 "sim_b"]


def test_config_publish_of_invalid_config_writes_nothing_and_returns_1(
    write_json: WriteJson, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_json({"resources": [{"name": "a-b", "type": "local-simulator"}]})
    out = tmp_path / "names.json"
    assert main(["config", "publish", str(config), "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith(f"{config}: resource 'a-b': field 'name':")
    assert not out.exists()


def test_config_publish_reports_unwritable_output(
    example_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "names.json"  # parent is a regular file
    assert main(["config", "publish", str(example_config), "-o", str(out)]) == 1
    assert capsys.readouterr().err == f"cannot write {out}: File exists\n"


# ---------------------------------------------------------------- list


def test_list_prints_a_table_of_names_and_types(
    write_json: WriteJson, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = secret_config(write_json)
    assert main(["list", "--config", str(config), "--names", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME     TYPE",
        "ibm_fez  ibm-quantum-compute-service",
        "sim_a    local-simulator",
    ]


def test_list_json_prints_names_and_types(
    example_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--config", str(example_config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "sim_a", "type": "local-simulator"},
                                                   {"name": "sim_b", "type": "local-simulator"}]


def test_list_reads_the_public_catalog_when_the_config_is_missing(
    write_json: WriteJson, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = write_json({"resources": [{"name": "pub_only", "type": "pasqal-cloud"}]},
                       name="names.json")
    assert main(["list", "--config", str(tmp_path / "nope.json"), "--names", str(names)]) == 0
    assert capsys.readouterr().out.splitlines() == ["NAME      TYPE",
                                                    "pub_only  pasqal-cloud"]


def test_list_without_config_or_catalog_fails_with_publish_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "nope.json"
    assert main(["list", "--config", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"cannot check QPU names: {config} is not found and the public list "
        f"{tmp_path / 'qpu_names.json'} is missing or unreadable; an administrator must run "
        f"'slurm-qpu config publish {config}'\n")


# ---------------------------------------------------------------- leases


def _store_with_two_leases(root: Path) -> LeaseStore:
    store = LeaseStore(root)
    store.save(Lease(7, ["sim_a", "sim_b"], LeaseState.ACQUIRED, "n1", "n1",
                     [LeasedResource("sim_a", "local-simulator", "tok", 1.0)]))
    store.save(Lease(12, [], LeaseState.FAILED, "n2", "n1", error="cannot acquire QPU x: no"))
    return store


def test_leases_lists_every_lease_with_state_role_and_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with_two_leases(tmp_path / "state")
    assert main(["leases", "--state-dir", str(tmp_path / "state")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "     JOB  STATE     ROLE    QPUS / ERROR",
        "      12  failed    member  cannot acquire QPU x: no",
        "       7  acquired  owner   sim_a,sim_b",
    ]


def test_leases_json_gives_the_lease_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with_two_leases(tmp_path / "state")
    assert main(["leases", "--state-dir", str(tmp_path / "state"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["job_id"], d["state"], d["names"]) for d in data] == [
        (12, "failed", []), (7, "acquired", ["sim_a", "sim_b"])]
    assert data[1]["resources"][0]["token"] == "tok"


def test_leases_of_empty_state_dir_prints_only_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leases", "--state-dir", str(tmp_path / "never-created")]) == 0
    assert capsys.readouterr().out == "     JOB  STATE     ROLE    QPUS / ERROR\n"


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("argv", [["--help"], ["config", "check", "--help"], ["list", "-h"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 0
    assert "usage: slurm-qpu" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == "slurm-qpu 0.1.0\n"


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: slurm-qpu" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["frobnicate"])
    assert excinfo.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_config_without_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["config"])
    except SystemExit as exc:
        rc = exc.code  # type: ignore[assignment]
    assert rc == 2
