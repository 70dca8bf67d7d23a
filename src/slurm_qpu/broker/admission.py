"""What a request must be granted before the broker works for it.

Every bound here protects the other jobs from one job, or everyone from a client that is not
a job at all:

* ``RateLimiter``: a token bucket per key. Per job: requests per second through the proxy
  (charged only once the request has proved which job it is, so nobody can spend another
  job's allowance). Per client address: failed authentications, so guessing tokens or
  signatures, or flooding munged with bad credentials, slows to a trickle;
* ``InFlight``: a job's requests being served at once (a job's threads cannot take all of
  the broker's);
* ``Budget``: the bytes the broker holds in memory for all requests at once, i.e. bodies it
  reads whole, the JSON a view parses (counted at what parsing may cost, not at its size on
  the wire), answers a view reads, chunks of signed uploads. A request that would go past it
  is refused at once with 503 and Retry-After instead of growing the broker: memory stays
  bounded whatever clients send. One job (or one address, until a request proves its job)
  may hold a share of it only, so one job cannot take it all; node requests (at most 64
  KiB, from root, checked by MUNGE first) do not draw on it, so a full budget never keeps a
  prolog or an epilog waiting.

Each holds one small entry per job or address it has seen recently; entries that have
nothing to remember are dropped, so a client that keeps changing its address cannot grow
the tables either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from slurm_qpu.broker.httpserver import Refused

MAX_KEYS = 65536  # keys a table keeps before it forgets the ones with nothing to remember


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def take(self, key: Hashable, now: float | None = None) -> float:
        """Spend a token: 0 when there was one (the request may go), else the seconds
        until there will be one."""
        now = self.clock() if now is None else now
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens >= 1:
                self._store(key, tokens - 1, now)
                return 0.0
            self._store(key, tokens, now)
            return (1 - tokens) / self.rate

    def wait(self, key: Hashable, now: float | None = None) -> float:
        """Like take() without spending: 0 when a token is there."""
        now = self.clock() if now is None else now
        with self._lock:
            if key not in self._buckets:
                return 0.0
            tokens = self._tokens(key, now)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _store(self, key: Hashable, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_KEYS:
            # a full bucket remembers nothing: forget those, then the oldest down to half
            # the table (so this happens once per MAX_KEYS / 2 new keys at most)
            for k in [k for k in self._buckets if self._tokens(k, now) >= self.burst]:
                del self._buckets[k]
            excess = len(self._buckets) - MAX_KEYS // 2
            if excess > 0:
                for k in sorted(self._buckets, key=lambda k: self._buckets[k][1])[:excess]:
                    del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


class InFlight:
    """How many requests of each job are being served; more than ``per_job`` at once are
    refused (429) until one ends."""

    def __init__(self, per_job: int) -> None:
        self.per_job = per_job
        self._count: dict[int, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def enter(self, job_id: int) -> Iterator[None]:
        with self._lock:
            now = self._count.get(job_id, 0)
            if now >= self.per_job:
                raise Refused(429, f"job {job_id} already has {now} requests in progress "
                                   f"through the broker, its limit; wait for one to end",
                              retry_after=1)
            self._count[job_id] = now + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._count[job_id] - 1
                if left:
                    self._count[job_id] = left
                else:
                    del self._count[job_id]

    def __len__(self) -> int:
        return len(self._count)


class Budget:
    """Bytes held in memory for requests, all of them at once, at most ``total``; of which
    one holder (a job, or before a request has proved which job it is, a client address)
    at most ``share``, so that one job cannot take it all."""

    def __init__(self, total: int, share: int | None = None) -> None:
        self.total = total
        self.share = total if share is None else share
        self.used = 0
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, holder: str) -> Iterator[Holding]:
        """A request's share (``holder``: "job 7", "client 10.0.0.3"): what it takes is
        given back when the request ends."""
        holding = Holding(self, holder)
        try:
            yield holding
        finally:
            holding.release()

    def held_by(self, holder: str) -> int:
        with self._lock:
            return self._held.get(holder, 0)

    def _take(self, n: int, what: str, holder: str) -> None:
        if n > min(self.total, self.share):
            raise Refused(413, f"{what} would need {n} bytes of the broker's memory, more "
                               f"than all it keeps for one client's requests "
                               f"({min(self.total, self.share)} bytes)")
        with self._lock:
            mine = self._held.get(holder, 0)
            if mine + n > self.share:
                raise Refused(503, f"{holder} holds as many request bytes in the broker's "
                                   "memory as one may; try again shortly", retry_after=1)
            if self.used + n > self.total:
                raise Refused(503, "the broker is holding as many request bytes in memory "
                                   "as it may; try again shortly", retry_after=1)
            self.used += n
            self._held[holder] = mine + n

    def _move(self, n: int, holder: str, to: str | None = None, force: bool = False) -> None:
        """Give ``n`` back from ``holder`` (to ``to``'s account, if given); ``force``: take
        it without a check (already in memory)."""
        with self._lock:
            if force:
                self.used += n
                self._held[holder] = self._held.get(holder, 0) + n
                return
            left = self._held.get(holder, 0) - n
            if left > 0:
                self._held[holder] = left
            else:
                self._held.pop(holder, None)
            if to is None:
                self.used -= n
            else:
                self._held[to] = self._held.get(to, 0) + n


class Holding:
    """One request's bytes in the budget."""

    def __init__(self, budget: Budget, holder: str) -> None:
        self.budget = budget
        self.holder = holder
        self.held = 0

    def take(self, n: int, what: str = "this request") -> None:
        self.budget._take(n, what, self.holder)
        self.held += n

    def give(self, n: int) -> None:
        """Give ``n`` of the bytes taken back (they are no longer held)."""
        n = min(n, self.held)
        self.budget._move(n, self.holder)
        self.held -= n

    def force(self, n: int) -> None:
        """Count ``n`` bytes even past the budget (bytes already in memory, which other
        requests must now wait for)."""
        self.budget._move(n, self.holder, force=True)
        self.held += n

    def belongs_to(self, holder: str) -> None:
        """The request has proved whose it is: what it holds, and will take, is theirs."""
        if holder != self.holder:
            self.budget._move(self.held, self.holder, to=holder)
            self.holder = holder

    def release(self) -> None:
        if self.held:
            self.budget._move(self.held, self.holder)
            self.held = 0


def json_cost(body: bytes) -> int:
    """An upper bound on the memory parsing ``body`` as JSON may take: Python objects are
    far bigger than their text (an 8 MiB list of empty objects becomes ~200 MiB), so each
    container and each separated item is counted at what it costs once parsed."""
    containers = body.count(b"{") + body.count(b"[")
    return len(body) + 72 * containers + 32 * body.count(b",") + 32 * body.count(b":")
