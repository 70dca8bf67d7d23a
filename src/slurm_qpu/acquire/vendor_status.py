"""Asking a QPU's vendor how it is: status, why not available, queue depth, qubits.

One place for what the broker's availability watcher, ``--qpu=any:`` selection (both
modes) and ``slurm-qpu status`` want to know, so they say the same thing about a QPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from importlib import import_module
from typing import Any

from slurm_qpu.acquire.pipeline import ResourceFactory, describe_error, resource_spec
from slurm_qpu.config import ResourceDef
from slurm_qpu.slurm.job import JobFacts


@dataclass
class QpuStatus:
    name: str
    type: str
    state: str = "unchecked"  # online | unavailable (vendor says so) | unknown (no answer)
    reason: str | None = None  # the vendor's words, or why it could not be asked
    queue_depth: int | None = None  # where the vendor tells it
    checked_at: float | None = None
    held: bool = False  # Slurm holds new jobs for it (reservation qpu_maint_<name>)
    num_qubits: int | None = None  # asked only for a selection, when not declared

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def qubits_in_target(type_name: str, text: str) -> int | None:
    """The qubit count in a QRMI target description of a type, as its vendor reads it
    (``Vendor.target_qubits``; a plain ``num_qubits`` otherwise)."""
    from slurm_qpu.vendors.common.target import plain_qubits
    from slurm_qpu.vendors.registry import vendor

    reader = vendor(type_name).target_qubits
    if reader is None:
        return plain_qubits(text)
    module, _, function = reader.partition(":")
    count: int | None = getattr(import_module(module), function)(text)
    return count


def probe(rdef: ResourceDef, factory: ResourceFactory, *, qubits: bool = False,
          clock: Any = time.time) -> QpuStatus:
    """Ask the vendor; never raises (an error is the status ``unknown`` with its reason).
    ``qubits``: also find the qubit count when the config does not declare it."""
    status = QpuStatus(rdef.name, rdef.current_type, checked_at=clock(),
                       num_qubits=rdef.slurm.num_qubits)
    try:
        resource = factory(resource_spec(rdef, JobFacts(0, "broker", ()), None))
        accessible = resource.is_accessible()
    except Exception as exc:  # the vendor's error, whatever its type: shown, not fatal
        status.state, status.reason = "unknown", describe_error(exc)
        return status
    status.state = "online" if accessible else "unavailable"
    reason = getattr(resource, "status_reason", None)
    status.reason = None if accessible else (reason or "the vendor reports it unavailable")
    depth = getattr(resource, "queue_depth", None)
    status.queue_depth = depth if isinstance(depth, int) else None
    if qubits and status.num_qubits is None:
        count = getattr(resource, "num_qubits", None)
        if isinstance(count, int):
            status.num_qubits = count
        else:
            try:
                status.num_qubits = qubits_in_target(rdef.current_type,
                                                     resource.target().value)
            except Exception:  # no count: the selection says so
                status.num_qubits = None
    return status
