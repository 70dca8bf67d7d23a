"""Fixtures for the emulator tier: vendor services served on 127.0.0.1 in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Server, Service

Serve = Callable[..., Server]


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def fast_config() -> EmulatorConfig:
    """Jobs finish almost at once, so SDK polling loops end quickly."""
    return EmulatorConfig(job_seconds=0.2)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """serve(*services) -> a started Server (base URL: server.url), stopped after the test."""
    servers: list[Server] = []

    def start(*services: Service) -> Server:
        server = Server(services)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
