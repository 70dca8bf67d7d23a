"""Resource types: built in, known-but-unimplemented, and site types from entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurm_qpu.config import ConfigError, load_config
from slurm_qpu.resources import registry
from slurm_qpu.resources.base import QuantumResource, ResourceSpec, TypeNotAvailable
from slurm_qpu.resources.local_simulator import LocalSimulator, LocalSimulatorType
from slurm_qpu.types import CURRENT_TYPES, current_type

WriteJson = Callable[..., Path]


@pytest.fixture(autouse=True)
def _fresh_plugin_cache() -> Iterator[None]:
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


@pytest.fixture
def site_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution 'acme-qpu' installed in tmp_path, with entry points in the group
    slurm_qpu.resource_types: a working type, one whose module is missing, and one whose
    object cannot create resources."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_qpu.py").write_text(textwrap.dedent("""\
        from slurm_qpu.resources.local_simulator import LocalSimulator

        class AcmeQpuType:
            type_name = "acme-qpu"

            def create(self, spec):
                return LocalSimulator(spec)

        NOT_A_TYPE = object()
        """))
    dist = site / "acme_qpu-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-qpu\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [slurm_qpu.resource_types]
        acme-qpu = acme_qpu:AcmeQpuType
        broken-qpu = acme_qpu_missing_module:Type
        odd-qpu = acme_qpu:NOT_A_TYPE
        """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "acme_qpu", raising=False)
    registry._plugins.cache_clear()
    return site


def test_known_type_names_include_current_and_legacy_names() -> None:
    known = registry.known_type_names()
    assert set(CURRENT_TYPES) <= known
    assert {"qiskit-runtime-service", "direct-access", "local-simulator",
            "ibm-quantum-compute-service"} <= known


def test_get_type_of_local_simulator() -> None:
    rtype = registry.get_type("local-simulator")
    assert isinstance(rtype, LocalSimulatorType)
    resource = rtype.create(ResourceSpec("sim_a", "local-simulator"))
    assert isinstance(resource, LocalSimulator)
    assert resource.resource_id == "sim_a"


@pytest.mark.parametrize("name", ["ibm-quantum-system", "pasqal-cloud", "iqm-server"])
def test_known_but_unimplemented_type_is_not_available(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(registry.BUILTIN, name)  # e.g. a trimmed-down site build
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type(name)
    assert str(excinfo.value) == (f"resource type {name!r} is not implemented by this "
                                  "version of slurm-qpu")


def test_legacy_type_name_reports_its_current_name_when_unimplemented(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(registry.BUILTIN, "ibm-quantum-system")
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type("direct-access")
    assert str(excinfo.value) == ("resource type 'ibm-quantum-system' is not "
                                  "implemented by this version of slurm-qpu")


@pytest.mark.parametrize("name", ["ibm-quantum-compute-service", "ibm-quantum-system",
                                  "pasqal-cloud", "pasqal-local", "iqm-server",
                                  "alice-bob-felis", "qiskit-runtime-service",
                                  "direct-access"])
def test_every_qrmi_type_is_built_in(name: str) -> None:
    rtype = registry.get_type(name)
    assert rtype.type_name == current_type(name)


def test_unknown_type_is_not_available() -> None:
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type("warp-drive")
    assert str(excinfo.value) == "unknown resource type 'warp-drive'"


def test_registry_create_builds_the_resource() -> None:
    resource = registry.create(ResourceSpec("s", "local-simulator"))
    assert isinstance(resource, LocalSimulator)


# ---------------------------------------------------------------- site types


@pytest.mark.usefixtures("site_plugins")
def test_site_type_from_entry_point_is_known() -> None:
    assert {"acme-qpu", "broken-qpu", "odd-qpu"} <= registry.known_type_names()


@pytest.mark.usefixtures("site_plugins")
def test_site_type_from_entry_point_creates_resources() -> None:
    rtype = registry.get_type("acme-qpu")
    assert type(rtype).__name__ == "AcmeQpuType"
    resource = rtype.create(ResourceSpec("acme_1", "acme-qpu", {"QRMI_LOCAL_SIM_NUM_QUBITS": "3"}))
    assert isinstance(resource, QuantumResource)
    assert resource.resource_id == "acme_1"


def test_config_accepts_a_site_type(site_plugins: Path, write_json: WriteJson) -> None:
    path = write_json({"resources": [{"name": "acme_1", "type": "acme-qpu"}]})
    assert [r.current_type for r in load_config(path).resources] == ["acme-qpu"]


def test_config_rejects_a_site_type_that_is_not_installed(write_json: WriteJson) -> None:
    path = write_json({"resources": [{"name": "acme_1", "type": "acme-qpu"}]})
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "field 'type': unknown type 'acme-qpu'; known:" in str(excinfo.value)


@pytest.mark.usefixtures("site_plugins")
def test_site_type_whose_module_is_missing_is_not_available() -> None:
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type("broken-qpu")
    message = str(excinfo.value)
    assert message.startswith("resource type 'broken-qpu': cannot load its entry point ")
    assert message.endswith("ModuleNotFoundError: No module named 'acme_qpu_missing_module'")


@pytest.mark.usefixtures("site_plugins")
def test_site_type_without_create_method_is_not_available() -> None:
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type("odd-qpu")
    assert str(excinfo.value).startswith("resource type 'odd-qpu': <object object at ")
    assert str(excinfo.value).endswith("> has no create(spec) method")
