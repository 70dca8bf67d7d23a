"""The broker's HTTP server: ThreadingHTTPServer, tuned for bursts of short connections and
hardened against clients that are not on our side.

Every prolog and epilog is a new process with a new connection, so a cluster starting a
hundred jobs at once sends a hundred connections at once. Two things of the standard
library's server cost them (BENCHMARKS.md, item 3):

* its listen backlog of 5: the kernel drops the SYNs of a burst beyond it and each of
  those clients waits a whole second for TCP to try again;
* a new thread per connection: starting one costs ~0.1-0.2 ms of the broker's single
  interpreter. Here a thread that has served its connection waits a while for the next
  one instead of exiting. There is still one thread per open connection, as before (a
  bounded pool would let a job's idle keep-alive connections starve the prologs).

Anyone who reaches the port can open connections, so what one client can cost the broker is
bounded here, before any route runs (``ConnectionLimits``):

* connections: at most ``connections`` open at once and ``per_client`` from one address.
  At either limit the connection that has waited longest for a request is closed to make
  room; only when all are in the middle of a request does a newcomer get a 503, written
  without reading a byte of it (the descriptors the broker may use are ``LimitNOFILE`` of
  its unit, far above both);
* time: the next request on a kept-alive connection must begin within ``idle_seconds``,
  its request line and headers must arrive within ``header_seconds``, its body within
  ``body_seconds``; the deadline is checked before every read of the socket (a client
  dripping one byte at a time is cut off) and no read or write waits longer than
  ``idle_seconds``;
* form: request line and headers together at most ``header_bytes``, every line ended by
  CRLF, every header a field name, a colon and a value, none folded;
* TLS (``tls``, the broker's --tls-cert and --tls-key): the accepting thread only wraps
  the socket; the handshake runs in the connection's thread, within ``header_seconds``
  (CPython bounds a whole handshake call by the socket's timeout), so a client that
  never finishes it costs one thread for that long, like one that never sends its
  headers. A connection refused at a limit is closed without the 503 (that would take a
  handshake first);
* framing (``RequestBody``): exactly one way of knowing where a body ends. A request with
  both Content-Length and Transfer-Encoding, a Transfer-Encoding other than exactly
  ``chunked``, several or malformed Content-Lengths, or a malformed chunk is refused and its
  connection closed (behind a proxy that reuses connections, a body read differently by the
  two would become the next job's request). Chunk sizes are checked against what is left
  of the limit before a byte of the chunk is read, and read in bounded pieces. Whatever a
  route did not read of a body is read and dropped, or the connection closed, before the
  next request on it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import ipaddress
import json
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from slurm_qpu.broker.limits import ConnectionLimits

if TYPE_CHECKING:
    from slurm_qpu.broker.tls import ServerTLS

IDLE_SECONDS = 30.0  # how long a thread without a connection waits for one
MAX_IDLE = 256  # threads kept waiting at most; more exit when their connection ends

_Work = tuple[Any, Any]  # (socket, client address)


class ThreadCache:
    """Runs each item in a thread of its own, reusing threads that are done.

    ``idle`` counts the waiting threads not yet promised an item: ``submit`` hands an
    item to a waiting thread only while one is unpromised, and starts a new thread
    otherwise, so no item ever waits for a busy thread."""

    def __init__(self, work: Callable[[Any, Any], None], name: str = "broker-request",
                 idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self._work = work
        self._name = name
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._items: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def submit(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._idle > 0 and not self._closed:
                self._idle -= 1  # promised: that thread takes this item
                self._items.put((request, client_address))
                return
        threading.Thread(target=self._run, args=((request, client_address),),
                         name=self._name, daemon=True).start()

    def _run(self, item: _Work | None) -> None:
        while item is not None:
            self._work(*item)
            item = None  # let the connection go while waiting for the next one
            with self._lock:
                if self._closed or self._idle >= self._max_idle:
                    return
                self._idle += 1
            try:
                item = self._items.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    # submit() promises under this lock: an item put meanwhile is ours
                    try:
                        item = self._items.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    def close(self) -> None:
        """Let the waiting threads exit (the busy ones finish their connection)."""
        with self._lock:
            self._closed = True
            waiting, self._idle = self._idle, 0
        for _ in range(waiting):
            self._items.put(None)

    @property
    def idle(self) -> int:
        return self._idle


class Refused(Exception):
    """Answer the request with ``status`` and ``message`` (and nothing reaches a vendor);
    ``close``: the connection cannot be used again (where the body ends is not known)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.close = close


