"""slurm-qpu: quantum processors (QPUs) for Slurm jobs, ``sbatch --qpu=NAME``.

The public surface is small; everything else is private by module. Imports are lazy because
this package is loaded inside users' ``sbatch --qpu`` processes, where start-up time counts.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "QrmiConfig",
    "QuantumResource",
    "ResourceDef",
    "ResourceSpec",
    "__version__",
    "load_config",
]

_LAZY = {
    "ConfigError": "slurm_qpu.config",
    "QrmiConfig": "slurm_qpu.config",
    "ResourceDef": "slurm_qpu.config",
    "load_config": "slurm_qpu.config",
    "QuantumResource": "slurm_qpu.vendors.common.base",
    "ResourceSpec": "slurm_qpu.vendors.common.base",
}

# `typing` costs ~10 ms to import and every `sbatch --qpu` imports this package: a local
# TYPE_CHECKING (which mypy honours too) keeps it out at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from slurm_qpu.config import ConfigError, QrmiConfig, ResourceDef, load_config
    from slurm_qpu.vendors.common.base import QuantumResource, ResourceSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slurm_qpu' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
