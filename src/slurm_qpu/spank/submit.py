"""sbatch/salloc/srun: check ``--qpu`` names at submit time (standard library only)."""

from __future__ import annotations

from slurm_qpu.request.catalog import CatalogError, read_catalog
from slurm_qpu.request.names import RequestError, parse_request
from slurm_qpu.request.selection import check_request
from slurm_qpu.settings import PluginSettings
from slurm_qpu.spank import host


def validate(settings: PluginSettings, value: str) -> int:
    try:
        names = parse_request(value)
        catalog = read_catalog(settings.config, settings.catalog)
        check_request(names, catalog.known)
    except (RequestError, CatalogError) as exc:
        host.log(0, f"--qpu: {exc}")
        return 1
    return 0


def pass_overrides(settings: PluginSettings) -> int:
    """sbatch/salloc (and an srun that makes its own allocation): hand the allow-listed
    ``<qpu>_<KEY>`` settings of the user's environment to the prolog, and say which other
    such variables will not be used. Never fails the submission."""
    import os

    from slurm_qpu.request import overrides

    if host.context() == "local" and os.environ.get("SLURM_JOB_ID"):
        return 0  # an srun inside an allocation: the QPUs are acquired already
    value = host.option_value()
    try:
        names = parse_request(value)
        catalog = read_catalog(settings.config, settings.catalog)
    except (RequestError, CatalogError):
        return 0  # the option callback has said what is wrong
    qpus = {n: catalog.types[n] for n in names if n in catalog.types}
    result = overrides.sort_environment(qpus, os.environ)
    for message in result.refused:
        host.log(1, f"warning: --qpu: {message}")
    if result.accepted and host.job_control_setenv(overrides.CONTROL_NAME,
                                                   result.encode()) != 0:
        host.log(0, "--qpu: cannot pass your QPU settings to the job; the site's apply")
    return 0