class DeadlineSocket(io.RawIOBase):
    """A connection's input as raw reads, each bounded by what is left of a deadline (and by
    ``idle`` seconds): the socket's timeout is set before every ``recv``, so a client that
    sends one byte at a time cannot stretch a buffered read (a header line, a chunk) past
    the deadline."""

    def __init__(self, sock: socket.socket, idle: float) -> None:
        super().__init__()
        self.sock = sock
        self.idle = idle
        self.deadline = time.monotonic() + idle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError  # the connection is closed, nobody is told
        self.sock.settimeout(min(left, self.idle))
        return self.sock.recv_into(buffer)


_FIELD_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:")


class TimedReader:
    """A connection's input: buffered reads over a DeadlineSocket, with the deadline set
    per phase (``until``). While ``budget`` is set (the request line and headers) it counts
    the bytes read and checks each line's form: CRLF endings, a field name then a colon,
    no line folded onto the previous one. A request whose headers another parser could
    read differently (a proxy in front, say) is refused rather than guessed at."""

    def __init__(self, sock: socket.socket, idle: float) -> None:
        self.source = DeadlineSocket(sock, idle)
        self.raw = io.BufferedReader(self.source, 64 * 1024)
        self.budget: int | None = None
        self._lines = 0

    def until(self, seconds: float) -> None:
        """The next reads, together, may wait ``seconds`` at most."""
        self.source.deadline = time.monotonic() + seconds

    def headers(self, budget: int) -> None:
        """The request line and headers come next: at most ``budget`` bytes of them."""
        self.budget, self._lines = budget, 0

    def _count(self, data: bytes) -> bytes:
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise HeadersTooLarge
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self._count(self.raw.readline(limit))
        if self.budget is not None and line:
            self._lines += 1
            if not line.endswith(b"\r\n"):
                raise MalformedHeaders("a line of the request does not end with CRLF")
            if self._lines > 1 and line != b"\r\n":
                if line[:1] in (b" ", b"\t"):
                    raise MalformedHeaders("a header line is folded onto the previous one")
                if not _FIELD_LINE.match(line):
                    raise MalformedHeaders("a header line is not a field name, a colon and "
                                           "a value")
        return line

    def read(self, n: int = -1) -> bytes:
        return bytes(self._count(self.raw.read(n)))

    def read1(self, n: int = -1) -> bytes:
        return bytes(self._count(self.raw.read1(n)))

    def peek(self, n: int = 1) -> bytes:
        return bytes(self.raw.peek(n))

    def close(self) -> None:
        self.raw.close()


class MalformedHeaders(Exception):
    """The request line or a header line is not in the one form the broker accepts."""


class HeadersTooLarge(Exception):
    """The request line and headers are over ConnectionLimits.header_bytes."""


CHUNK = 256 * 1024  # bytes of a request body read (and forwarded) at a time
# a body a route did not read is read and dropped, up to this many bytes arriving within
# this many seconds (a client that sends its body sends it at once); otherwise the
# connection is closed
DRAIN_MAX = 64 * 1024
DRAIN_SECONDS = 1.0
MAX_CHUNK_LINE = 4096  # a chunk's size line, with any extension
MAX_TRAILERS = 32
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,15}$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_OWS = " \t"  # what may surround a field's value (str.strip() would also take \v, \f, ...)


