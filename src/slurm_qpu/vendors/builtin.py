"""The vendors built into slurm-qpu: type name -> the module whose ``VENDOR`` describes it
(one folder each). Adding a vendor is one folder plus one line here (or, for a site's own
vendor, one entry point: slurm_qpu.vendors.registry). Standard library only."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from slurm_qpu.vendors.record import Vendor

BUILTIN: dict[str, str] = {
    "ibm-quantum-compute-service": "slurm_qpu.vendors.ibm_quantum_compute",
    "ibm-quantum-system": "slurm_qpu.vendors.ibm_quantum_system",
    "pasqal-cloud": "slurm_qpu.vendors.pasqal_cloud",
    "pasqal-local": "slurm_qpu.vendors.pasqal_local",
    "iqm-server": "slurm_qpu.vendors.iqm_server",
    "alice-bob-felis": "slurm_qpu.vendors.alice_bob_felis",
    "local-simulator": "slurm_qpu.vendors.local_simulator",
}


@cache
def vendors() -> dict[str, Vendor]:
    """Every built-in vendor's record, by its current type name."""
    out = {}
    for type_name, module in BUILTIN.items():
        vendor: Vendor = import_module(module).VENDOR
        assert vendor.type_name == type_name, (module, vendor.type_name)
        out[type_name] = vendor
    return out


def record_of(type_name: str) -> Vendor | None:
    """The record of a vendor by its current type name: a built-in one's, else a site's
    (the entry points are read only then, so `sbatch` pays for them only for a site's QPU;
    a site record that cannot be loaded: None, it gets nothing)."""
    record = vendors().get(type_name)
    if record is None:
        from slurm_qpu.vendors.registry import site_vendor

        try:
            record = site_vendor(type_name)
        except Exception:  # a broken site plugin: its QPUs get nothing from their record
            record = None
    return record
