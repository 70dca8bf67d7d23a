"""Asking a QPU's vendor how it is: status, why not available, queue depth, qubits.

One place for what the broker's availability watcher, ``--qpu=any:`` selection (both
modes) and ``slurm-qpu status`` want to know, so they say the same thing about a QPU.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from slurm_qpu.config import QrmiConfig, ResourceDef
from slurm_qpu.jobfacts import JobFacts
from slurm_qpu.lifecycle import ResourceFactory, describe_error, resource_spec
from slurm_qpu.names import RequestError
from slurm_qpu.selection import (
    UNKNOWN_PLACEMENT,
    Candidate,
    Placement,
    choose,
    split_request,
)
from slurm_qpu.slurmcli import SlurmCommandError
from slurm_qpu.slurmconf import license_name

log = logging.getLogger(__name__)


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


def qubits_in_target(text: str) -> int | None:
    """The qubit count in a QRMI target description, for the shapes the types return:
    IBM (configuration.n_qubits), IQM (architecture qubit lists), Pasqal (Pulser specs'
    max_atom_num) and a plain num_qubits."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):  # Pasqal
        specs = data[0].get("specs")
        if isinstance(specs, str):
            try:
                specs = json.loads(specs)
            except ValueError:
                specs = None
        if isinstance(specs, dict) and isinstance(specs.get("max_atom_num"), int):
            return int(specs["max_atom_num"])
        return None
    if not isinstance(data, dict):
        return None
    for key in ("num_qubits", "n_qubits"):
        if isinstance(data.get(key), int):
            return int(data[key])
    configuration = data.get("configuration")
    if isinstance(configuration, dict) and isinstance(configuration.get("n_qubits"), int):
        return int(configuration["n_qubits"])
    for key in ("static_quantum_architecture", "dynamic_quantum_architecture"):
        arch = data.get(key)
        if isinstance(arch, dict) and isinstance(arch.get("qubits"), list):
            return len(arch["qubits"])
    return None


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
                status.num_qubits = qubits_in_target(resource.target().value)
            except Exception:  # no count: the selection says so
                status.num_qubits = None
    return status


def candidate(rdef: ResourceDef, status: QpuStatus, active_jobs: int = 0,
              capped: bool = False, placement: Placement = UNKNOWN_PLACEMENT) -> Candidate:
    """A selection candidate from a probe; ``capped``: the QPU's max_jobs applies;
    ``placement``: the job's partition, account and QOS, which its policy must allow
    (unknown: a QPU with a policy is passed over)."""
    return Candidate(rdef.name, rdef.current_type, status.state, status.num_qubits,
                     rdef.known().is_simulator, status.queue_depth, active_jobs,
                     rdef.slurm.max_jobs if capped else None, status.reason,
                     rdef.slurm.refusal(placement))


