"""The proxy's connections to the vendors: keep-alive connections on http.client, pooled
per vendor host.

Why not httpx, which the resource types use for their few calls per job: the proxy
forwards every request of every job and reads none of the bytes it streams, and httpx's
request and response models, header normalisation and h11 state machine cost the broker
~0.9 ms of CPU per proxied request, half of its share (BENCHMARKS.md, item 4: 1.7 ms of
broker CPU per small request before, 0.8 ms after); http.client costs a fraction of
that, and passes a body on as each read of the socket brings it. What httpx gave the proxy and this
keeps: TLS verified with the vendor clients' context (``vendor.http.tls_context``),
separate connect and read timeouts, the environment's proxy settings (``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``; https through a CONNECT tunnel), no redirects followed,
idle connections dropped after a few seconds or when the vendor closed them, and the
names of its errors in messages (``ConnectError``, ``ReadTimeout``, ...).
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)
MAX_IDLE = 32  # idle connections kept per vendor host
BLOCK = 256 * 1024  # bytes copied per read when relaying a body

Body = bytes | Iterable[bytes] | None


class UpstreamError(Exception):
    """No answer from the vendor. ``timeout``: it was too slow (else: unreachable, or it
    broke the connection); the message is the error's name, as httpx named it."""

    def __init__(self, name: str, *, timeout: bool) -> None:
        super().__init__(name)
        self.timeout = timeout


class _Http(http.client.HTTPConnection):
    read_timeout: float | None = None

    def connect(self) -> None:
        super().connect()  # with the connect timeout (and the CONNECT tunnel, if any)
        self.sock.settimeout(self.read_timeout)


class _Https(http.client.HTTPSConnection):
    read_timeout: float | None = None

    def connect(self) -> None:
        super().connect()  # TCP, tunnel and TLS handshake, with the connect timeout
        self.sock.settimeout(self.read_timeout)


def request_target(path: str, query: str) -> str:
    """The request target as bytes on the wire, in ASCII: a character outside printable
    ASCII (http.server reads the request line as Latin-1) is sent percent-encoded as the
    byte the client sent."""
    target = (path or "/") + (f"?{query}" if query else "")
    if target.isascii() and target.isprintable() and " " not in target:
        return target
    return "".join(c if "!" <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode(
        "latin-1" if ord(c) < 256 else "utf-8")) for c in target)


def _proxy_for(proxies: dict[str, str], scheme: str, host: str) -> tuple[str, int] | None:
    """The HTTP proxy ``proxies`` (the environment's) name for ``scheme``://``host``."""
    url = proxies.get(scheme)
    # proxy_bypass_environment: NO_PROXY as urllib (and httpx) read it; not in typeshed
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not url or bypass(host, proxies):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "", parts.port or 80


@dataclass
class Answer:
    """A vendor's answer whose body is still to be read: ``blocks`` to stream it,
    ``read`` to take it whole; ``close`` (always) puts the connection back in the pool
    when the body was read to its end, or closes it."""

    status: int
    headers: list[tuple[str, str]]
    _response: http.client.HTTPResponse
    _conn: http.client.HTTPConnection
    _pool: Pool
    _key: tuple[str, str, int]
    _done: bool = False

    def header(self, name: str) -> str | None:
        value: str | None = self._response.getheader(name)
        return value

    def blocks(self, size: int = BLOCK) -> Iterator[bytes]:
        """The body as it arrives (de-chunked, still content-encoded): each block is what
        one read of the socket gave, up to ``size`` bytes, so the relay passes on what
        came without waiting for a block to fill."""
        try:
            while True:
                block = self._response.read1(size)
                if not block:
                    # read1 leaves a body read to its exact length open: read() closes
                    # it, which marks the connection free for the next request
                    self._response.read()
                    return
                yield block
        except TimeoutError:
            raise UpstreamError("ReadTimeout", timeout=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamError(_name(exc, "ReadError"), timeout=False) from None

    def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it is over ``limit`` bytes."""
        out = bytearray()
        for block in self.blocks():
            out += block
            if len(out) > limit:
                return None
        return bytes(out)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._response.isclosed() and not self._response.will_close:
            self._pool._checkin(self._key, self._conn)
        else:
            self._response.close()
            self._conn.close()

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has data or an end of file waiting (poll, not select: a broker
    with many connections has descriptors past select's 1024)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _name(exc: BaseException, default: str) -> str:
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.BadStatusLine,
                        http.client.IncompleteRead, http.client.LineTooLong)):
        return "RemoteProtocolError"
    return default


class Pool:
    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.clock = clock
        # read once: scanning the environment costs ~1 ms, and it does not change
        self.proxies = urllib.request.getproxies_environment()
        self._idle: dict[tuple[str, str, int], list[tuple[float, http.client.HTTPConnection]]] \
            = {}
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ connections

    def _new(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        scheme, host, port = key
        proxy = _proxy_for(self.proxies, scheme, host)
        conn: _Http | _Https
        if scheme == "https":
            from slurm_qpu.vendors.common.http import tls_context

            if proxy is not None:
                conn = _Https(proxy[0], proxy[1], timeout=self.connect_timeout,
                              context=tls_context())
                conn.set_tunnel(host, port)
            else:
                conn = _Https(host, port, timeout=self.connect_timeout, context=tls_context())
        else:
            conn = _Http(*(proxy or (host, port)), timeout=self.connect_timeout)
            conn.absolute = proxy is not None  # type: ignore[attr-defined]
        conn.read_timeout = self.read_timeout
        return conn

    def _checkout(self, key: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to ``key`` that the vendor has not closed (True), else a new
        one (False)."""
        now = self.clock()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    break
                since, conn = idle.pop()
            sock = conn.sock
            # readable while idle: the vendor closed it (or sent what it should not have)
            if sock is not None and now - since < KEEPALIVE_EXPIRY and not _readable(sock):
                return conn, True
            conn.close()
        return self._new(key), False

    def _checkin(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._closed or len(idle) >= MAX_IDLE:
                conn.close()
                return
            idle.append((self.clock(), conn))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, conn in conns:
                conn.close()

    # ------------------------------------------------------------------ requests

    def send(self, method: str, url: str, headers: Mapping[str, str], body: Body = None,
             ) -> Answer:
        """Send one request (``body``: bytes, or an iterable of blocks with the
        Content-Length in ``headers``) and read the answer's status and headers."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        key = (scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
        target = request_target(parts.path, parts.query)
        replayable = body is None or isinstance(body, bytes)
        while True:
            conn, reused = self._checkout(key)
            if conn.sock is None:
                try:
                    conn.connect()
                except TimeoutError:
                    conn.close()
                    raise UpstreamError("ConnectTimeout", timeout=True) from None
                except OSError:
                    conn.close()
                    raise UpstreamError("ConnectError", timeout=False) from None
            # a plain-HTTP proxy takes the full URL
            wire = f"{scheme}://{parts.netloc}{target}" if getattr(conn, "absolute", False) \
                else target
            try:
                conn.request(method, wire, body=body, headers=dict(headers))
                response = conn.getresponse()
            except TimeoutError:
                conn.close()
                raise UpstreamError("ReadTimeout", timeout=True) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and replayable:
                    continue  # the vendor closed the idle connection as we reused it
                raise UpstreamError(_name(exc, "WriteError" if isinstance(
                    exc, (BrokenPipeError, ConnectionResetError)) else "ReadError"),
                    timeout=False) from None
            return Answer(response.status, response.getheaders(), response, conn, self, key)
