"""Fixtures of the broker tier (helpers in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import StartBroker, broker_starter, running_emulator

if TYPE_CHECKING:
    from slurm_qpu_emulator import Emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The vendors behind the broker: one emulator per test module, jobs done in 0.2 s."""
    yield from running_emulator()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    yield from broker_starter(tmp_path)


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """For tests that set up the broker's logging: give pytest's back afterwards."""
    import logging

    root, audit = logging.getLogger(), logging.getLogger("slurm_qpu.audit")
    saved = (root.handlers[:], root.level, audit.handlers[:], audit.propagate)
    yield
    root.handlers[:], root.level, audit.handlers[:], audit.propagate = saved
