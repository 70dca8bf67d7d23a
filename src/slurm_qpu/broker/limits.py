"""The broker's limits: what one job, or any client reaching its port, may cost it. A
module of its own, with nothing but the numbers, so that ``slurm-qpu broker --help`` shows
the defaults without importing the server. Why each bound is there: broker/admission.py
(requests) and broker/httpserver.py (connections, time, framing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ConnectionLimits:
    """What one client may cost the broker's HTTP server (broker/httpserver.py)."""

    connections: int = 2048  # open at once (the unit's LimitNOFILE is 65536)
    per_client: int = 256  # open at once from one address (a busy compute node's jobs)
    header_seconds: float = 10.0
    idle_seconds: float = 30.0
    body_seconds: float = 300.0  # a 64 MiB upload at ~250 KB/s
    header_bytes: int = 64 * 1024
    # load balancers in front (HAProxy, docs/operations.md): their connections are not
    # capped per address, and a request through one is the client's that X-Forwarded-For
    # names last (what the load balancer appended), for every per-address bound
    trusted_proxies: frozenset[str] = frozenset()


@dataclass
class Limits(ConnectionLimits):
    """What a job, or any client, may cost the broker (ConnectionLimits: the HTTP server's
    share). The defaults are the broker command's."""

    max_body: int = 64 * 1024 * 1024  # bytes a job may send or receive in one request
    max_parsed: int = 8 * 1024 * 1024  # bytes of a request body a view reads (job creation)
    buffered: int = 256 * 1024 * 1024  # bytes held in memory for all requests at once
    buffered_share: int = 64 * 1024 * 1024  # of which one job, or one address, may hold
    rate: float = 50.0  # requests per second per job, sustained
    burst: int = 200
    in_flight: int = 32  # requests per job being served at once
    auth_failures: float = 5.0  # failed authentications per second per client address...
    auth_burst: int = 100  # ...after this many at once
    upstream_timeout: float = 120.0
