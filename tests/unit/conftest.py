"""Shared fixtures of the unit tier: config files in tmp_path, the local simulator's ledger,
and isolation of the global ``slurm_qpu`` logger (the SPANK handlers reconfigure it)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "qrmi_config.example.json"

WriteJson = Callable[..., Path]
MakeSimConfig = Callable[..., Path]
ReadLedger = Callable[[], list[tuple[str, str, str]]]


@pytest.fixture(autouse=True)
def _isolate_slurm_qpu_logger() -> Iterator[None]:
    """route_to_slurm() sets propagate=False and adds a handler bound to ``_spank``; undo it so
    other tests (and caplog) see a pristine logger."""
    logger = logging.getLogger("slurm_qpu")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """A private copy of the repository's qrmi_config.example.json (sim_a, sim_b)."""
    target = tmp_path / "etc" / "qrmi_config.json"
    target.parent.mkdir(parents=True)
    shutil.copyfile(EXAMPLE_CONFIG, target)
    return target


@pytest.fixture
def write_json(tmp_path: Path) -> WriteJson:
    """write_json(data, name="qrmi_config.json") -> path of the written file in tmp_path/etc."""

    def _write(data: Any, name: str = "qrmi_config.json") -> Path:
        path = tmp_path / "etc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "vendor" / "ledger.jsonl"


@pytest.fixture
def sim_config(write_json: WriteJson, ledger: Path) -> MakeSimConfig:
    """sim_config(sim_a={...extra env...}, sim_b={...}) -> config path.

    Without arguments: local simulators sim_a (5 qubits) and sim_b (20 qubits), both writing
    to the shared ledger. Extra keys are added to the named resource's environment (keys
    without the QRMI_LOCAL_SIM_ prefix get it)."""

    def _make(**extra: dict[str, str]) -> Path:
        base = {"sim_a": {"NUM_QUBITS": "5"}, "sim_b": {"NUM_QUBITS": "20"}}
        for name, env in extra.items():
            base.setdefault(name, {}).update(env)
        resources = []
        for name, env in base.items():
            environment = {"QRMI_LOCAL_SIM_LEDGER": str(ledger)}
            for key, value in env.items():
                full = key if key.startswith("QRMI_") else "QRMI_LOCAL_SIM_" + key
                environment[full] = value
            resources.append({"name": name, "type": "local-simulator",
                              "environment": environment})
        return write_json({"resources": resources})

    return _make


@pytest.fixture
def read_ledger(ledger: Path) -> ReadLedger:
    """The simulated vendor's view: [(event, resource, token), ...] in order."""

    def _read() -> list[tuple[str, str, str]]:
        if not ledger.exists():
            return []
        rows = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
        return [(r["event"], r["resource"], r["token"]) for r in rows]

    return _read
