"""A small threaded HTTP server with a router, request log and fault injection.

The standard library is enough: vendor SDKs speak plain HTTP/1.1 JSON to the emulator, and
a framework dependency would be one more thing for HPC sites to install. Each vendor API is
a ``Service``: a URL prefix plus routes; the ``Server`` dispatches to them in order.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the service prefix
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str  # scheme://host:port of this server, as the client addressed it
    params: dict[str, str] = field(default_factory=dict)  # from {name} route segments
    raw_query: str = ""  # as sent: signatures cover parameters parse_qs drops (?delete)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, "request body is not JSON") from None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode())

    @classmethod
    def text(cls, value: str, status: int = 200) -> Response:
        return cls(status, value.encode(), "text/plain; charset=utf-8")

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", "")


class HttpError(Exception):
    """Raised by a route: answered with the service's error body shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], Response]
_SEGMENT = re.compile(r"\{(\w+)\}")


def _pattern(path: str) -> re.Pattern[str]:
    regex = _SEGMENT.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", path)
    return re.compile(f"^{regex}/?$")


class Service:
    """One vendor API mounted under a URL prefix. Subclasses add routes in __init__ and
    may override ``error`` to answer in their API's error shape."""

    name = "service"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.maintenance: set[str] = set()  # QPU names reported as under maintenance

    def qpu_names(self) -> list[str]:
        """The QPUs this service offers (for the maintenance switch)."""
        return []

    def qrmi_resources(self, base_url: str) -> list[dict[str, Any]]:
        """qrmi_config.json entries (name, type, environment) for this service's QPUs when
        the emulator is reached at ``base_url``."""
        return []

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes.append((method, _pattern(path), handler))

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/") or not self.prefix

    def error(self, status: int, message: str) -> Response:
        return Response.json({"errors": [{"code": str(status), "message": message}],
                              "status_code": status}, status)

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if method != request.method:
                continue
            request.params = match.groupdict()
            try:
                return handler(request)
            except HttpError as exc:
                return self.error(exc.status, exc.message)
        if allowed:
            return self.error(405, f"method {request.method} not allowed on {request.path}")
        return self.error(404, f"no route {request.method} {request.path}")


@dataclass
class Fault:
    """Misbehaviour injected for reliability tests. ``path`` is a regular expression
    searched in the full request path; ``count`` None means until cleared."""

    path: str = ""
    method: str | None = None
    status: int | None = None  # answer with this HTTP status (e.g. 503)
    delay: float = 0.0  # seconds to wait first (latency; a long one is a timeout)
    count: int | None = None
    message: str = "injected fault"

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and re.search(self.path, path) is not None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int
    headers: dict[str, str]


class Server:
    """Dispatches to services by prefix (longest first); ``/_emulator`` is the control API."""

    def __init__(self, services: Iterable[Service]) -> None:
        self.services = sorted(services, key=lambda s: len(s.prefix), reverse=True)
        self.faults: list[Fault] = []
        self.log: list[LoggedRequest] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.controls: dict[str, Callable[[Request], Response]] = {
            "faults": self._control_faults, "requests": self._control_requests,
            "maintenance": self._control_maintenance}

    # -- fault injection ---------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def _control_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
        elif request.method == "POST":
            spec = request.json()
            if not isinstance(spec, dict):
                raise HttpError(400, "a fault is a JSON object")
            try:
                self.inject(Fault(**spec))
            except TypeError as exc:
                raise HttpError(400, f"bad fault: {exc}") from None
        with self.lock:
            return Response.json([vars(f) for f in self.faults])

    def set_maintenance(self, qpu: str, on: bool) -> list[str]:
        """Report ``qpu`` as under maintenance (or back online) in every service offering
        it; the names of those services."""
        hit = []
        for service in self.services:
            if qpu in service.qpu_names():
                (service.maintenance.add if on else service.maintenance.discard)(qpu)
                hit.append(service.name)
        return hit

    def _control_maintenance(self, request: Request) -> Response:
        if request.method == "POST":
            spec = request.json()
            if not isinstance(spec, dict) or not isinstance(spec.get("qpu"), str):
                raise HttpError(400, 'expected {"qpu": NAME, "on": true|false}')
            if not self.set_maintenance(spec["qpu"], bool(spec.get("on", True))):
                raise HttpError(404, f"no service offers a QPU named {spec['qpu']}")
        return Response.json({s.name: sorted(s.maintenance) for s in self.services})

    def _control_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.lock:
                self.log.clear()
        with self.lock:
            return Response.json([vars(r) for r in self.log])

    # -- dispatch ------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        full = request.path
        if full.startswith("/_emulator/"):
            control = self.controls.get(full.removeprefix("/_emulator/").split("/")[0])
            if control is None:
                return Response.json({"error": f"no control {full}"}, 404)
            request.path = full.removeprefix("/_emulator")
            try:
                return control(request)
            except HttpError as exc:
                return Response.json({"error": exc.message}, exc.status)
        service = next((s for s in self.services if s.owns(full)), None)
        fault = self._take_fault(request.method, full)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if service is None:
            return Response.json({"error": f"nothing is served at {full}"}, 404)
        if fault is not None and fault.status:
            return service.error(fault.status, fault.message)
        request.path = full[len(service.prefix):] or "/"
        return service.dispatch(request)

    def record(self, request: Request, path: str, status: int) -> None:
        with self.lock:
            self.log.append(LoggedRequest(request.method, path, status,
                                          {k.lower(): v for k, v in request.headers.items()}))
            del self.log[:-5000]  # bounded: the emulator may run for days in a lab

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; return the base URL."""
        self._httpd = _HTTPServer((host, port), _handler_class(self))
        # a short poll interval: stop() waits for it, and tests start many servers
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05},
                                        name="slurm-qpu-emulator")
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self, host: str, port: int) -> None:
        self._httpd = _HTTPServer((host, port), _handler_class(self))
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is no error of the emulator's (socketserver
        would print a traceback for it); anything else goes to the log."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        logging.getLogger("slurm_qpu_emulator").exception(
            "error answering %s", client_address)


def _handler_class(server: Server) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "slurm-qpu-emulator"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is the record; stderr noise helps nobody

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            host = self.headers.get("Host") or server.url.removeprefix("http://")
            request = Request(self.command, url.path, parse_qs(url.query), self.headers,
                              body, f"http://{host}", raw_query=url.query)
            try:
                if self.headers.get("Content-Encoding", "").lower() == "gzip" and body:
                    try:
                        request.body = gzip.decompress(body)  # the Pasqal SDK gzips bodies
                    except (OSError, EOFError):  # gzip.BadGzipFile is an OSError
                        raise HttpError(400, "Content-Encoding says gzip but the body is "
                                             "not gzip data") from None
                response = server.handle(request)
            except HttpError as exc:
                response = Response.json({"error": exc.message}, exc.status)
            except Exception as exc:  # a bug in the emulator must look like a 500, not hang
                response = Response.json({"errors": [{"code": "internal",
                                                      "message": f"{type(exc).__name__}: {exc}"}]},
                                         500)
            server.record(request, url.path, response.status)
            self.send_response(response.status, HTTPStatus(response.status).phrase
                               if response.status in HTTPStatus._value2member_map_ else "")
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return _Handler


def _read_chunked(stream: Any) -> bytes:
    out = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        out += stream.read(size)
        stream.readline()


def bearer(request: Request) -> str | None:
    auth = request.header("Authorization")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def first(values: Mapping[str, list[str]], key: str) -> str | None:
    v = values.get(key)
    return v[0] if v else None
