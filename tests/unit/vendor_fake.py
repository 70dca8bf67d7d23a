"""What every fake vendor API in this directory shares: injected faults served first, and a
client rigged so that every attempt times out on a simulated clock."""

from __future__ import annotations

import httpx

from slurm_qpu.vendors.common.http import RetryPolicy, VendorClient

Fault = httpx.Response | Exception
Faults = dict[tuple[str, str], list[Fault]]

ATTEMPT_SECONDS = 4.0  # how long each timed-out attempt "takes"
DEADLINE = 10.0


def take_fault(faults: Faults, request: httpx.Request) -> httpx.Response | None:
    """The next fault queued for this (method, path): a response to serve, or an exception
    raised as the transport would raise it; None when nothing is queued."""
    queued = faults.get((request.method, request.url.path))
    if not queued:
        return None
    fault = queued.pop(0)
    if isinstance(fault, Exception):
        raise fault
    return fault


def stall_every_attempt(client: VendorClient) -> list[float]:
    """Make every request of ``client`` time out after ATTEMPT_SECONDS of simulated time,
    under a DEADLINE-second policy with many attempts; the returned one-item list is the
    simulated clock, to check that no attempt started past the deadline."""
    now = [0.0]

    def slow(request: httpx.Request) -> httpx.Response:
        now[0] += ATTEMPT_SECONDS
        raise httpx.ReadTimeout("timed out", request=request)

    client.clock = lambda: now[0]
    client.sleep = lambda s: now.__setitem__(0, now[0] + s)
    client.retry = RetryPolicy(attempts=10, backoff=1.0, deadline=DEADLINE)
    client._http._transport = httpx.MockTransport(slow)
    return now
