"""Resource type names: the current QRMI names, the legacy ones, and how legacy maps to current,
as the built-in vendors' records declare them.

Standard library only (used at submit time).
"""

from __future__ import annotations

from dataclasses import dataclass

from slurm_qpu.vendors.builtin import vendors

# The network-free type built into slurm-qpu, for tests, the demo and site smoke tests.
LOCAL_SIMULATOR = "local-simulator"


@dataclass(frozen=True)
class LegacyType:
    legacy: str
    current: str
    legacy_prefix: str  # environment key prefix the legacy type reads
    current_prefix: str  # the same keys under the current type


# every built-in vendor's names, from its record (slurm_qpu/vendors/<vendor>/__init__.py)
CURRENT_TYPES = tuple(vendors())
LEGACY_TYPES = {
    old.name: LegacyType(old.name, v.type_name, old.env_prefix, v.env_prefix)
    for v in vendors().values() for old in v.legacy
}


def current_type(name: str) -> str:
    """The current name of a type (legacy names map to their successor)."""
    legacy = LEGACY_TYPES.get(name)
    return legacy.current if legacy else name


def current_environment(type_name: str, environment: dict[str, str]) -> dict[str, str]:
    """A resource's environment with legacy keys also given under their current names,
    so code written for either generation of QRMI finds its variables. Keys already
    present under the current name win."""
    legacy = LEGACY_TYPES.get(type_name)
    if legacy is None:
        return dict(environment)
    out = dict(environment)
    for key, value in environment.items():
        if key.startswith(legacy.legacy_prefix):
            out.setdefault(legacy.current_prefix + key[len(legacy.legacy_prefix):], value)
    return out
