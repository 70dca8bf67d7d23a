"""Fixtures of the broker tier (helpers in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import StartBroker, broker_starter


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    yield from broker_starter(tmp_path)
