"""Which resource types exist and where their code lives.

Built-in types are listed here. A site adds its own type without forking slurm-qpu by
publishing an entry point in the group ``slurm_qpu.resource_types`` whose name is the type
name (as written in qrmi_config.json) and whose object is a ResourceType class or instance::

    [project.entry-points."slurm_qpu.resource_types"]
    acme-qpu = "acme_qpu.slurm:AcmeQpuType"
"""

from __future__ import annotations

import logging
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from slurm_qpu.resources.base import ResourceSpec, ResourceType, TypeNotAvailable
from slurm_qpu.types import CURRENT_TYPES, LEGACY_TYPES, LOCAL_SIMULATOR, current_type

ENTRY_POINT_GROUP = "slurm_qpu.resource_types"
log = logging.getLogger(__name__)

# type name -> "module:attribute", imported only when the type is used
BUILTIN: dict[str, str] = {
    LOCAL_SIMULATOR: "slurm_qpu.resources.local_simulator:LocalSimulatorType",
    "ibm-quantum-compute-service": "slurm_qpu.resources.ibm_quantum_compute:IbmQuantumComputeType",
    "ibm-quantum-system": "slurm_qpu.resources.ibm_quantum_system:IbmQuantumSystemType",
    "pasqal-cloud": "slurm_qpu.resources.pasqal_cloud:PasqalCloudType",
    "pasqal-local": "slurm_qpu.resources.pasqal_local:PasqalLocalType",
    "iqm-server": "slurm_qpu.resources.iqm_server:IqmServerType",
    "alice-bob-felis": "slurm_qpu.resources.alice_bob_felis:AliceBobFelisType",
}


@cache
def _plugins() -> dict[str, object]:
    found: dict[str, object] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep
    return found


def known_type_names() -> set[str]:
    """Every type name a config may use: current, legacy and site-registered."""
    return set(CURRENT_TYPES) | set(LEGACY_TYPES) | set(_plugins())


def _instantiate(obj: object, name: str) -> ResourceType:
    if isinstance(obj, type):
        obj = obj()
    if not callable(getattr(obj, "create", None)):
        raise TypeNotAvailable(f"resource type {name!r}: {obj!r} has no create(spec) method")
    return obj  # type: ignore[return-value]


def get_type(name: str) -> ResourceType:
    """The implementation of a type (legacy names give their successor's)."""
    wanted = current_type(name)
    plugin = _plugins().get(wanted) or _plugins().get(name)
    if plugin is not None:
        try:
            return _instantiate(plugin.load(), wanted)  # type: ignore[attr-defined]
        except TypeNotAvailable:
            raise
        except Exception as exc:  # a broken site plugin must not look like our bug
            raise TypeNotAvailable(f"resource type {wanted!r}: cannot load its entry point "
                                   f"{plugin}: {type(exc).__name__}: {exc}") from exc
    target = BUILTIN.get(wanted)
    if target is None:
        if wanted in CURRENT_TYPES:
            raise TypeNotAvailable(f"resource type {wanted!r} is not implemented by this "
                                   "version of slurm-qpu")
        raise TypeNotAvailable(f"unknown resource type {name!r}")
    module, _, attr = target.partition(":")
    return _instantiate(getattr(import_module(module), attr), wanted)


def create(spec: ResourceSpec) -> object:
    """Build the resource described by ``spec`` (``spec.type`` may be a legacy name)."""
    return get_type(spec.type).create(spec)
