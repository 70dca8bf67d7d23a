"""``--qpu=any:FILTER``: let the job's start pick a QPU by criteria.

An item of ``--qpu`` that starts with ``any:`` (or is a bare ``key=value`` constraint) is
a selection, not a name. Its filter follows QRMI's ``ResourceProvider`` filter strings:
terms joined by ``&``; a term without ``=`` is a name glob.

    any:ibm_*                       any configured QPU whose name matches ibm_*
    any:ibm_*&min_qubits=100        ... with at least 100 qubits
    min_qubits=100&is_simulator=false

Keys: ``name`` (glob), ``type`` (a QRMI type name), ``num_qubits`` (exactly),
``min_qubits`` (at least), ``is_simulator`` (true|false), ``status`` (online, the
default: only QPUs the vendor reports available; or any). At submit time the filter is
checked against the configuration (name, type and declared qubit counts), so a filter
nothing could ever match is refused before anything is queued. At job start the
matching QPUs are asked for their status, qubits and queue, and the least busy one is
taken (fewest jobs of this cluster holding it, then the shortest vendor queue, then
config order). The choice is in the job's ``QRMI_JOB_QPU_RESOURCES`` like any named QPU,
the request as written in ``SLURM_QPU_REQUEST``, and in the job's usage record.

Standard library only: this runs inside every ``sbatch --qpu``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slurm_qpu.request.names import RequestError, check_known
from slurm_qpu.vendors.builtin import record_of
from slurm_qpu.vendors.type_names import current_type

PREFIX = "any:"
KEYS = ("name", "type", "num_qubits", "min_qubits", "is_simulator", "status")
STATUSES = ("online", "any")


def is_selection(item: str) -> bool:
    """True for an ``any:`` item or a bare constraint (a QPU name never holds ``=``)."""
    return item.startswith(PREFIX) or "=" in item


def has_selection(raw: str | None) -> bool:
    """Whether a raw ``--qpu`` value holds a selection (cheap, before parsing)."""
    return any(is_selection(item.strip()) for item in (raw or "").split(","))


@dataclass(frozen=True)
class Selection:
    text: str  # as the user wrote it, for messages, the environment and usage records
    name: str = "*"
    type: str | None = None
    num_qubits: int | None = None
    min_qubits: int | None = None
    is_simulator: bool | None = None
    status: str = "online"

    def could_match(self, known: Known) -> bool:
        """Whether a QPU may match, from what is known without asking its vendor (an
        unknown qubit count or simulator flag may still match)."""
        return not self.mismatch(known.name, known.type, known.num_qubits,
                                 known.is_simulator, strict=False)

    def mismatch(self, name: str, type_name: str, num_qubits: int | None,
                 is_simulator: bool | None, *, strict: bool = True) -> str | None:
        """Why a QPU does not match, or None. ``strict``: an unknown count is a miss."""
        if not fnmatch.fnmatchcase(name, self.name):
            return f"name does not match {self.name}"
        if self.type is not None and type_name != self.type:
            return f"type {type_name}"
        if self.num_qubits is not None or self.min_qubits is not None:
            if num_qubits is None:
                return "qubit count unknown" if strict else None
            if self.num_qubits is not None and num_qubits != self.num_qubits:
                return f"{num_qubits} qubits"
            if self.min_qubits is not None and num_qubits < self.min_qubits:
                return f"{num_qubits} qubits"
        if self.is_simulator is not None and is_simulator is not None \
                and is_simulator != self.is_simulator:
            return "a simulator" if is_simulator else "not a simulator"
        return None


def _int(key: str, value: str, text: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise RequestError(f"{text}: {key} must be a whole number, not {value!r}")
    return number


def parse_selection(item: str) -> Selection:
    """One ``--qpu`` item that is a selection; RequestError says what is wrong with it."""
    text = item.strip()
    body = text.removeprefix(PREFIX)
    if not body:
        raise RequestError(f"{text}: say what to select, e.g. any:ibm_* or "
                           "any:min_qubits=100")
    values: dict[str, str] = {}
    for term in body.split("&"):
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            key, value = "name", key
        if key not in KEYS:
            raise RequestError(f"{text}: unknown filter key {key!r}; use "
                               f"{', '.join(KEYS)}")
        if not value:
            raise RequestError(f"{text}: {key} has no value")
        if key in values:
            raise RequestError(f"{text}: {key} given twice")
        values[key] = value
    simulator = values.get("is_simulator", "").lower()
    if simulator not in ("", "true", "false"):
        raise RequestError(f"{text}: is_simulator must be true or false, not {simulator!r}")
    status = values.get("status", "online").lower()
    if status not in STATUSES:
        raise RequestError(f"{text}: status must be {' or '.join(STATUSES)}, not {status!r}")
    return Selection(
        text=text, name=values.get("name", "*"), type=values.get("type"),
        num_qubits=_int("num_qubits", values["num_qubits"], text)
        if "num_qubits" in values else None,
        min_qubits=_int("min_qubits", values["min_qubits"], text)
        if "min_qubits" in values else None,
        is_simulator=None if not simulator else simulator == "true", status=status)


def simulator_by_type(type_name: str, name: str) -> bool:
    """Whether a QPU is a simulator when its config does not say, by its vendor's record
    (a site's too): the built-in simulator whatever its name, Pasqal's emulators (their
    device types, the QPU's name, start with EMU_)."""
    record = record_of(current_type(type_name))
    return record is not None and name.startswith(record.simulator_prefixes)


@dataclass(frozen=True)
class Known:
    """What the configuration (or the public catalogue) says about one QPU."""

    name: str
    type: str
    num_qubits: int | None = None
    is_simulator: bool | None = None

    @classmethod
    def declared(cls, name: str, type_name: str, num_qubits: int | None,
                 is_simulator: bool | None) -> Known:
        """From what a config declares: an undeclared simulator flag follows the type."""
        return cls(name, type_name, num_qubits, simulator_by_type(type_name, name)
                   if is_simulator is None else is_simulator)


def check_possible(selection: Selection, known: Iterable[Known]) -> list[str]:
    """The configured QPUs the selection could pick; RequestError when there is none."""
    listed = list(known)
    names = [k.name for k in listed if selection.could_match(k)]
    if not names:
        listing = ",".join(sorted(k.name for k in listed)) or "(none configured)"
        raise RequestError(f"no configured QPU matches {selection.text}; known: {listing}")
    return names


def split_request(items: Sequence[str]) -> tuple[list[str], list[Selection]]:
    """A parsed ``--qpu`` value's names and selections (each selection checked)."""
    names = [i for i in items if not is_selection(i)]
    return names, [parse_selection(i) for i in items if is_selection(i)]


def check_request(items: Sequence[str], known: Sequence[Known]) -> None:
    """Submit time: every name configured, every selection able to match something."""
    names, selections = split_request(items)
    check_known(names, [k.name for k in known])
    for selection in selections:
        check_possible(selection, known)


@dataclass(frozen=True)
class Placement:
    """slurmctld's record of the job (``squeue --json``) that the QPUs it acquires are
    checked against at its start: where it runs, for the per-QPU policy (the partition,
    account and QOS a QPU may be used from), and the Slurm licenses it holds (the
    ``qpu_<name>`` licenses job_submit.lua added for the QPUs it named).

    ``unknown`` says why there is no record (squeue failed): then no QPU with a
    partition/account/QOS policy is acquired, since the policy cannot be checked."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # the names of the licenses the job holds; None: not known (no "licenses" in the record)
    licenses: frozenset[str] | None = None
    unknown: str | None = None


# What a prolog or the broker uses when squeue could not tell where the job runs.
UNKNOWN_PLACEMENT = Placement(unknown="squeue failed")


@dataclass(frozen=True)
class Candidate:
    """A QPU at job start: what its vendor says now and how many of our jobs hold it."""

    name: str
    type: str
    state: str  # online | unavailable | unknown
    num_qubits: int | None = None
    is_simulator: bool | None = None
    queue_depth: int | None = None
    active_jobs: int = 0
    max_jobs: int | None = None  # the cluster's cap for the QPU; None: no cap known
    reason: str | None = None
    not_allowed: str | None = None  # the site's policy refuses this job the QPU: why

    def refusal(self, selection: Selection) -> str | None:
        why = selection.mismatch(self.name, self.type, self.num_qubits, self.is_simulator)
        if why:
            return why
        if self.not_allowed:
            return self.not_allowed
        if selection.status == "online" and self.state != "online":
            return self.state + (f" ({self.reason})" if self.reason else "")
        if self.max_jobs is not None and self.active_jobs >= self.max_jobs:
            return f"held by {self.active_jobs} job(s), its limit"
        return None


def choose(selection: Selection, candidates: Sequence[Candidate],
           taken: Iterable[str] = ()) -> Candidate:
    """The least busy candidate the selection accepts (not one of ``taken``); a
    RequestError that lists why each candidate was passed over, when none is."""
    skip = set(taken)
    fit = [(i, c) for i, c in enumerate(candidates)
           if c.name not in skip and c.refusal(selection) is None]
    if fit:
        return min(fit, key=lambda ic: (ic[1].active_jobs, ic[1].queue_depth or 0, ic[0]))[1]
    reasons = [f"{c.name}: {'already chosen' if c.name in skip else c.refusal(selection)}"
               for c in candidates]
    raise RequestError(f"no QPU matching {selection.text} is available now"
                       + (f" ({'; '.join(reasons)})" if reasons else ""))
