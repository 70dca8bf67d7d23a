"""QPU names: what a valid name is, and how a ``--qpu`` value becomes a list of names.

Standard library only: this runs inside every user's ``sbatch --qpu`` and must stay cheap.
"""

from __future__ import annotations

import re

# A resource name prefixes environment variables (``<name>_QRMI_...``), so it must be a
# valid shell identifier on its own.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RequestError(ValueError):
    """A ``--qpu`` value that cannot be accepted; the message is shown to the user."""


def is_valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def parse_request(value: str | None) -> list[str]:
    """Split a ``--qpu`` value into names: trimmed, empty items dropped, duplicates removed
    (first occurrence wins, so the user's order is kept)."""
    names: list[str] = []
    for item in (value or "").split(","):
        name = item.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise RequestError("no QPU name given; use --qpu=NAME[,NAME...] (names: slurm-qpu list)")
    return names


def check_known(names: list[str], known: list[str]) -> None:
    """Raise RequestError naming every unknown name and listing the known ones."""
    unknown = [n for n in names if n not in known]
    if unknown:
        listing = ",".join(sorted(known)) if known else "(none configured)"
        raise RequestError(f"unknown QPU name(s) {','.join(unknown)}; known: {listing}")