class RequestBody:
    """A request's body, framed strictly (see the module's docstring) and read with limits.

    ``framing()`` is checked for every request before any route runs."""

    def __init__(self, headers: Any, rfile: Any) -> None:
        self.headers = headers
        self.rfile = rfile
        self.read_bytes = 0
        self.done = False  # the whole body has been read
        self.begun = False  # some of it has been read (or its first chunk line)
        self.length, self.chunked = self._framing()
        if not self.chunked and not self.length:
            self.done = True

    def _framing(self) -> tuple[int | None, bool]:
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if codings and lengths:
            raise Refused(400, "a request may not have both Content-Length and "
                               "Transfer-Encoding", close=True)
        if codings:
            if len(codings) != 1 or codings[0].strip(_OWS).lower() != "chunked":
                raise Refused(501, "Transfer-Encoding must be exactly 'chunked' (no other "
                                   "transfer coding is supported)", close=True)
            return None, True
        if not lengths:
            return None, False
        if len(lengths) != 1 or not _DIGITS.match(lengths[0].strip(_OWS)):
            raise Refused(400, "Content-Length must be given once, as a decimal number",
                          close=True)
        return int(lengths[0].strip(_OWS)), False

    def over(self, limit: int, size: int | None = None) -> Refused:
        said = f"of {size} bytes " if size is not None else ""
        return Refused(413, f"request body {said}is over the broker's limit of {limit} "
                            "bytes", close=not self.done)

    def stream(self, limit: int) -> Iterator[bytes]:
        """The body as it arrives, refused (413) before a byte past ``limit`` is read."""
        if self.length is not None and self.length > limit:
            raise self.over(limit, self.length)
        if self.done:
            return
        self.begun = True
        if self.chunked:
            yield from self._chunks(limit)
            return
        left = (self.length or 0) - self.read_bytes
        while left > 0:
            # what one read of the socket gives: passed on without waiting for a block
            # to fill (a 1 MiB body reaches the vendor as it arrives)
            data = self.rfile.read1(min(CHUNK, left))
            if not data:
                raise Refused(400, "the connection ended inside the request body",
                              close=True)
            left -= len(data)
            self.read_bytes += len(data)
            yield data
        self.done = True

    def _line(self) -> bytes:
        line: bytes = self.rfile.readline(MAX_CHUNK_LINE + 1)
        if not line.endswith(b"\r\n") or len(line) > MAX_CHUNK_LINE:
            raise Refused(400, "malformed chunked body (a chunk line is too long, cut off "
                               "or not ended by CRLF)", close=True)
        return line[:-2]

    def _chunks(self, limit: int) -> Iterator[bytes]:
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            if not _HEX.match(size_text):
                raise Refused(400, "malformed chunked body (a chunk size is not a "
                                   "hexadecimal number)", close=True)
            size = int(size_text, 16)
            if size == 0:
                break
            if self.read_bytes + size > limit:
                raise self.over(limit)
            while size > 0:
                data = self.rfile.read(min(CHUNK, size))
                if not data:
                    raise Refused(400, "the connection ended inside a chunk", close=True)
                size -= len(data)
                self.read_bytes += len(data)
                yield data
            if self.rfile.read(2) != b"\r\n":
                raise Refused(400, "malformed chunked body (a chunk is longer than its "
                                   "size)", close=True)
        for _ in range(MAX_TRAILERS):  # trailer fields, then the empty line
            if not self._line():
                self.done = True
                return
        raise Refused(400, "malformed chunked body (too many trailer fields)", close=True)

    def read(self, limit: int) -> bytes:
        return b"".join(self.stream(limit))

    def finish(self) -> bool:
        """Read and drop what a route left of the body, when it is small: whether the
        connection may serve another request."""
        if self.done:
            return True
        if self.chunked and self.begun:
            return False  # stopped somewhere inside a chunk: where, is not known here
        if self.length is not None and self.length - self.read_bytes > DRAIN_MAX:
            return False
        if isinstance(self.rfile, TimedReader):
            self.rfile.until(DRAIN_SECONDS)
        try:
            for _ in self.stream(self.read_bytes + DRAIN_MAX):
                pass
        except (Refused, OSError):  # TimeoutError included
            return False
        return self.done


