"""The broker's HTTP server: its lifecycle and its route table.

    GET /v1/health, /v1/catalog, /metrics       no authentication     nodeapi.py
    GET /v1/status, /v1/leases; POST|DELETE /v1/leases/<job>   MUNGE  nodeapi.py
    *   /p/<qpu>/<vendor path>                  a job's SDK calls     proxy.py

What every request gets is here: its path checked, its body's framing and memory bounded
(httpserver.py, exchange.py), refusals answered in the shape SDKs read, an audit line;
the routes are in nodeapi.py and proxy.py, and what a job may do at a vendor is in the
vendor's folder.

Threads, not asyncio: each request is a few small blocking steps (a journal write, an
upstream call), a thread per connection keeps the code plain, and the standard library
server keeps the broker's dependencies to what the plugin already needs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slurm_qpu import munge
from slurm_qpu.broker.admission import Budget, InFlight, RateLimiter
from slurm_qpu.broker.exchange import Exchange, check_path
from slurm_qpu.broker.httpserver import BrokerHTTPServer, Refused, RequestBody
from slurm_qpu.broker.journal import JournalError, LeaseRecord
from slurm_qpu.broker.limits import Limits
from slurm_qpu.broker.nodeapi import NodeApi
from slurm_qpu.broker.proxy import JOINED_ON_SLASH, Proxy
from slurm_qpu.broker.service import LeaseService
from slurm_qpu.broker.tls import ServerTLS
from slurm_qpu.broker.upstream import Pool
from slurm_qpu.vendors.common.view import Upstream
from slurm_qpu.vendors.registry import view_for

log = logging.getLogger("slurm_qpu.broker")
audit = logging.getLogger("slurm_qpu.audit")


@dataclass
class Broker:
    service: LeaseService
    limits: Limits = field(default_factory=Limits)
    node_uids: frozenset[int] = frozenset({0})
    decode: Callable[[str], munge.Decoded] = munge.decode

    def __post_init__(self) -> None:
        self.rates = RateLimiter(self.limits.rate, self.limits.burst)
        self.failures = RateLimiter(self.limits.auth_failures, self.limits.auth_burst)
        self.in_flight = InFlight(self.limits.in_flight)
        self.memory = Budget(self.limits.buffered, self.limits.buffered_share)
        # the vendors, kept alive between a job's requests (broker/upstream.py)
        self.http = Pool(connect_timeout=10.0, read_timeout=self.limits.upstream_timeout)
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        self._up_lock = threading.Lock()
        self._journal_errors: dict[str, float] = {}  # message -> when last logged
        self._server: BrokerHTTPServer | None = None

    # ------------------------------------------------------------------ upstreams

    @property
    def chunked_limit(self) -> int:
        """A body without Content-Length (chunked) is held whole before it is sent on, and
        for a moment twice (its pieces, and them joined): half a client's memory share."""
        return min(self.limits.max_body, self.limits.buffered_share // 2)

    def upstream(self, lease: LeaseRecord, name: str, type_name: str) -> Upstream:
        settings = self.service.resource_settings(lease, name)
        if settings is None:
            raise Refused(403, f"QPU {name} is no longer configured")
        key = (name, json.dumps(sorted(settings.items())))
        with self._up_lock:
            up = self._upstreams.get(key)
            if up is None:
                up = self._upstreams[key] = view_for(type_name).upstream(settings)
            return up

    # ------------------------------------------------------------------ server

    def start(self, host: str = "127.0.0.1", port: int = 0,
              poll_interval: float = 0.5, tls: ServerTLS | None = None) -> str:
        """Listen (over TLS with ``tls``: broker/tls.py); the URL."""
        handler = type("Handler", (BrokerHandler,), {"broker": self, "limits": self.limits})
        server = BrokerHTTPServer((host, port), handler, self.limits, tls)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval},
                         name="broker-http", daemon=True).start()
        return f"{'https' if tls else 'http'}://{host}:{server.server_address[1]}"

    def note_journal_error(self, message: str, every: float = 10.0) -> bool:
        """Whether to log this journal error: each message once per ``every`` seconds."""
        now = time.monotonic()
        with self._up_lock:
            if now - self._journal_errors.get(message, -every) < every:
                return False
            if len(self._journal_errors) > 100:
                self._journal_errors.clear()
            self._journal_errors[message] = now
            return True

    def stop(self, drain: float = 0.0) -> int:
        """Stop accepting, let the requests in progress finish within ``drain`` seconds
        (a prolog's acquisition, a job's vendor call), then end every connection; returns
        how many requests were cut at the deadline. The journal stays open: its owner
        closes it after this, when no request can write to it any more."""
        cut = 0
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # the port is closed: new clients are refused
            cut = self._server.drain(drain)
        self.http.close()
        return cut


