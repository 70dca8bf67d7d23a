"""The one place that talks to the shim's ``_spank`` module.

Handlers get Slurm facts from here as plain values; nothing below ``slurm_qpu.spank``
imports ``_spank``. Tests replace the module with a fake (``sys.modules['_spank']``).
"""

from __future__ import annotations

import os
from types import ModuleType

from slurm_qpu.shim_contract import PROLOG_OPTION_ENV as OPTION_ENV


def spank() -> ModuleType:
    import _spank  # provided by the C shim (PyImport_AppendInittab)

    module: ModuleType = _spank
    return module


def context() -> str:
    return str(spank().context())


def log(level: int, message: str) -> None:
    spank().log(level, message)


def job_env(name: str) -> str | None:
    """A variable of the job's environment, falling back to this process's environment
    (prolog/epilog have no job environment, only their own)."""
    value = spank().getenv(name)
    return value if value is not None else os.environ.get(name)


def item(name: str) -> int | None:
    value = spank().item(name)
    return int(value) if value is not None else None


def qpu_option() -> str | None:
    """The job's --qpu value in prolog/epilog: spank_option_getopt, else the environment
    Slurm builds for them (getopt is reported to fail there on some releases)."""
    value = spank().getopt()
    return value if value is not None else os.environ.get(OPTION_ENV)


def option_value() -> str | None:
    """The --qpu value this process's option callback saw (None: the step has no --qpu)."""
    value = spank().option_value()
    return str(value) if value is not None else None


def setenv(name: str, value: str, overwrite: bool = True) -> int:
    return int(spank().setenv(name, value, overwrite))


def job_control_setenv(name: str, value: str) -> int:
    """Pass a variable from sbatch/salloc to the job's prolog (which sees SPANK_<name>)."""
    return int(spank().job_control_setenv(name, value, True))
