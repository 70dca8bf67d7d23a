"""One request and its answer, as the broker's routes see it: the body read bounded and
counted in the broker's memory budget, answers in the shapes the SDKs read, and the
checks every request gets (its path, its encoded body, its token).

The routes (node API: nodeapi.py; the job proxy: proxy.py) and the server's dispatch
(server.py) share these.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from slurm_qpu.broker.admission import Holding
from slurm_qpu.broker.httpserver import (
    CHUNK,
    BrokerRequestHandler,
    Refused,
    RequestBody,
    client_address,
    trusted_proxy,
)

if TYPE_CHECKING:
    from slurm_qpu.broker.server import Broker
    from slurm_qpu.broker.service import LeaseService


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




class Exchange:
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


class Routes(BrokerRequestHandler):
    """What the broker's routes (nodeapi.py, proxy.py) share: the broker they serve."""

    broker: Broker

    @property
    def service(self) -> LeaseService:
        return self.broker.service

    @property
    def peer(self) -> str:
        """The client's address: the connection's, or behind a trusted load balancer the
        last X-Forwarded-For entry (the one it appended; any earlier ones are the client's
        own words). Every per-address bound and the audit line use it."""
        address = str(self.client_address[0]) if self.client_address else "-"
        if trusted_proxy(address, self.broker.limits.trusted_proxies):
            forwarded = self.headers.get_all("X-Forwarded-For") or []
            last = client_address(",".join(forwarded).split(",")[-1])
            if last:  # (anything but an address: the load balancer's own)
                return last
        return address
