"""Reading a qubit count from a target description (what a resource's ``target()`` returns):
the JSON helper the vendors' readers share, the reader for vendors with no shape of their
own (a plain ``num_qubits``), and Pulser's device specs, which both Pasqal vendors return.
Each vendor's reader is named by its record (``Vendor.target_qubits``)."""

from __future__ import annotations

import json
from typing import Any


def loads(text: str) -> Any:
    """The target's JSON, or None when it is none."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def plain_qubits(text: str) -> int | None:
    """``{"num_qubits": N}`` (the local simulator, and a site's vendor that says it so)."""
    data = loads(text)
    if isinstance(data, dict):
        for key in ("num_qubits", "n_qubits"):
            if isinstance(data.get(key), int) and not isinstance(data[key], bool):
                return int(data[key])
    return None


def pulser_qubits(text: str) -> int | None:
    """The Pulser device specs' ``max_atom_num`` (pasqal-cloud, pasqal-local)."""
    data = loads(text)
    if not (isinstance(data, list) and data and isinstance(data[0], dict)):
        return None
    specs = data[0].get("specs")
    if isinstance(specs, str):
        specs = loads(specs)
    if isinstance(specs, dict) and isinstance(specs.get("max_atom_num"), int):
        return int(specs["max_atom_num"])
    return None
