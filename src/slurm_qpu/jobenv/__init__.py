"""The job side of the environment contract: which QPUs a task of a ``--qpu`` job has.

Reads what ``contract.py`` here (or spank_qrmi) exported into every task, by the names
in ``variables.py``:
``QRMI_JOB_QPU_RESOURCES`` / ``QRMI_JOB_QPU_TYPES`` (falling back to the legacy
``SLURM_JOB_QPU_*`` pair), split by ``QRMI_LIST_DELIMITER`` (default ","), ``QRMI_JOB_ID``,
``QRMI_JOB_UID``, and for each resource N every ``N_<KEY>``, which becomes the unprefixed
setting ``<KEY>`` of that resource (so ``N_QRMI_JOB_ACQUISITION_TOKEN`` is the setting
``QRMI_JOB_ACQUISITION_TOKEN``). Legacy type names and their legacy keys are mapped to the
current ones, as QRMI does.

Standard library + slurm_qpu only: jobs import this without any vendor SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from slurm_qpu.jobenv.variables import (
    DELIMITER,
    JOB_ID,
    JOB_UID,
    LEGACY_RESOURCES,
    LEGACY_TYPES,
    RESOURCES,
    TIMEOUT_KEY,
    TOKEN_KEY,
    TYPES,
)
from slurm_qpu.vendors.common.base import JobContext, ResourceError, ResourceSpec
from slurm_qpu.vendors.type_names import current_environment, current_type

__all__ = ["DELIMITER", "LEGACY_RESOURCES", "LEGACY_TYPES", "RESOURCES", "TIMEOUT_KEY",
           "TOKEN_KEY", "TYPES", "JobEnvError", "job_resource", "job_resources"]



class JobEnvError(ResourceError):
    """The task's environment does not describe the QPU asked for; the message says why."""


def _split(environ: Mapping[str, str], var: str) -> list[str]:
    value = environ[var]
    if not value.strip():
        return []  # as qrmi: an empty list is "no QPUs", not an error
    items = [item.strip() for item in value.split(environ.get(DELIMITER) or ",")]
    if not all(items):
        raise JobEnvError(f"{var}={value!r} has an empty entry")
    return items


def _int(environ: Mapping[str, str], var: str) -> int | None:
    value = environ.get(var, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise JobEnvError(f"{var}={value!r} is not an integer") from None


def _names_and_types(environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    # Take the pair together: mixing the current names with legacy types could pair a name
    # with another QPU's type.
    if RESOURCES in environ:
        names_var, types_var = RESOURCES, TYPES
    elif LEGACY_RESOURCES in environ:
        names_var, types_var = LEGACY_RESOURCES, LEGACY_TYPES
    else:
        raise JobEnvError(f"not inside a QPU job: {RESOURCES} is not set; submit the job "
                          "with sbatch --qpu=NAME (names: slurm-qpu list)")
    if types_var not in environ:
        raise JobEnvError(f"{names_var} is set but {types_var} is not; the job's QPU "
                          "environment is incomplete")
    names, types = _split(environ, names_var), _split(environ, types_var)
    if len(names) != len(types):
        raise JobEnvError(
            f"{names_var} lists {len(names)} QPU(s) ({','.join(names)}) but {types_var} lists "
            f"{len(types)} type(s) ({','.join(types)}); the job's QPU environment is "
            "inconsistent")
    return names, types


def _settings(name: str, others: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Every ``name_<KEY>`` as ``KEY``, leaving out the variables of another of the job's
    QPUs whose name extends this one (``sim_a_X`` belongs to ``sim_a``, not to ``sim``)."""
    prefix = name + "_"
    longer = [o + "_" for o in others if o != name and o.startswith(prefix)]
    return {key[len(prefix):]: value for key, value in environ.items()
            if key.startswith(prefix) and len(key) > len(prefix)
            and not any(key.startswith(p) for p in longer)}


def job_resources(environ: Mapping[str, str] | None = None) -> list[ResourceSpec]:
    """The job's QPUs in the order requested, each with its current type, its settings
    (unprefixed, legacy keys also under current names) and the job's context."""
    env = os.environ if environ is None else environ
    names, types = _names_and_types(env)
    job_id, uid = _int(env, JOB_ID), _int(env, JOB_UID)
    user = env.get("SLURM_JOB_USER") or None
    specs = []
    for name, raw_type in zip(names, types, strict=True):
        settings = current_environment(raw_type, _settings(name, names, env))
        timeout = _int(env, f"{name}_{TIMEOUT_KEY}")
        specs.append(ResourceSpec(name, current_type(raw_type), settings,
                                  JobContext(job_id, uid, user, timeout)))
    return specs


def job_resource(name: str, environ: Mapping[str, str] | None = None) -> ResourceSpec:
    """The job's QPU called ``name``; JobEnvError listing the job's QPUs if it has none."""
    specs = job_resources(environ)
    for spec in specs:
        if spec.name == name:
            return spec
    have = ", ".join(s.name for s in specs) or "none"
    raise JobEnvError(f"QPU {name!r} is not one of this job's QPUs ({have}); use one of "
                      f"them or submit with sbatch --qpu={name}")
