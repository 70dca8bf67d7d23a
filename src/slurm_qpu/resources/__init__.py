"""Resource types: the protocol (QRMI's trait), the registry and the built-in types.

The registry (entry points, every built-in type) loads on first use of ``get_type`` or
``known_type_names`` (PEP 562): ``slurm_qpu.resources.base`` is imported by light
modules (MUNGE, the broker-mode prolog) that must not pay for it."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from slurm_qpu.resources.base import (
    AcquireError,
    JobContext,
    MissingSetting,
    NotAccessible,
    Payload,
    QiskitPrimitive,
    QuantumResource,
    ReleaseError,
    ResourceError,
    ResourceSpec,
    ResourceType,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    TypeNotAvailable,
    UnsupportedPayload,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from slurm_qpu.resources.registry import get_type, known_type_names

__all__ = [
    "AcquireError",
    "JobContext",
    "MissingSetting",
    "NotAccessible",
    "Payload",
    "QiskitPrimitive",
    "QuantumResource",
    "ReleaseError",
    "ResourceError",
    "ResourceSpec",
    "ResourceType",
    "Target",
    "TaskNotReady",
    "TaskResult",
    "TaskStatus",
    "TypeNotAvailable",
    "UnsupportedPayload",
    "get_type",
    "known_type_names",
]


def __getattr__(name: str) -> Any:
    if name not in ("get_type", "known_type_names"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module("slurm_qpu.resources.registry"), name)
    globals()[name] = value
    return value
