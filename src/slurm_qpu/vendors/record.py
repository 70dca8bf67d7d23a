"""What slurm-qpu knows of a QPU type, in one light record per vendor.

Each vendor folder (``slurm_qpu/vendors/<vendor>/``) holds everything that knows its vendor:
its resource type, its broker view, its storage rules, its SDK glue. Its ``__init__.py``
describes it with a ``Vendor`` record, which names the heavy parts by import string (loaded
only when used) and carries the small facts other layers need at submit time: its type
names (legacy ones too), its settings' prefix, what a user may override, the payload kind
``slurm-qpu run`` reads for it, which of its QPU names are simulators.

A site's vendor registers the same record through the entry point group ``slurm_qpu.vendors``
and gets the same powers, a proxy view included (``slurm_qpu.vendors.registry``).
Standard library only: the record is read in users' ``sbatch --qpu``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowed:
    """A setting a user may override from the submitting environment."""

    key: str  # without the resource-name prefix
    check: Callable[[str], str | None]  # None when the value is acceptable, else why not
    meaning: str


def choice(*allowed: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in allowed else f"expected one of {', '.join(allowed)}"
    return check


def seconds(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        # plain ASCII digits: int() also takes " 60", "+60", "1_000" and other scripts'
        # digits, which the value is passed on as and QRMI cannot parse
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            return f"expected whole seconds between {low} and {high}"
        return None
    return check


@dataclass(frozen=True)
class Legacy:
    """An older name of a type, still accepted (QRMI renamed types and their prefixes)."""

    name: str
    env_prefix: str  # the settings' prefix under that name


@dataclass(frozen=True)
class Vendor:
    type_name: str  # as written in qrmi_config.json
    resource: str  # "module:attribute" of its ResourceType, imported when a QPU is used
    env_prefix: str = ""  # its settings' prefix, e.g. QRMI_IBM_QCS_
    legacy: tuple[Legacy, ...] = ()
    overrides: tuple[Allowed, ...] = ()  # what a user may override, and nothing else
    payload: str | None = None  # the payload kind `slurm-qpu run` reads (payloads.KINDS)
    # "module:attribute" of its broker View; None: a job does not reach it through the
    # broker (a local simulator; a type whose jobs talk to it without credentials)
    view: str | None = None
    simulator_prefixes: tuple[str, ...] = ()  # QPU names that are simulators (EMU_...)
    # "module:function" reading the qubit count from its target() text (the JSON its
    # resource's target returns); None: a plain {"num_qubits": N} or nothing
    target_qubits: str | None = None
