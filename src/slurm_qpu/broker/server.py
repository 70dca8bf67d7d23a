"""The broker's HTTP server: the node API (MUNGE) and the job proxy (job tokens).

    GET    /v1/health                 no authentication
    GET    /v1/catalog                QPU names and types (no secrets), no authentication
    GET    /metrics                   Prometheus metrics (no job ids, no secrets), no auth.
    GET    /v1/status                 slurm-qpu status: QPUs, their jobs, errors  MUNGE, any uid
    POST   /v1/leases/<job>           prolog: acquire (idempotent)            MUNGE, root
    DELETE /v1/leases/<job>           epilog: release (idempotent)            MUNGE, root
    GET    /v1/leases                 admins: active leases                   MUNGE, root
    *      /p/<qpu>/<vendor path>     a job's SDK calls, forwarded upstream   job token

Threads, not asyncio: each request is a few small blocking steps (a journal write, an
upstream call), a thread per connection keeps the code plain, and the standard library
server keeps the broker's dependencies to what the plugin already needs.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote

from slurm_qpu import munge
from slurm_qpu.broker.admission import Budget, Holding, InFlight, RateLimiter, json_cost
from slurm_qpu.broker.client import munge_payload
from slurm_qpu.broker.httpserver import (
    CHUNK,
    BrokerHTTPServer,
    BrokerRequestHandler,
    Refused,
    RequestBody,
)
from slurm_qpu.broker.journal import LeaseRecord
from slurm_qpu.broker.limits import Limits
from slurm_qpu.broker.service import AcquireRequest, LeaseService
from slurm_qpu.broker.upstream import Answer, Pool, UpstreamError
from slurm_qpu.log import CURRENT_JOB
from slurm_qpu.vendors.common.base import TypeNotAvailable
from slurm_qpu.vendors.common.http import VendorError
from slurm_qpu.vendors.common.view import (
    DENIED,
    ENDED,
    FORWARD,
    OVER_RATE,
    TIMEOUT,
    TOO_LARGE,
    UNKNOWN_CREDENTIAL,
    UNREACHABLE,
    Call,
    Decision,
    Forward,
    Refusal,
    SignedRoute,
    Upstream,
    View,
)
from slurm_qpu.vendors.registry import view_for

log = logging.getLogger("slurm_qpu.broker")
audit = logging.getLogger("slurm_qpu.audit")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
NODE_API_MAX_BODY = 64 * 1024
_LEASE_PATH = re.compile(r"^/v1/leases/([0-9]{1,12})$")
_PROXY_PATH = re.compile(r"^/p/([A-Za-z_][A-Za-z0-9_]*)(?:/(.*))?$")
# Felis's Qiskit provider needs its endpoint to end in "/" and qrmi then joins "/v1/..." to
# it: one empty segment right after the QPU's name is that join's, not a trick
_JOINED_ON_SLASH = re.compile(r"^(/p/[A-Za-z_][A-Za-z0-9_]*/)/")


def check_path(raw: str) -> str:
    """The request path, or Refused for tricks: ``..``/``.`` segments (plain or encoded),
    encoded slashes or backslashes, NUL, empty segments."""
    lowered = raw.lower()
    if any(bad in lowered for bad in ("%2f", "%5c", "%00", "\\", "//")):
        raise Refused(400, "request path not allowed (encoded separators or empty segments)")
    if any(unquote(seg) in (".", "..") for seg in raw.split("/")):
        raise Refused(400, "request path not allowed ('.' or '..' segments)")
    return raw


def joined(parts: list[bytes], memory: Holding | None) -> bytes:
    """The parts as one ``bytes``: for a moment both are in memory, and the budget says so
    (the parts' share is given back once they are gone)."""
    if len(parts) == 1:
        return parts[0]
    total = sum(map(len, parts))
    if memory is not None:
        memory.take(total, "the request body")
    whole = b"".join(parts)
    parts.clear()
    if memory is not None:
        memory.give(total)
    return whole


def _inflated(body: bytes, wbits: int, limit: int, memory: Holding | None) -> bytes | None:
    """``body`` inflated a piece at a time, each counted in ``memory`` before the next is
    made, or None once it would be over ``limit`` (zlib.error: not the data it says)."""
    inflate = zlib.decompressobj(wbits)
    pieces: list[bytes] = []
    total, data = 0, body
    while True:
        before = len(data)
        piece = inflate.decompress(data, CHUNK)
        data = inflate.unconsumed_tail
        total += len(piece)
        if total > limit:
            return None
        if memory is not None:
            memory.take(len(piece), "the decoded request body")
        pieces.append(piece)
        if (not data and len(piece) < CHUNK) or (not piece and len(data) >= before):
            return joined(pieces, memory)


def decoded(headers: Any, body: bytes, limit: int, memory: Holding | None = None) -> bytes:
    """A request body as a view must read it (the Pasqal SDK gzips its requests),
    inflated no further than the limit, and counted in ``memory`` as it inflates: a small
    gzip bomb must not cost the broker its memory."""
    encoding = str(headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise Refused(415, f"request Content-Encoding {encoding} is not supported by the "
                           "broker")
    try:
        out = _inflated(body, 16 + zlib.MAX_WBITS, limit, memory)
    except zlib.error:
        raise Refused(400, "Content-Encoding says gzip but the body is not gzip data") from None
    if out is None:
        raise Refused(413, f"request body is over the broker's limit of {limit} bytes")
    return out


def decoded_answer(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A vendor's answer as a view reads it (the broker asks for gzip or nothing),
    inflated no further than the limit."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise Refused(502, f"the vendor's answer is {encoding}-encoded, which the broker "
                           "cannot read")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    try:
        out = _inflated(body, wbits, limit, None)
    except zlib.error:
        raise Refused(502, f"the vendor's answer is not the {encoding} data it says") from None
    if out is None:
        raise Refused(502, "the vendor's answer is over the broker's limit")
    return out


def token_of(headers: Any) -> str | None:
    value = str(headers.get("Authorization") or "")
    scheme, _, credential = value.partition(" ")
    if scheme.lower() == "bearer":
        return credential.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credential.strip()).decode().partition(":")
        except ValueError:
            return None
        return password or user or None
    return None


@dataclass
class JobCaller:
    """The job behind a proxied request (the views' JobSide)."""

    service: LeaseService
    lease: LeaseRecord
    name: str
    session: str

    @property
    def job_id(self) -> int:
        return self.lease.job_id

    def owns(self, vendor_id: str) -> bool:
        return self.service.journal.owns_vendor_job(self.lease, self.name, vendor_id)

    def remember(self, vendor_id: str, *, shots: int | None = None,
                 counted: bool = True) -> None:
        self.service.journal.add_vendor_job(self.lease, self.name, vendor_id, shots=shots,
                                            counted=counted)

    def report_usage(self, vendor_id: str, qpu_seconds: float) -> None:
        self.service.journal.set_vendor_job_usage(self.lease, self.name, vendor_id,
                                                  qpu_seconds=qpu_seconds)

    def access_token(self) -> tuple[str, int]:
        return self.service.tokens.access_token(self.lease)

    # for views that derive the job's credentials from its token (IBM Quantum System's S3)
    def job_token(self) -> str:
        return self.service.job_token(self.lease)

    def settings(self) -> Mapping[str, str] | None:
        return self.service.resource_settings(self.lease, self.name)


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
              poll_interval: float = 0.5) -> str:
        server = BrokerHTTPServer((host, port), _handler_class(self), self.limits)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval},
                         name="broker-http", daemon=True).start()
        return f"http://{host}:{server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.http.close()


