"""What every fake vendor API in this directory shares: injected faults served first, and a
client rigged so that every attempt times out on a simulated clock; a fake served over real
HTTP."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


@contextlib.contextmanager
def served(handle: Callable[[httpx.Request], httpx.Response]) -> Iterator[str]:
    """A fake's handler behind a real HTTP server on loopback (for what does not take an
    httpx transport: the broker's proxy, qrmi); yields the server's root URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = f"http://{self.headers.get('Host', 'localhost')}{self.path}"
            request = httpx.Request(self.command, url, headers=list(self.headers.items()),
                                    content=body)
            try:
                response = handle(request)
            except Exception as exc:  # a fake's bug shows in the client's error, not a hang
                response = httpx.Response(500, text=f"fake vendor failed: {exc!r}")
            content = response.read()
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
