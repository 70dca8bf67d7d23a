"""IBM backends as the real service describes them, from the JSON snapshots that ship in
qiskit-ibm-runtime's fake provider (``fake_provider/backends/<name>/conf_|props_<name>.json``).
They are in the server's own format, so the real SDK accepts them unchanged; only the
backend name is replaced by the emulator's."""

from __future__ import annotations

import copy
import importlib
import json
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


class EmulatorDependencyMissing(RuntimeError):
    """The emulator's optional dependencies are not installed."""


HINT = ("install the emulator with its dependencies: apt install slurm-qpu-emulator, or "
        "pip install ./emulator in slurm-qpu's source tree")


@dataclass(frozen=True)
class Backend:
    name: str
    configuration: dict[str, Any]
    properties: dict[str, Any]

    @property
    def num_qubits(self) -> int:
        return int(self.configuration["n_qubits"])

    @property
    def processor_type(self) -> dict[str, Any]:
        value = self.configuration.get("processor_type") or {"family": "Eagle", "revision": 3}
        return dict(value)


@cache
def _snapshot(snapshot: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        root = resources.files("qiskit_ibm_runtime.fake_provider") / "backends" / snapshot
    except ModuleNotFoundError:
        raise EmulatorDependencyMissing(f"IBM backends need qiskit-ibm-runtime; {HINT}") from None
    try:
        conf = json.loads((root / f"conf_{snapshot}.json").read_text())
        props = json.loads((root / f"props_{snapshot}.json").read_text())
    except FileNotFoundError:
        raise EmulatorDependencyMissing(
            f"qiskit-ibm-runtime has no fake backend snapshot {snapshot!r}") from None
    return conf, props


def load_backend(name: str, snapshot: str) -> Backend:
    """The backend ``name`` described by the fake-provider snapshot ``snapshot``."""
    conf, props = _snapshot(snapshot)
    conf, props = copy.deepcopy(conf), copy.deepcopy(props)
    conf["backend_name"] = name
    conf.setdefault("online_date", "2024-01-01T00:00:00Z")  # the SDK parses it unconditionally
    props["backend_name"] = name
    return Backend(name, conf, props)


_qiskit_ready = threading.Event()
_qiskit_pin = threading.Lock()
_qiskit_pinned = False


def pin_qiskit() -> None:
    """Import qiskit in a thread that never exits (in the background; idempotent).

    qiskit 2.6's Rust extension crashes the process (SIGSEGV in QuantumCircuit.__getitem__)
    in threads started after the thread that first imported it has exited. Request handlers
    and job workers are short-lived threads, so the first import must not happen in one.
    """
    global _qiskit_pinned
    with _qiskit_pin:
        if _qiskit_pinned:
            return
        _qiskit_pinned = True
    threading.Thread(target=_import_and_park, daemon=True, name="qiskit-import").start()


def _import_and_park() -> None:
    try:
        for module in ("qiskit.primitives", "qiskit_ibm_runtime.fake_provider"):
            importlib.import_module(module)
    except ImportError:
        pass  # the code that needs them reports EmulatorDependencyMissing
    finally:
        _qiskit_ready.set()
    threading.Event().wait()  # park forever: this thread must outlive every qiskit user


def qiskit_ready(timeout: float = 300.0) -> None:
    """Wait until qiskit has been imported by the parked thread (see pin_qiskit)."""
    pin_qiskit()
    _qiskit_ready.wait(timeout)
