"""The public name list users' sbatch reads when the config is root-only."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_qpu.request.catalog import CatalogError, is_stale, read_catalog, write_catalog
from slurm_qpu.request.selection import Known

WriteJson = Callable[..., Path]


def test_read_catalog_prefers_the_config_when_readable(write_json: WriteJson) -> None:
    config = write_json({"resources": [{"name": "from_config", "type": "direct-access"}]})
    names = write_json({"resources": [{"name": "from_catalog", "type": "pasqal-cloud"}]},
                       name="qpu_names.json")
    catalog = read_catalog(config, names)
    assert catalog.types == {"from_config": "ibm-quantum-system"}
    assert catalog.names == ["from_config"]
    assert catalog.source == config


def test_read_catalog_falls_back_to_catalog_when_config_is_missing(
    write_json: WriteJson, tmp_path: Path
) -> None:
    names = write_json({"resources": [{"name": "a", "type": "local-simulator"},
                                      {"name": "b", "type": "iqm-server"}]},
                       name="qpu_names.json")
    catalog = read_catalog(tmp_path / "missing.json", names)
    assert catalog.names == ["a", "b"]
    assert catalog.types["b"] == "iqm-server"
    assert catalog.source == names


def test_read_catalog_falls_back_to_catalog_when_config_is_not_readable(
    example_config: Path, write_json: WriteJson, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = write_json({"resources": [{"name": "public", "type": "local-simulator"}]},
                       name="qpu_names.json")
    real_read_text = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == example_config:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    assert read_catalog(example_config, names).names == ["public"]


def test_catalog_error_when_neither_is_readable_says_run_config_publish(tmp_path: Path) -> None:
    config, names = tmp_path / "qrmi_config.json", tmp_path / "qpu_names.json"
    with pytest.raises(CatalogError) as excinfo:
        read_catalog(config, names)
    assert str(excinfo.value) == (
        f"cannot check QPU names: {config} is not found and the public list {names} is "
        f"missing or unreadable; an administrator must run 'slurm-qpu config publish {config}'")


def test_catalog_error_says_permission_denied_for_an_unreadable_config(
    example_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    names = tmp_path / "qpu_names.json"
    with pytest.raises(CatalogError) as excinfo:
        read_catalog(example_config, names)
    assert str(excinfo.value).startswith(
        f"cannot check QPU names: {example_config} is permission denied and the public list")
    assert "slurm-qpu config publish" in str(excinfo.value)


def test_catalog_with_invalid_json_is_reported_with_its_line(tmp_path: Path) -> None:
    names = tmp_path / "qpu_names.json"
    names.write_text("{\n oops", encoding="utf-8")
    with pytest.raises(CatalogError) as excinfo:
        read_catalog(tmp_path / "missing.json", names)
    assert str(excinfo.value) == (f"{names}: invalid JSON at line 2: Expecting property name "
                                  "enclosed in double quotes")


def test_catalog_without_resources_list_is_reported(tmp_path: Path) -> None:
    names = tmp_path / "qpu_names.json"
    names.write_text('{"format": "slurm-qpu-catalog/1"}', encoding="utf-8")
    with pytest.raises(CatalogError) as excinfo:
        read_catalog(tmp_path / "missing.json", names)
    assert str(excinfo.value) == f"{names}: no 'resources' list"


def test_catalog_skips_entries_without_a_name_and_keeps_first_duplicate(
    write_json: WriteJson,
) -> None:
    config = write_json({"resources": [{"type": "local-simulator"}, "junk",
                                       {"name": "a", "type": "local-simulator"},
                                       {"name": "a", "type": "pasqal-cloud"}]})
    assert read_catalog(config, config).types == {"a": "local-simulator"}


def test_write_catalog_writes_mode_0644_atomically(tmp_path: Path) -> None:
    out = tmp_path / "pub" / "qpu_names.json"
    write_catalog([Known("sim_a", "local-simulator", None, True),
                   Known("q", "ibm-quantum-system", 127, False)],
                  tmp_path / "qrmi_config.json", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert os.listdir(out.parent) == ["qpu_names.json"]  # no temporary file left
    data = json.loads(out.read_text())
    assert data["format"] == "slurm-qpu-catalog/1"
    assert data["resources"] == [
        {"name": "sim_a", "type": "local-simulator", "is_simulator": True},
        {"name": "q", "type": "ibm-quantum-system", "num_qubits": 127, "is_simulator": False}]
    assert str(tmp_path / "qrmi_config.json") in data["_comment"]


def test_written_catalog_is_read_back_by_read_catalog(tmp_path: Path) -> None:
    out = tmp_path / "qpu_names.json"
    written = [Known("b", "pasqal-local", 20, False), Known("a", "local-simulator", None, True)]
    write_catalog(written, tmp_path / "cfg.json", out)
    catalog = read_catalog(tmp_path / "cfg.json", out)
    assert catalog.types == {"b": "pasqal-local", "a": "local-simulator"}
    assert list(catalog.known) == written


def test_catalog_read_from_the_config_takes_declared_facts_from_slurm(
        write_json: WriteJson) -> None:
    config = write_json({"resources": [
        {"name": "ibm_x", "type": "ibm-quantum-system", "slurm": {"num_qubits": 156}},
        {"name": "EMU_MPS", "type": "pasqal-cloud"}]})
    assert list(read_catalog(config, config).known) == [
        Known("ibm_x", "ibm-quantum-system", 156, False),
        Known("EMU_MPS", "pasqal-cloud", None, True)]


def test_is_stale_when_catalog_is_missing(example_config: Path) -> None:
    assert is_stale(example_config, example_config.with_name("qpu_names.json")) is True


def test_is_not_stale_when_catalog_is_newer_than_config(example_config: Path) -> None:
    names = example_config.with_name("qpu_names.json")
    names.write_text("{}")
    os.utime(example_config, (1_000_000, 1_000_000))
    os.utime(names, (2_000_000, 2_000_000))
    assert is_stale(example_config, names) is False


def test_is_stale_when_config_is_newer_than_catalog(example_config: Path) -> None:
    names = example_config.with_name("qpu_names.json")
    names.write_text("{}")
    os.utime(names, (1_000_000, 1_000_000))
    os.utime(example_config, (2_000_000, 2_000_000))
    assert is_stale(example_config, names) is True
