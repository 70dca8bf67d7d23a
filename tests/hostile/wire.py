"""Raw HTTP for attacks: bytes exactly as written (no client library fixes them up), and
the broker's answers read back as they come, however many there are."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlsplit

from harness import Answer, wait_for

wait_until = wait_for  # poll a predicate until it holds

Reply = Answer  # one answer as the broker sent it


def connect(url: str, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the broker (from the address ``source``, any 127.x.y.z on
    loopback: a client on another host, as far as the broker can tell)."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    return sock


def read_replies(sock: socket.socket, timeout: float = 5.0, settle: float = 0.5,
                 expect: int | None = None) -> tuple[list[Reply], bool]:
    """Every answer until the broker closes the connection or is silent: for ``timeout``
    seconds before its first answer, for ``settle`` seconds after a complete one (pipelined
    answers and a close follow at once), or until ``expect`` answers are in. And whether it
    closed (as far as could be seen)."""
    data, closed = b"", False
    sock.settimeout(timeout)
    while True:
        try:
            more = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not more:
            closed = True
            break
        data += more
        replies, rest = parse(data)
        if expect is not None and len(replies) >= expect:
            break
        if replies and not rest:
            sock.settimeout(settle)
    replies, _ = parse(data)
    return replies, closed


def parse(data: bytes) -> tuple[list[Reply], bytes]:
    """The complete answers at the start of ``data``, and what follows them."""
    replies = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        replies.append(Reply(status, headers, rest[:length]))
        data = rest[length:]
    return replies, data


def exchange(url: str, data: bytes, *, source: str | None = None, timeout: float = 5.0,
             settle: float = 0.5, expect: int | None = None) -> tuple[list[Reply], bool]:
    """Send ``data`` on a new connection; every answer, and whether the broker closed."""
    with connect(url, source) as sock:
        # it may answer and close before reading everything: read the answer all the same
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_replies(sock, timeout, settle, expect)


def status(url: str, data: bytes, source: str | None = None) -> int:
    """The status of the one answer to ``data`` (sent on a new connection)."""
    replies, _ = exchange(url, data, source=source, expect=1)
    assert len(replies) == 1, replies
    return replies[0].status


def request(method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes = b"", length: bool = True) -> bytes:
    """One request's bytes (Content-Length added for a body unless ``length`` is false)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: broker"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