def check_named(names: Sequence[str], config: QrmiConfig, placement: Placement,
                licensed: Callable[[], set[str]] | None = None) -> None:
    """The acquiring side's check of the QPUs a request names (RequestError: which may
    not be acquired, and why).

    job_submit.lua checked, in slurmctld, the --qpu value it found in the job's
    ``spank_job_env``; the prolog reads the value from the environment slurmd builds from
    the same list. A client that talks to libslurm directly can put two values there
    and have slurmctld check one while the prolog acquires the other; the current
    job_submit.lua refuses such a job, but one generated by an earlier release does not.
    So the acquiring side does not trust that the value it read is the one slurmctld
    checked: it checks what it is about to acquire against slurmctld's own record of the
    job (``placement``, from ``squeue --json``), which the user cannot write:

    * the QPU's partition/account/QOS policy must allow where the job runs (a QPU with a
      policy is refused when squeue could not tell);
    * the job must hold the QPU's license ``qpu_<name>``, which job_submit.lua adds to
      every job that names the QPU, whenever slurmctld has that license (``licensed``:
      the names of slurmctld's licenses, asked only when the job lacks one; a site that
      counts QPUs with GRES has no such license, and nothing to compare). A license the
      user added by hand still counts the job against the QPU's cap, so it does no harm.

    Together: whichever value was read, a QPU is acquired only if its policy allows the
    job and the job counts against its cap, as job_submit.lua would have made sure."""
    refused: list[str] = []
    configured: set[str] | None = None
    for name in names:
        rdef = config.get(name)
        if rdef is None:  # not configured: the request check refuses it
            continue
        why = rdef.slurm.refusal(placement)
        if why is not None:
            refused.append(f"QPU {name}: {why}")
            continue
        lic = license_name(name)
        if licensed is None or placement.licenses is None or lic in placement.licenses:
            continue
        if configured is None:
            try:
                configured = set(licensed())
            except SlurmCommandError as exc:
                refused.append(f"QPU {name}: the job does not hold its license {lic} and "
                               f"slurmctld's licenses cannot be read: {exc}")
                continue
        if lic in configured:
            refused.append(
                f"QPU {name}: the job does not hold its license {lic}, which job_submit.lua "
                "adds to every job that names the QPU: the --qpu value read at the job's "
                "start is not the one slurmctld checked (more than one --qpu value in the "
                "job's SPANK environment?)")
    if refused:
        raise RequestError("; ".join(refused))


def resolve_request(items: Sequence[str], config: QrmiConfig, factory: ResourceFactory,
                    active_jobs: Callable[[], Mapping[str, int]] | None = None,
                    placement: Placement | None = None,
                    licensed: Callable[[], set[str]] | None = None,
                    ) -> tuple[list[str], dict[str, str]]:
    """The QPU names for a ``--qpu`` value's items, in the user's order: a name stays, a
    selection becomes the least busy QPU that matches now (asked of its vendor). Returns
    the names and, for each picked QPU, the selection that picked it. ``active_jobs``
    (the broker's count of leases per QPU, asked only when there is a selection) also
    ranks the candidates and keeps each QPU's max_jobs. ``placement``: slurmctld's record
    of the job (where it runs, its licenses); None means unknown (squeue failed), never
    "no policy to check": a QPU whose partition/account/QOS policy refuses the job, or
    cannot be checked, is neither picked nor acquired by name, and a named QPU must pass
    ``check_named`` (``licensed``: slurmctld's license names). RequestError when a named
    QPU is refused or a selection finds no QPU available."""
    where = placement if placement is not None else UNKNOWN_PLACEMENT
    names, selections = split_request(items)
    check_named(names, config, where, licensed)
    if not selections:
        return list(items), {}
    parsed = {s.text: s for s in selections}  # parse_request stripped every item
    active = active_jobs() if active_jobs is not None else {}
    taken = set(names)
    out: list[str] = []
    selected: dict[str, str] = {}
    for item in items:
        if item not in parsed:
            out.append(item)
            continue
        selection = parsed[item]
        wants_qubits = selection.num_qubits is not None or selection.min_qubits is not None
        candidates = [
            candidate(rdef, probe(rdef, factory, qubits=wants_qubits),
                      active.get(rdef.name, 0), active_jobs is not None, where)
            for rdef in config.resources
            if rdef.name not in taken and selection.could_match(rdef.known())]
        chosen = choose(selection, candidates, taken)
        log.info("%s: picked %s (%s)", selection.text, chosen.name, _why(chosen))
        taken.add(chosen.name)
        out.append(chosen.name)
        selected[chosen.name] = selection.text
    return out, selected


def _why(chosen: Candidate) -> str:
    parts = [f"{chosen.active_jobs} job(s) of this cluster on it"]
    if chosen.queue_depth is not None:
        parts.append(f"vendor queue {chosen.queue_depth}")
    if chosen.num_qubits is not None:
        parts.append(f"{chosen.num_qubits} qubits")
    return ", ".join(parts)