def busy_answer(message: str) -> bytes:
    """A whole 503 answer, written before any request was read (connection limits)."""
    body = json.dumps({"status": "error", "code": 503, "message": message,
                       "detail": message, "errors": [{"message": message, "code": 503}]})
    return ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
            f"{body}").encode()


class BrokerRequestHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with the time and size limits of ConnectionLimits, strict
    request lines and headers, and its connection's phase told to the server (a
    connection waiting for a request may be closed to make room for another)."""

    protocol_version = "HTTP/1.1"
    limits = ConnectionLimits()
    rfile: Any
    server: BrokerHTTPServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own file: reads go through the deadline instead
        self.rfile = TimedReader(self.connection, self.limits.idle_seconds)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:  # one timeout for the whole handshake call
                self.connection.settimeout(self.limits.header_seconds)
                self.connection.do_handshake()
            except (OSError, ValueError):  # ssl.SSLError, a timeout, a reset, plain HTTP
                self.close_connection = True
                return
        super().handle()

    def handle_one_request(self) -> None:
        reader: TimedReader = self.rfile
        reader.budget = None
        try:
            self.server.waiting(self.connection, True)
            reader.until(self.limits.idle_seconds)
            if not reader.peek(1):  # the client closed its idle connection (or was evicted)
                self.close_connection = True
                return
            if self.server.draining:  # stopping: a request that arrives now is not taken
                self.close_connection = True
                return
            reader.until(self.limits.header_seconds)
            reader.headers(self.limits.header_bytes)
            super().handle_one_request()
            if self.server.draining:  # the broker is stopping: no next request here
                self.close_connection = True
        except OSError:  # a timeout, a reset, a TLS record that is not one: its connection
            self.close_connection = True
        except (HeadersTooLarge, MalformedHeaders) as exc:
            reader.budget = None
            self.close_connection = True
            # (parse_request may not have run: what send_error needs)
            self.request_version = "HTTP/1.1"
            self.requestline = self.command = ""
            status, message = (431, "request line and headers are over the broker's limit "
                                    f"of {self.limits.header_bytes} bytes") \
                if isinstance(exc, HeadersTooLarge) else (400, str(exc))
            with contextlib.suppress(OSError):
                self.send_error(status, message)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.rfile.budget = None  # the headers are in: the body has limits of its own
        if ok:
            self.server.waiting(self.connection, False)
            self.rfile.until(self.limits.body_seconds)
        return ok


def _end(sock: socket.socket) -> None:
    """End a connection another thread serves: its reads and writes fail at once, and that
    thread closes it. (The plain socket's shutdown: SSLSocket's own would drop the TLS
    state under the thread that is using it.)"""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@dataclass
class _Connection:
    sock: Any
    host: str
    waiting: bool = True  # for its next request (idle, or its headers still arriving)
    since: float = field(default_factory=time.monotonic)
    evicted: bool = False


@functools.lru_cache(maxsize=8)
def _networks(proxies: frozenset[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def trusted_proxy(host: str, proxies: frozenset[str]) -> bool:
    """Whether ``host`` is one of the load balancers (addresses or networks) trusted to
    say, in X-Forwarded-For, whose request it passes on."""
    if not proxies:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in network for network in _networks(proxies))


def client_address(text: str) -> str | None:
    """An X-Forwarded-For entry as an address (canonical form), or None if it is none."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


