"""The hostile-client tier (marker ``hostile``): the broker and the emulator, attacked as a
cluster user would attack them. The user submits jobs, reads their own job's environment,
runs any code in their job and reaches the broker's port from any node; a client that is
not a job at all reaches it too. Each test plays one attack and asserts what the broker's
promise says: no secret reaches a job or a user, a job reaches only its own vendor objects,
and no client can make the broker slow, big or dead for the others.

Most tests run a broker in this process (tests/broker/harness.py: real HTTP server, real
journal, MUNGE faked); the ones about the process itself (memory, connections, a legitimate
acquisition during an attack) run ``slurm-qpu broker`` as its own process, the way the
systemd unit does, with real MUNGE.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))

from harness import StartBroker, broker_starter, running_emulator

if TYPE_CHECKING:
    from slurm_qpu_emulator import Emulator


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.hostile)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """The vendors behind the broker: one emulator per test module, jobs done in 0.2 s."""
    yield from running_emulator()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    yield from broker_starter(tmp_path)