class BrokerHandler(NodeApi, Proxy):
    """One connection's requests: each routed by its path, refused or answered, audited.
    ``Broker.start`` makes a subclass that names its broker."""

    broker: Broker
    server_version = "slurm-qpu-broker"
    sys_version = ""
    # TCP_NODELAY: an answer's headers and body go out in separate writes; with Nagle the
    # body waits for the client's delayed ACK of the headers, 40 ms on every keep-alive
    # request that has a body (BENCHMARKS.md, item 4)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the audit log says what matters, without query strings

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        who: dict[str, Any] = {"job": "-", "user": "-", "qpu": "-"}
        with self.broker.memory.hold(f"client {self.peer}") as memory:
            ex = Exchange(self, memory)
            try:
                ex.body = RequestBody(self.headers, self.rfile)
                path = JOINED_ON_SLASH.sub(r"\1", path, count=1)
                check_path(path)
                if path.startswith("/p/"):
                    self._proxy(ex, path, query, who)
                else:
                    self._node_api(ex, path, who)
            except Refused as exc:
                if exc.close:
                    self.close_connection = True
                if not ex.responded:
                    extra = {"Retry-After": str(max(1, round(exc.retry_after)))} \
                        if exc.retry_after else {}
                    if self.close_connection:
                        extra["Connection"] = "close"
                    # a refusal may quote a vendor, whose text may echo a credential
                    ex.error(exc.status, self.service.redact(exc.message), extra)
                else:
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True
            except (JournalError, *self.service.journal.errors) as exc:  # type: ignore[misc]
                # the journal's database is away (a MariaDB restart, a full disk): nothing
                # was granted that is not written; 503 makes prologs and SDKs try again
                if self.broker.note_journal_error(str(exc)):  # not every request's line
                    log.error("%s %s: the journal is unavailable: %s", self.command, path,
                              exc)
                if not ex.responded:
                    ex.error(503, f"the broker's journal is unavailable ({exc}); try again",
                             {"Retry-After": "2", "Connection": "close"})
                else:
                    self.close_connection = True
            except Exception as exc:  # a bug must cost one request, not the broker
                log.exception("internal error on %s %s", self.command, path)
                if not ex.responded:
                    ex.error(500, f"internal broker error: {type(exc).__name__}",
                             {"Connection": "close"})
                self.close_connection = True
            finally:
                # what a route left unread of the body must not become the next request
                if ex.body is None or not ex.body.finish():
                    self.close_connection = True
                self._audit(ex, path, who)

    def _audit(self, ex: Exchange, path: str, who: dict[str, Any]) -> None:
        if path.startswith("/p/"):
            metrics = self.service.metrics
            metrics.proxy_requests.inc(qpu=str(who["qpu"]), status=str(ex.status or "-"))
            metrics.proxy_seconds.observe(time.monotonic() - ex.started, qpu=str(who["qpu"]))
        if path.startswith("/p/") or path.startswith("/v1/leases"):
            audit.info("job=%s user=%s qpu=%s route=\"%s %s\" status=%s bytes_in=%d "
                       "bytes_out=%d ms=%.1f client=%s", who["job"], who["user"], who["qpu"],
                       self.command, path, ex.status or "-", ex.bytes_in,
                       ex.bytes_out, (time.monotonic() - ex.started) * 1000, self.peer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch
