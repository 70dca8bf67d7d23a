"""Resource types: the protocol (QRMI's trait), the registry and the built-in types."""

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
