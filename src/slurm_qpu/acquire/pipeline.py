"""The acquisition pipeline, mode-neutral: what the direct-mode prolog (on the job's first
node) and the broker (for every job) both do with a ``--qpu`` value, in the same order with
the same errors:

1. ``requested``: parse the value and check every item against the configuration (names
   known, selections that some QPU could match);
2. ``plan``: resolve it against slurmctld's record of the job (each named QPU's policy and
   license; each selection to the least busy matching QPU) and sort the user's overrides
   into accepted and refused;
3. ``acquire_all``: acquire every QPU of the plan or none;
4. and at the job's end ``release_with_retries`` for each.

What differs between the modes stays with them: where the lease is kept (a node's lease
files, the broker's journal), how the job's other nodes learn it, what the job's
environment holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from slurm_qpu.acquire.resolve import resolve_request
from slurm_qpu.config import QrmiConfig, ResourceDef
from slurm_qpu.jobenv.contract import Acquired
from slurm_qpu.request.names import parse_request
from slurm_qpu.request.overrides import apply as apply_overrides
from slurm_qpu.request.overrides import decode as decode_overrides
from slurm_qpu.request.selection import Placement, check_request
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.vendors import registry
from slurm_qpu.vendors.common.base import (
    JobContext,
    NotAccessible,
    QuantumResource,
    ResourceError,
    ResourceSpec,
)

log = logging.getLogger(__name__)
ResourceFactory = Callable[[ResourceSpec], QuantumResource]


def default_factory(spec: ResourceSpec) -> QuantumResource:
    return registry.get_type(spec.type).create(spec)


class AcquisitionFailed(Exception):
    """Acquiring ``qpu`` failed (the vendor's error is the ``__cause__``)."""

    def __init__(self, message: str, qpu: str | None = None, qpu_type: str | None = None):
        super().__init__(message)
        self.qpu = qpu
        self.qpu_type = qpu_type


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ResourceError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resource_spec(resource: ResourceDef, job: JobFacts, timeout: int | None,
                  overrides: Mapping[str, str] | None = None) -> ResourceSpec:
    environment = resource.effective_environment()
    if overrides:
        environment = apply_overrides(environment, resource.type, overrides)
    return ResourceSpec(resource.name, resource.current_type, environment,
                        JobContext(job.job_id, job.uid, job.user, timeout))


def acquire_all(
    defs: list[ResourceDef], job: JobFacts, timeout: int | None, factory: ResourceFactory,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    on_acquired: Callable[[Acquired], None] | None = None,
) -> list[Acquired]:
    """Acquire every QPU or none: on a failure, release what was already acquired.
    ``overrides`` are the user's allow-listed settings per QPU; ``on_acquired`` hears of
    each QPU as soon as it is held (the broker journals it there)."""
    done: list[tuple[QuantumResource, Acquired]] = []
    for rdef in defs:
        if rdef.is_legacy_type:
            log.info("QPU %s: type %r is deprecated; using %r", rdef.name, rdef.type,
                     rdef.current_type)
        try:
            resource = factory(resource_spec(rdef, job, timeout, (overrides or {}).get(rdef.name)))
            if not resource.is_accessible():
                # a type may know why (the vendor's status message): say it
                reason = getattr(resource, "status_reason", None)
                raise NotAccessible("not accessible now (offline or in maintenance)"
                                    + (f": {reason}" if reason else ""))
            token = resource.acquire()
        except Exception as exc:
            for prev, acq in reversed(done):
                try:
                    prev.release(acq.token)
                except Exception as rexc:
                    log.error("job %s: rollback release of %s failed: %s", job.job_id,
                              acq.resource.name, describe_error(rexc))
            raise AcquisitionFailed(f"cannot acquire QPU {rdef.name}: {describe_error(exc)}",
                                    rdef.name, rdef.current_type) from exc
        log.debug("job %s: acquired %s", job.job_id, rdef.name)
        done.append((resource, Acquired(rdef, token)))
        if on_acquired is not None:
            on_acquired(done[-1][1])
    return [acq for _, acq in done]




def requested(raw: str | None, config: QrmiConfig) -> list[str]:
    """A ``--qpu`` value's items (names and ``any:`` selections), each checked against the
    configuration (RequestError says what is wrong)."""
    items = parse_request(raw)
    check_request(items, [r.known() for r in config.resources])
    return items


@dataclass
class Plan:
    """What a job will acquire: its QPUs in the user's order, the selection that picked
    each picked one, the user's accepted overrides per QPU and why others were refused."""

    names: list[str]
    defs: list[ResourceDef]
    selected: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def plan(items: Sequence[str], config: QrmiConfig, factory: ResourceFactory, *,
         placement: Placement | None, licensed: Callable[[], set[str]] | None,
         overrides: str | None = None,
         active_jobs: Callable[[], Mapping[str, int]] | None = None) -> Plan:
    """Resolve checked items against slurmctld's record of the job (``placement``; None:
    unknown, so QPUs with a policy are refused) and the vendors' state (selections), and
    sort the user's overrides (``acquire.resolve``; RequestError when a QPU is refused or a
    selection finds none)."""
    names, selected = resolve_request(items, config, factory, active_jobs, placement,
                                      licensed)
    defs = [d for n in names if (d := config.get(n)) is not None]
    checked = decode_overrides(overrides, {d.name: d.type for d in defs})
    return Plan(names, defs, selected, checked.accepted, checked.refused)


def release_with_retries(config: QrmiConfig | None, name: str, type_name: str, token: str,
                         job: JobFacts, factory: ResourceFactory, retries: int,
                         backoff: float) -> Exception | None:
    """Release one QPU (with its config settings, else just the type recorded at acquire),
    trying ``retries`` times; None when released, else the last attempt's error."""
    rdef = (config.get(name) if config else None) or ResourceDef(name=name, type=type_name)
    for attempt in range(1, retries + 1):
        try:
            factory(resource_spec(rdef, job, None)).release(token)
            return None
        except Exception as exc:
            if attempt == retries:
                return exc
            time.sleep(backoff * attempt)
    return None
