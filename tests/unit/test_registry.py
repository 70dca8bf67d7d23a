"""Resource types: built in, known-but-unimplemented, and site types from entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurm_qpu.config import ConfigError, load_config
from slurm_qpu.vendors import builtin, registry
from slurm_qpu.vendors.common.base import QuantumResource, ResourceSpec, TypeNotAvailable
from slurm_qpu.vendors.local_simulator.resource import LocalSimulator, LocalSimulatorType
from slurm_qpu.vendors.type_names import CURRENT_TYPES, current_type

WriteJson = Callable[..., Path]


@pytest.fixture(autouse=True)
def _fresh_plugin_cache() -> Iterator[None]:
    registry.forget()
    yield
    registry.forget()


@pytest.fixture
def site_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution 'acme-qpu' installed in tmp_path, with entry points in the group
    slurm_qpu.resource_types: a working type, one whose module is missing, and one whose
    object cannot create resources."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_qpu.py").write_text(textwrap.dedent("""\
        from slurm_qpu.vendors.local_simulator.resource import LocalSimulator

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
    registry.forget()
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
    monkeypatch.delitem(builtin.vendors(), name)  # e.g. a trimmed-down site build
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type(name)
    assert str(excinfo.value) == (f"resource type {name!r} is not implemented by this "
                                  "version of slurm-qpu")


def test_legacy_type_name_reports_its_current_name_when_unimplemented(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(builtin.vendors(), "ibm-quantum-system")
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


# ---------------------------------------------------------------- site vendors (records)


@pytest.fixture
def site_vendor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution 'acme-vendor' registering Vendor records in slurm_qpu.vendors: a
    complete one (resource type, broker view, an override, a payload kind), and an entry
    point that is not a record."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_vendor.py").write_text(textwrap.dedent("""\
        from slurm_qpu.vendors import Allowed, Vendor
        from slurm_qpu.vendors.common.view import TokenSwapView
        from slurm_qpu.vendors.local_simulator.resource import LocalSimulator

        class AcmeType:
            type_name = "acme"

            def create(self, spec):
                return LocalSimulator(spec)

        VIEW = TokenSwapView("ACME_URL", "ACME_TOKEN", "Bearer")
        VENDOR = Vendor(
            type_name="acme", resource="acme_vendor:AcmeType", env_prefix="ACME_",
            overrides=(Allowed("ACME_SHOTS", lambda v: None if v.isdigit() else "digits",
                               "shots per task"),),
            payload="qiskit-primitive", view="acme_vendor:VIEW",
            simulator_prefixes=("SIM_",))
        NOT_A_RECORD = object()
        """))
    dist = site / "acme_vendor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-vendor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [slurm_qpu.vendors]
        acme = acme_vendor:VENDOR
        not-a-record = acme_vendor:NOT_A_RECORD
        """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "acme_vendor", raising=False)
    registry.forget()
    return site


@pytest.mark.usefixtures("site_vendor")
def test_a_site_vendor_gets_what_a_built_in_one_gets() -> None:
    from slurm_qpu.request import overrides
    from slurm_qpu.vendors.common.base import PasqalSequence, QiskitPrimitive
    from slurm_qpu.vendors.common.payloads import PayloadError, check_supported

    assert "acme" in registry.known_type_names()
    resource = registry.create(ResourceSpec("acme_1", "acme"))
    assert isinstance(resource, QuantumResource)
    view = registry.view_for("acme")  # its jobs reach it through the broker
    assert view.proxied and view.job_environment(
        {"ACME_URL": "https://acme", "ACME_TOKEN": "site-secret"}, name="acme_1",
        proxy_url="http://broker/p/acme_1", job_token="sqpu_1_1_x", job_id=1) == {
        "ACME_URL": "http://broker/p/acme_1", "ACME_TOKEN": "sqpu_1_1_x"}
    assert list(overrides.allowed_keys("acme")) == ["ACME_SHOTS"]
    from slurm_qpu.request.selection import simulator_by_type

    assert simulator_by_type("acme", "SIM_small") and not simulator_by_type("acme", "acme_1")
    spec = ResourceSpec("acme_1", "acme")
    check_supported(QiskitPrimitive("{}", "sampler"), spec, "in.json")
    with pytest.raises(PayloadError):
        check_supported(PasqalSequence("{}", 1), spec, "in.json")


@pytest.mark.usefixtures("site_vendor")
def test_a_site_entry_point_that_is_not_a_vendor_record_is_not_available() -> None:
    with pytest.raises(TypeNotAvailable) as excinfo:
        registry.get_type("not-a-record")
    assert str(excinfo.value) == ("resource type 'not-a-record': its entry point "
                                  "EntryPoint(name='not-a-record', value='acme_vendor:"
                                  "NOT_A_RECORD', group='slurm_qpu.vendors') is not a "
                                  "slurm_qpu.vendors.Vendor record")


@pytest.mark.usefixtures("site_plugins")
def test_the_old_entry_point_group_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="slurm_qpu.resource_types is deprecated"):
        assert type(registry.get_type("acme-qpu")).__name__ == "AcmeQpuType"
    assert not registry.view_for("acme-qpu").proxied  # no record: no view