class _Exchange:
    """One request/response, with what the audit line needs."""

    def __init__(self, handler: BaseHTTPRequestHandler, memory: Holding) -> None:
        self.h = handler
        self.memory = memory  # what this request may hold in memory (Broker.memory)
        self.started = time.monotonic()
        self.bytes_out = 0
        self.status = 0
        self.responded = False
        self.body: RequestBody | None = None  # set once its framing is checked

    @property
    def request(self) -> RequestBody:
        assert self.body is not None
        return self.body

    @property
    def bytes_in(self) -> int:
        return self.body.read_bytes if self.body is not None else 0

    def whole_body(self, limit: int, counted: bool = True) -> bytes:
        """The request body, read whole: every byte counted in the broker's memory budget
        as it arrives (unless not ``counted``: a node's, at most 64 KiB, from root), so a
        body's declared size does not decide what it costs."""
        request = self.request
        if request.length is not None and request.length > limit:
            raise request.over(limit, request.length)
        memory = self.memory if counted else None
        parts = []
        for data in request.stream(limit):
            if memory is not None:
                memory.take(len(data), "the request body")
            parts.append(data)
        return joined(parts, memory) if parts else b""

    def send(self, status: int, body: bytes, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        h = self.h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        # the body goes out in the headers' write: one send() and one TCP segment for a
        # small answer instead of two (BaseHTTPRequestHandler buffers headers in
        # _headers_buffer until end_headers() flushes it)
        h._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        h._headers_buffer.append(body)  # type: ignore[attr-defined]
        h.flush_headers()
        self.status, self.bytes_out, self.responded = status, len(body), True

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        # the shapes the SDKs read: IBM (errors[].message), Pasqal (JSend), FastAPI (detail)
        body = {"status": "fail" if status < 500 else "error", "code": status,
                "message": message, "detail": message, "errors": [{"message": message,
                                                                   "code": status}]}
        self.send(status, json.dumps(body).encode(), headers=headers)


def _handler_class(broker: Broker) -> type[BaseHTTPRequestHandler]:
    service = broker.service

    class _Handler(BrokerRequestHandler):
        limits = broker.limits
        server_version = "slurm-qpu-broker"
        sys_version = ""
        # TCP_NODELAY: an answer's headers and body go out in separate writes; with Nagle
        # the body waits for the client's delayed ACK of the headers, 40 ms on every
        # keep-alive request that has a body (BENCHMARKS.md, item 4)
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the audit log says what matters, without query strings

        def _dispatch(self) -> None:
            path, _, query = self.path.partition("?")
            who: dict[str, Any] = {"job": "-", "user": "-", "qpu": "-"}
            with broker.memory.hold(f"client {self.client_address[0]}") as memory:
                ex = _Exchange(self, memory)
                try:
                    ex.body = RequestBody(self.headers, self.rfile)
                    path = _JOINED_ON_SLASH.sub(r"\1", path, count=1)
                    check_path(path)
                    if path.startswith("/p/"):
                        self._not_failing_too_often()
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
                        ex.error(exc.status, service.redact(exc.message), extra)
                    else:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
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

        def _audit(self, ex: _Exchange, path: str, who: dict[str, Any]) -> None:
            if path.startswith("/p/"):
                service.metrics.proxy_requests.inc(qpu=str(who["qpu"]),
                                                   status=str(ex.status or "-"))
                service.metrics.proxy_seconds.observe(time.monotonic() - ex.started,
                                                      qpu=str(who["qpu"]))
            if path.startswith("/p/") or path.startswith("/v1/leases"):
                audit.info("job=%s user=%s qpu=%s route=\"%s %s\" status=%s bytes_in=%d "
                           "bytes_out=%d ms=%.1f", who["job"], who["user"], who["qpu"],
                           self.command, path, ex.status or "-", ex.bytes_in,
                           ex.bytes_out, (time.monotonic() - ex.started) * 1000)

        def _not_failing_too_often(self) -> None:
            """An address whose job credentials (tokens, S3 signatures) failed too often
            waits before its next one is checked (that is the work it would cost). Node
            requests are not held back: a job that keeps failing must not make its node's
            prologs and epilogs wait; a bad MUNGE credential costs munged little."""
            wait = broker.failures.wait(self.client_address[0])
            if wait:
                raise Refused(429, f"too many failed authentications from "
                                   f"{self.client_address[0]}; try again in "
                                   f"{max(1, round(wait))} s", wait)

        def _failed(self) -> None:
            """Count a failed authentication against the client's address."""
            broker.failures.take(self.client_address[0])

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

        # -------------------------------------------------------------- node API

        def _node(self, ex: _Exchange, path: str, *, any_uid: bool = False) -> bytes:
            """A node's request: its MUNGE credential is checked before its body is read
            (at most NODE_API_MAX_BODY bytes), then bound to that body. The body."""
            value = str(self.headers.get("Authorization") or "")
            scheme, _, credential = value.partition(" ")
            if scheme != "MUNGE" or not credential:
                raise Refused(401, "node requests need a MUNGE credential")
            try:
                decoded = broker.decode(credential.strip())
            except munge.MungeError as exc:
                raise Refused(401, str(exc)) from None
            if not any_uid and decoded.uid not in broker.node_uids:
                raise Refused(403, (
                    f"uid {decoded.uid} may not manage leases (allowed: "
                    f"{', '.join(map(str, sorted(broker.node_uids)))})"))
            body = ex.whole_body(NODE_API_MAX_BODY, counted=False)
            if decoded.payload != munge_payload(self.command, path, body):
                raise Refused(401, "the MUNGE credential was made for another request")
            return body

        def _node_api(self, ex: _Exchange, path: str, who: dict[str, Any]) -> None:
            if path == "/v1/health" and self.command == "GET":
                ex.send(200, json.dumps({"status": "ok",
                                         "active_leases": len(service.journal.active())}
                                        ).encode())
                return
            if path == "/metrics" and self.command == "GET":
                ex.send(200, service.metrics.render().encode(),
                        content_type="text/plain; version=0.0.4; charset=utf-8")
                return
            if path == "/v1/status" and self.command == "GET":
                # job ids and QPU errors: for the cluster's users (MUNGE, any uid), not for
                # anyone who reaches the port
                self._node(ex, path, any_uid=True)
                ex.send(200, json.dumps(service.status()).encode())
                return
            if path == "/v1/catalog" and self.command == "GET":
                config = service.config.get()
                ex.send(200, json.dumps({r.name: r.current_type for r in config.resources}
                                        ).encode())
                return
            if path == "/v1/leases" and self.command == "GET":
                self._node(ex, path)
                ex.send(200, json.dumps([lease_json(service, lease, with_env=False)
                                         for lease in service.journal.active()]).encode())
                return
            m = _LEASE_PATH.match(path)
            if not m or self.command not in ("POST", "DELETE"):
                raise Refused(404, f"no such broker route: {self.command} {path}")
            body = self._node(ex, path)
            job_id = int(m.group(1))
            who["job"] = job_id
            CURRENT_JOB.set(job_id)  # this request's thread: its log lines name the job
            if self.command == "DELETE":
                lease = service.release(job_id)
                if lease is None:
                    raise Refused(404, f"job {job_id} has no lease")
                who["user"] = lease.user or "-"
                ex.send(200, json.dumps(lease_json(service, lease, with_env=False,
                                                   with_usage=True)).encode())
                return
            try:
                data = json.loads(body or b"{}")
                request = AcquireRequest(
                    job_id, user=data.get("user"), uid=data.get("uid"),
                    qpus=str(data.get("qpus") or ""), time_limit=data.get("time_limit"),
                    overrides=data.get("overrides"))
            except (ValueError, AttributeError, TypeError):
                raise Refused(400, "lease request is not the expected JSON") from None
            who["user"] = request.user or "-"
            outcome = service.acquire(request)
            answer = lease_json(service, outcome.lease, with_env=True)
            answer["warnings"] = outcome.warnings
            ex.send(200, json.dumps(answer).encode())

        # -------------------------------------------------------------- proxy

        def _proxy(self, ex: _Exchange, path: str, query: str, who: dict[str, Any]) -> None:
            m = _PROXY_PATH.match(path)
            if not m:
                raise Refused(404, "expected /p/<qpu>/<path>")
            name, rest = m.group(1), m.group(2) or ""
            who["qpu"] = name
            call = Call(self.command, rest, query)
            # the view of the QPU the path names (the public catalog says its type) decides
            # how a job authenticates on this route; which QPUs the job holds is checked next
            route_view = self._route_view(name)
            token = token_of(self.headers)
            if token is None:
                signed = route_view.signed_route(call, self.path.partition("?")[0],
                                                 list(self.headers.items()))
                if signed is not None:
                    self._signed(ex, name, route_view, signed, who)
                    return
            form_token = None
            field = route_view.form_credential(call) if token is None else None
            if field is not None:
                form = parse_qs(ex.whole_body(NODE_API_MAX_BODY).decode("utf-8", "replace"))
                form_token = (form.get(field) or [""])[0] or None
            lease = service.authenticate(token or form_token)
            if lease is None:
                self._failed()
                raise Refused(401, "missing, unknown or expired job token (a job's token "
                                   "stops working when the job ends)")
            who["job"], who["user"] = lease.job_id, lease.user or "-"
            CURRENT_JOB.set(lease.job_id)
            ex.memory.belongs_to(f"job {lease.job_id}")
            held = lease.holds(name)
            if held is None:
                raise Refused(403, f"job {lease.job_id} did not request QPU {name} "
                                   f"(it holds {', '.join(lease.names) or 'none'})")
            wait = broker.rates.take(lease.job_id)
            if wait:
                raise Refused(429, f"job {lease.job_id} is over its rate limit of "
                                   f"{broker.limits.rate:g} requests per second", wait)
            view = view_for(held.type)
            if not view.proxied:
                raise Refused(404, f"QPU {name} ({held.type}) is not reached through the "
                                   "broker")
            with broker.in_flight.enter(lease.job_id):
                self._call_view(ex, view, JobCaller(service, lease, name, held.token),
                                held.type, call, form_token is not None)

        def _call_view(self, ex: _Exchange, view: View, caller: JobCaller, type_name: str,
                       call: Call, body_read: bool) -> None:
            """Ask the job's view about the request (with its body, read whole and
            bounded, when the view reads it), then answer it here or forward it."""
            if not body_read and view.wants_body(call):
                limit = min(broker.limits.max_parsed, broker.limits.max_body)
                call.body = decoded(self.headers, ex.whole_body(limit), limit, ex.memory)
                ex.memory.take(json_cost(call.body), "checking the request body")
            decision = view.authorize(caller, call)
            if not decision.allowed:
                raise Refused(decision.status, decision.message)
            if decision.local is not None:
                ex.send(decision.local[0], decision.local[1])
                return
            self._forward(ex, broker.upstream(caller.lease, caller.name, type_name), call,
                          decision, view.forward_headers)

        @staticmethod
        def _route_view(name: str) -> View:
            """The view of the QPU a proxy path names, by its type in the config (a QPU
            not configured, or whose site vendor cannot be loaded: the default view, whose
            routes take a job token)."""
            rdef = service.config.get().get(name)
            try:
                return view_for(rdef.current_type) if rdef is not None else View()
            except TypeNotAvailable:
                return View()

        def _signed(self, ex: _Exchange, name: str, view: View, route: SignedRoute,
                    who: dict[str, Any]) -> None:
            """A request the job signed with credentials its lease derives (a view's signed
            route: IBM Quantum System job storage, S3): the credentials name the lease, the
            view checks the signature against them and signs the request again for the
            site. Refusals are in the route's protocol (S3 XML errors), which its clients
            show."""
            try:
                try:
                    self._signed_forward(ex, name, view, route, who)
                except Refused as exc:  # the broker's own (framing, body size, ...)
                    raise Refusal(exc.status, DENIED, exc.message) from None
            except Refusal as exc:
                if ex.responded:
                    self.close_connection = True
                    return
                content_type, body = route.error(
                    Refusal(exc.status, exc.code, service.redact(exc.message)),
                    with_body=self.command != "HEAD")
                ex.send(exc.status, body, content_type,
                        {"Connection": "close"} if self.close_connection else None)

        def _signed_forward(self, ex: _Exchange, name: str, view: View, route: SignedRoute,
                            who: dict[str, Any]) -> None:
            ref = route.lease()
            lease = service.journal.get(*ref) if ref else None
            if lease is None:
                self._failed()
                raise Refusal(403, UNKNOWN_CREDENTIAL,
                              f"{route.credential} is not a slurm-qpu job's")
            token = service.job_token(lease)
            if service.authenticate(token) is None:
                self._failed()
                raise Refusal(403, ENDED, f"the {route.credentials} of job {lease.job_id} "
                                          "stopped working when the job ended")
            held = lease.holds(name)
            if held is None or type(view_for(held.type)) is not type(view):
                raise Refusal(403, DENIED, f"job {lease.job_id} holds no {route.serves} "
                                           f"named {name}")
            try:  # checks the signature: only then is it known to be the job's request
                out = route.forward(token, service.resource_settings(lease, name) or {},
                                    datetime.now(UTC))
            except Refusal as exc:
                if exc.auth_failure:
                    self._failed()
                raise
            who["job"], who["user"] = lease.job_id, lease.user or "-"
            CURRENT_JOB.set(lease.job_id)
            ex.memory.belongs_to(f"job {lease.job_id}")
            if broker.rates.take(lease.job_id):
                raise Refusal(503, OVER_RATE, f"job {lease.job_id} is over its rate limit "
                                              f"of {broker.limits.rate:g} requests per second")
            with broker.in_flight.enter(lease.job_id):
                self._send_signed(ex, route, out)

        def _send_signed(self, ex: _Exchange, route: SignedRoute, out: Forward) -> None:
            length = ex.request.length
            if length is not None and length > broker.limits.max_body:
                raise Refusal(413, TOO_LARGE, (
                    f"request body of {length} bytes is over the broker's limit of "
                    f"{broker.limits.max_body} bytes"))
            content: Iterator[bytes] | None = None
            if ex.request.chunked:  # the service wants a length: take the whole body first
                whole = ex.whole_body(broker.chunked_limit)
                content, length = iter([whole]), len(whole)
            elif length:
                content = ex.request.stream(broker.limits.max_body)
            headers = dict(out.headers)
            if length is not None:
                headers["content-length"] = str(length)
            if content is not None:
                held = [0]

                def hold(size: int) -> None:
                    # a piece is held whole, copied once and sent with its new framing
                    ex.memory.give(held[0])
                    held[0] = 3 * size
                    ex.memory.take(held[0], "a signed upload chunk")

                content = out.body(content, hold)
            try:
                response = broker.http.send(out.method, out.url, headers, content)
            except UpstreamError as exc:
                if exc.timeout:
                    raise Refusal(504, TIMEOUT,
                                  f"the {route.service} did not answer in time") from None
                raise Refusal(502, UNREACHABLE,
                              f"the {route.service} cannot be reached: {exc}") from None
            with response:
                decision = Decision(on_response=out.answer) \
                    if out.reads_answer(response.status) else FORWARD
                self._relay(ex, response, decision)

        def _forward(self, ex: _Exchange, up: Upstream, call: Call, decision: Decision,
                     allowed: frozenset[str]) -> None:
            url = f"{up.base_url}/{call.path}" + (f"?{call.query}" if call.query else "")
            # only the headers the view lists (common/view.py FORWARD_HEADERS says why each is safe)
            headers = {k: v for k, v in self.headers.items() if k.lower() in allowed}
            if call.body is not None:  # the view read it decoded: it goes on decoded
                headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
            if decision.on_response is not None:
                # the view reads the answer: in an encoding the broker can decode
                headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
                headers["Accept-Encoding"] = "gzip"
            body: bytes | Iterator[bytes] | None = \
                decision.body if decision.body is not None else call.body
            replayable = True
            if body is None and ex.request.chunked:
                # unknown length: whole (and bounded) before the vendor hears of it, so a
                # body refused half-way never reaches it as a truncated request
                body = ex.whole_body(broker.chunked_limit)
            elif body is None and ex.request.length:
                # declared length, checked against the limit before the first byte: stream
                # it (a client that sends less leaves the vendor an incomplete request,
                # which HTTP discards)
                length, limit = ex.request.length, broker.limits.max_body
                if length > limit:
                    raise ex.request.over(limit, length)
                headers["Content-Length"] = str(length)
                body, replayable = ex.request.stream(limit), False
            for attempt in (1, 2):
                try:
                    auth = up.headers(attempt == 2)
                except VendorError as exc:
                    raise Refused(502, f"the broker cannot authenticate to the vendor: "
                                       f"{exc}") from None
                try:
                    response = broker.http.send(call.method, url, {**headers, **auth}, body)
                except UpstreamError as exc:
                    if exc.timeout:
                        raise Refused(504, "the vendor did not answer in time") from None
                    raise Refused(502, f"the vendor cannot be reached: {exc}") from None
                if response.status == 401 and attempt == 1 and replayable:
                    response.close()
                    continue
                break
            with response:
                self._relay(ex, response, decision)

        def _relay(self, ex: _Exchange, response: Answer, decision: Decision) -> None:
            limit = broker.limits.max_body
            keep = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
            if decision.on_response is not None:
                try:
                    raw = response.read(limit)
                except UpstreamError as exc:
                    raise Refused(504 if exc.timeout else 502,
                                  "the vendor did not answer in time" if exc.timeout else
                                  f"the vendor's answer broke off: {exc}") from None
                if raw is None:
                    raise Refused(502, "the vendor's answer is over the broker's limit")
                # the answer to a request that changed something is counted but never
                # refused: the vendor has acted, and the view must see its answer (a job it
                # created); other requests wait for the room. A read can be asked again.
                count = ex.memory.take if self.command in ("GET", "HEAD") else \
                    lambda n, what: ex.memory.force(n)
                count(len(raw), "the vendor's answer")
                raw = decoded_answer(raw, response.header("Content-Encoding"), limit)
                count(len(raw) + json_cost(raw), "checking the vendor's answer")
                body = decision.on_response(response.status, raw)
                self.send_response(response.status)
                for k, v in keep:
                    if k.lower() != "content-encoding":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                ex.status, ex.bytes_out, ex.responded = response.status, len(body), True
                return
            self.send_response(response.status)
            for k, v in keep:
                self.send_header(k, v)
            length = response.header("Content-Length")
            chunked = length is None and self.command != "HEAD" and \
                response.status not in (204, 304)
            if length is not None:
                self.send_header("Content-Length", length)
            elif chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            ex.status, ex.responded = response.status, True
            try:
                for chunk in response.blocks():
                    ex.bytes_out += len(chunk)
                    if ex.bytes_out > limit:
                        self.close_connection = True
                        log.warning("job response over %d bytes cut off", limit)
                        return
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked
                                     else chunk)
            except UpstreamError as exc:
                # the status line is out: all the job can be told is a cut connection
                self.close_connection = True
                log.warning("the vendor's answer to %s broke off: %s", self.command, exc)
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

    return _Handler


def lease_json(service: LeaseService, lease: LeaseRecord, *, with_env: bool,
               with_usage: bool = False) -> dict[str, Any]:
    """A lease as the node API answers it: with the job's environment for the prolog,
    with the usage record for the epilog (which writes it into Slurm accounting)."""
    out: dict[str, Any] = {
        "job_id": lease.job_id, "generation": lease.gen, "state": lease.state.value,
        "user": lease.user, "uid": lease.uid, "qpus": lease.names,
        # masked again: a journal written before the broker masked what it stores
        "error": service.redact(lease.error) if lease.error else lease.error,
        "created_at": lease.created_at, "expires_at": lease.expires_at,
        "released_at": lease.released_at,
        "release_errors": [service.redact(e) for e in lease.release_errors],
        "resources": [{"name": h.name, "type": h.type, "token": h.token} for h in lease.held],
    }
    if with_env:
        out["env"] = service.environment(lease)
    if with_usage:
        # vars(), not asdict(): every field is a plain value, and asdict's recursive
        # deep copy was a third of the time it took to build this answer
        out["usage"] = [{**vars(u), "session_seconds": u.session_seconds}
                        for u in service.journal.usage(lease)]
    return out
