"""What the in-job SDK glue of every vendor shares: its error, reading a setting of the job's
QPU, importing an optional SDK with a message that says how to install it."""

from __future__ import annotations

from typing import Any

from slurm_qpu.vendors.common.base import ResourceError, ResourceSpec


class ClientError(ResourceError):
    """The job's QPU cannot be reached the way the program asked; the message says why."""


def setting(spec: ResourceSpec, key: str) -> str:
    value = spec.environment.get(key)
    if not value:
        raise ClientError(f"QPU {spec.name}: {spec.name}_{key} is not set in this job's "
                          "environment")
    return value


def optional_import(module: str, extra: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise ClientError(f"{module} is not installed in this Python; install it with "
                          f"pip install 'slurm-qpu[{extra}]'") from None
