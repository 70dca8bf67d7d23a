"""Sockets whose every wait ends by a deadline: the node client's connection to the broker.

A socket timeout bounds one wait, not a request: a broker that accepts and never answers
holds a reader for the whole timeout, and one that drips a byte a second holds it forever
(every wait ends in time). Here each send and receive first sets the socket's timeout to
what is left of the attempt (``left()``), so the attempt ends when its time does, however
the peer behaves. CPython applies a socket timeout to a whole call (a ``sendall``, a
connect, a TLS handshake or read), so one call never outlives the time it was given.

Imported only when a request is made: the prolog's imports stay light (BENCHMARKS.md).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any


class Bounded(socket.socket):
    """A connected socket whose sends and receives wait at most ``left()`` seconds."""

    left: Callable[[], float] | None = None  # what is left of the attempt; None: no bound

    def bound(self) -> None:
        """Set the timeout to the time left; TimeoutError when there is none."""
        if self.left is None:
            return
        remaining = self.left()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.settimeout(remaining)

    def recv(self, *args: Any, **kwargs: Any) -> Any:
        self.bound()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args: Any, **kwargs: Any) -> Any:
        self.bound()
        return super().recv_into(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self.bound()
        return super().send(*args, **kwargs)

    def sendall(self, *args: Any, **kwargs: Any) -> Any:
        self.bound()
        return super().sendall(*args, **kwargs)


class BoundedTLS(Bounded, ssl.SSLSocket):
    """The same over TLS (an SSLContext's ``sslsocket_class``): its ``sendall`` sends
    record by record through ``send``, each bounded."""


def connect(host: str, port: int, left: Callable[[], float],
            tls: ssl.SSLContext | None = None) -> Bounded:
    """A connection to ``host``:``port`` made within ``left()`` seconds (the TLS handshake
    included), whose later sends and receives are bounded by ``left`` too."""
    remaining = left()
    if remaining <= 0:
        raise TimeoutError("timed out")
    plain = socket.create_connection((host, port), remaining)
    sock = Bounded(fileno=plain.detach())
    try:
        # the request's headers and body go out in separate writes: without this the body
        # waits for the delayed ACK of the headers (what http.client's own connect does)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.left = left
        if tls is None:
            return sock
        sock.bound()  # the handshake gets what is left after the connect
        tls.sslsocket_class = BoundedTLS
        wrapped = tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    assert isinstance(wrapped, BoundedTLS)
    wrapped.left = left
    return wrapped
