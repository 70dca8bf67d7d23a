"""sbatch/salloc/srun: check ``--qpu`` names at submit time (standard library only)."""

from __future__ import annotations

from slurm_qpu.catalog import CatalogError, read_catalog
from slurm_qpu.names import RequestError, check_known, parse_request
from slurm_qpu.settings import PluginSettings
from slurm_qpu.spank import host


def validate(settings: PluginSettings, value: str) -> int:
    try:
        names = parse_request(value)
        catalog = read_catalog(settings.config, settings.catalog)
        check_known(names, catalog.names)
    except (RequestError, CatalogError) as exc:
        host.log(0, f"--qpu: {exc}")
        return 1
    return 0
