"""Fixtures of the broker tier (helpers in harness.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import StartBroker, broker_starter, running_emulator

if TYPE_CHECKING:
    from slurm_qpu_emulator import Emulator
    from slurm_qpu_lab.mariadb import MariaDBServer


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The vendors behind the broker: one emulator per test module, jobs done in 0.2 s."""
    yield from running_emulator()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    yield from broker_starter(tmp_path)


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A MariaDB server of the session's own (Debian's mariadbd, by PID, no TCP)."""
    from slurm_qpu_lab.mariadb import MariaDBServer

    server = MariaDBServer(Path(f"/tmp/slurm-qpu-test-mariadb-{os.getpid()}"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "mariadb"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a journal is: a SQLite file, or a new database on the session's MariaDB."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite")
    server: MariaDBServer = request.getfixturevalue("mariadb_server")
    return server.create_database(f"journal_{abs(hash(request.node.nodeid)) % 10**12}")


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """For tests that set up the broker's logging: give pytest's back afterwards."""
    import logging

    root, audit = logging.getLogger(), logging.getLogger("slurm_qpu.audit")
    saved = (root.handlers[:], root.level, audit.handlers[:], audit.propagate)
    yield
    root.handlers[:], root.level, audit.handlers[:], audit.propagate = saved
