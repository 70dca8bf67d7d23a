"""The vendors: one folder each (``slurm_qpu/vendors/<vendor>/``), and the API a site's own
vendor is written against: the resource protocol (QRMI's trait in Python), its value types
and errors, the ``Vendor`` record that registers it, the broker ``View`` it may offer.

The registry (entry points, every vendor's implementation) loads on first use of
``get_type``, ``known_type_names`` or ``View`` (PEP 562): this package is imported by light
modules (the job environment reader, the broker-mode prolog) that must not pay for it."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from slurm_qpu.vendors.common.base import (
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
    require,
)
from slurm_qpu.vendors.record import Allowed, Legacy, Vendor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from slurm_qpu.vendors.common.http import RetryPolicy, VendorClient, VendorError, VendorType
    from slurm_qpu.vendors.common.view import (
        FORWARD,
        Call,
        Decision,
        JobSide,
        TokenSwapView,
        Upstream,
        View,
        deny,
        json_body,
        listed,
        remember_created,
    )
    from slurm_qpu.vendors.registry import get_type, known_type_names

_LAZY = {
    "get_type": "slurm_qpu.vendors.registry",
    "known_type_names": "slurm_qpu.vendors.registry",
    "Call": "slurm_qpu.vendors.common.view",
    "Decision": "slurm_qpu.vendors.common.view",
    "JobSide": "slurm_qpu.vendors.common.view",
    "Upstream": "slurm_qpu.vendors.common.view",
    "View": "slurm_qpu.vendors.common.view",
    "TokenSwapView": "slurm_qpu.vendors.common.view",
    "FORWARD": "slurm_qpu.vendors.common.view",
    "deny": "slurm_qpu.vendors.common.view",
    "json_body": "slurm_qpu.vendors.common.view",
    "listed": "slurm_qpu.vendors.common.view",
    "remember_created": "slurm_qpu.vendors.common.view",
    # HTTP to a vendor, with deadlines, retries and the vendor's error text (httpx: heavy)
    "VendorClient": "slurm_qpu.vendors.common.http",
    "VendorError": "slurm_qpu.vendors.common.http",
    "VendorType": "slurm_qpu.vendors.common.http",
    "RetryPolicy": "slurm_qpu.vendors.common.http",
}

__all__ = [
    "FORWARD",
    "AcquireError",
    "Allowed",
    "Call",
    "Decision",
    "JobContext",
    "JobSide",
    "Legacy",
    "MissingSetting",
    "NotAccessible",
    "Payload",
    "QiskitPrimitive",
    "QuantumResource",
    "ReleaseError",
    "ResourceError",
    "ResourceSpec",
    "ResourceType",
    "RetryPolicy",
    "Target",
    "TaskNotReady",
    "TaskResult",
    "TaskStatus",
    "TokenSwapView",
    "TypeNotAvailable",
    "UnsupportedPayload",
    "Upstream",
    "Vendor",
    "VendorClient",
    "VendorError",
    "VendorType",
    "View",
    "deny",
    "get_type",
    "json_body",
    "known_type_names",
    "listed",
    "remember_created",
    "require",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