class BrokerHTTPServer(ThreadingHTTPServer):
    """Counts connections, in all and per address. At a limit, the connection that has
    waited longest for its next request (idle between requests, or its headers still
    arriving) is closed to make room: keeping connections open costs a client nothing
    then, and a prolog's connection, which sends its request at once, always gets in. Only
    when every connection is in the middle of a request does a new one get a 503."""

    daemon_threads = True  # a connection left open never keeps the broker from stopping
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn

    def __init__(self, address: Any, handler: type[BaseHTTPRequestHandler],
                 limits: ConnectionLimits | None = None,
                 tls: ServerTLS | None = None) -> None:
        super().__init__(address, handler)
        self.limits = limits or ConnectionLimits()
        self.tls = tls  # connections are TLS (its current context), handshaken by their thread
        self.threads = ThreadCache(self.process_request_thread)
        self._connections: dict[int, _Connection] = {}  # by id() of the socket
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        self.draining = False  # stopping: requests in progress finish, no new one starts

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        try:
            return self.tls.context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False), address
        except (OSError, ValueError):
            sock.close()
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Count the connection in (making room if need be), or answer 503 and close it:
        either way a new connection costs the accepting thread no wait."""
        host = str(client_address[0]) if client_address else "-"
        with self._lock:
            why, victim = self._room_for(host)
            if why is None:
                self._count(_Connection(request, host), +1)
        if victim is not None:
            _end(victim.sock)  # its thread sees the end and goes
        if why is None:
            return True
        if not isinstance(request, ssl.SSLSocket):  # (TLS: closed without an answer)
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(busy_answer(f"{why}; try again shortly"))
        return False

    def _room_for(self, host: str) -> tuple[str | None, _Connection | None]:
        """(None, a connection evicted to make room or None), or (why not, None)."""
        full_host = (self._open.get(host, 0) >= self.limits.per_client
                     and not trusted_proxy(host, self.limits.trusted_proxies))
        if not full_host and len(self._connections) < self.limits.connections:
            return None, None
        candidates = [c for c in self._connections.values() if c.waiting and not c.evicted
                      and (c.host == host or not full_host)]
        if not candidates:
            return ((f"{self.limits.per_client} connections are open from {host}, the "
                     "limit per client") if full_host else
                    f"the broker has {len(self._connections)} connections open, its "
                    "limit"), None
        victim = min(candidates, key=lambda c: c.since)
        victim.evicted = True
        self._count(victim, -1)
        return None, victim

    def _count(self, connection: _Connection, step: int) -> None:
        if step > 0:
            self._connections[id(connection.sock)] = connection
        else:
            self._connections.pop(id(connection.sock), None)
        left = self._open.get(connection.host, 0) + step
        if left > 0:
            self._open[connection.host] = left
        else:
            self._open.pop(connection.host, None)

    def waiting(self, sock: Any, waiting: bool) -> None:
        """A connection's handler says whether it waits for a request or serves one."""
        with self._lock:
            connection = self._connections.get(id(sock))
            if connection is not None:
                connection.waiting, connection.since = waiting, time.monotonic()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self.threads.submit(request, client_address)
        except BaseException:
            self._gone(request)  # no thread will ever end it: counted out here
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._gone(request)

    def _gone(self, request: Any) -> None:
        with self._lock:
            connection = self._connections.get(id(request))
            if connection is not None and not connection.evicted:
                self._count(connection, -1)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An error a connection's thread did not expect: one line, not a traceback on
        stderr per client (any client could fill the log with them)."""
        import logging
        import sys

        exc = sys.exc_info()[1]
        logging.getLogger("slurm_qpu.broker").warning(
            "connection from %s ended by %s: %s", client_address[0] if client_address else "-",
            type(exc).__name__, exc)

    def open_connections(self) -> int:
        return len(self._connections)

    def serving(self) -> int:
        """Connections in the middle of a request."""
        with self._lock:
            return sum(1 for c in self._connections.values() if not c.waiting)

    def server_close(self) -> None:
        super().server_close()
        self.threads.close()

    def drain(self, timeout: float) -> int:
        """Once the server no longer accepts: let the requests in progress finish, within
        ``timeout`` seconds, and end every connection. A connection waiting for a request
        is closed (and each busy one after its answer); a request read from now on is not
        taken. Returns once no connection is left (its thread is done with it), or at the
        deadline, having cut what is still busy: how many requests were cut."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = [c for c in self._connections.values() if c.waiting]
                busy = [c for c in self._connections.values() if not c.waiting]
            late = time.monotonic() >= deadline
            for connection in idle + (busy if late else []):
                _end(connection.sock)  # its thread sees the end
            if not idle and not busy:
                return 0
            if late:
                return len(busy)
            time.sleep(0.02)
