"""The servers that benchmark section 8 (benchmarks/http_servers.py) compares, each serving
the same two tiny apps, and the raw-socket load client that drives them. Run as
subprocesses with the Python of the section's private venv, where the candidates are
installed: they are no dependency of the project, so nothing here imports one at module
level (``importlib`` inside the process that serves with it), and the benchmark process
itself never does.

    python -m benchmarks.http_candidates serve KIND PORT [--cert PEM --key PEM]
    python -m benchmarks.http_candidates load PORT CONCURRENCY START WARMUP SECONDS [--ca PEM]

The apps are the same in every server:

* the route: reads a small JSON body, runs ``work()`` (a Python loop, BENCH_WORK_N turns,
  which the section calibrates to about 0.3 ms: what the lease logic of a prolog's request
  costs the broker's interpreter) and answers about 500 bytes of JSON. Threaded servers (the
  broker's own, cheroot, granian's WSGI interface) run it in the connection's thread;
  asyncio servers (uvicorn, hypercorn, aiohttp) in a pool of 64 threads, which is how the
  broker's synchronous routes would run under them;
* the probe app (BENCH_PROBE=1), for the hostile-client probes: it answers with
  ``X-App: called``, the path it saw, how much of the body it read and the X-Dup headers it
  was given; on ``/noread`` it answers without reading the body. With BENCH_TIMEOUTS
  (header, idle and body seconds) each server's own time limits, where it has them, are
  set as close to those as it allows.

``current`` is the broker's server (slurm_qpu.broker.httpserver, from the checkout: the
section puts its ``src`` on PYTHONPATH) with its framing (RequestBody), its limits and the
broker's way of answering (Exchange.send, Exchange.error), TLS as ``--tls-cert`` gives it.

The load client: CONCURRENCY tasks, each running back-to-back cycles of two POSTs (a
prolog's acquire, then an epilog's release), each on a new TCP connection that the client
closes after the answer (with ``--ca``, a new TLS handshake that verifies the server; no
session is resumed). It prints, as JSON, the latencies of the cycles that ended inside
[START + WARMUP, START + WARMUP + SECONDS] and the errors there. No HTTP library is
involved on the client side.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

KINDS = ("current", "uvicorn-httptools", "uvicorn-h11", "hypercorn", "aiohttp", "cheroot",
         "granian")
WORK_N = int(os.environ.get("BENCH_WORK_N", "7000"))
PROBE = os.environ.get("BENCH_PROBE") == "1"
APP_WAIT = float(os.environ.get("BENCH_APP_WAIT", "60"))  # the probe app's wait for a body
POOL_THREADS = 64
BACKLOG = 1024
ANSWER = {"state": "acquired", "job_id": 0, "qpus": ["sim_a"], "user": "alice",
          "expires": "2026-12-01T00:00:00Z",
          "env": {"SLURM_QPU_BROKER": "http://broker.example:8750", "QPU_TOKEN": "x" * 64,
                  "QPU_NAMES": "sim_a", "QPU_TYPES": "qiskit-aer"},
          "pad": ""}
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def timeouts() -> tuple[float, float, float] | None:
    """(header, idle, body) seconds the probes want, or None: each server's defaults."""
    text = os.environ.get("BENCH_TIMEOUTS", "")
    if not text:
        return None
    header, idle, body = (float(x) for x in text.split(","))
    return header, idle, body


def work(n: int = WORK_N) -> int:
    """The route's CPU: a pure-Python loop (it holds the interpreter lock, as route code
    does)."""
    x = 0
    for i in range(n):
        x += i * i
    return x


def handle(body: bytes) -> bytes:
    """The synchronous route."""
    data = json.loads(body) if body else {}
    work()
    answer = dict(ANSWER, job_id=data.get("job", 0))
    answer["pad"] = "p" * max(0, 500 - len(json.dumps(answer)))
    return json.dumps(answer).encode()


def probe_answer(path: str, headers: list[tuple[str, str]], body: bytes | None,
                 error: str = "") -> bytes:
    return json.dumps({"path": path, "dup": [[k, v] for k, v in headers if "dup" in k.lower()],
                       "body_len": None if body is None else len(body),
                       "error": error}).encode()


# ---------------------------------------------------------------------- ASGI and WSGI apps

_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="route")
    return _pool


async def _asgi_body(receive: Receive) -> tuple[bytes, str]:
    body, error = b"", ""
    try:
        while True:
            message = await asyncio.wait_for(receive(), APP_WAIT)
            if message["type"] == "http.disconnect":
                return body, "the client went away"
            body += message.get("body", b"")
            if not message.get("more_body"):
                return body, error
    except TimeoutError:
        return body, f"no whole body within {APP_WAIT:g} s"


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    extra: list[tuple[bytes, bytes]] = []
    if PROBE:
        path = str(scope["path"])
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        body: bytes | None = None
        error = ""
        if path != "/noread":
            body, error = await _asgi_body(receive)
        out = probe_answer(path, headers, body, error)
        extra = [(b"x-app", b"called")]
    else:
        body, _ = await _asgi_body(receive)
        out = await asyncio.get_running_loop().run_in_executor(pool(), handle, body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode()), *extra]})
    await send({"type": "http.response.body", "body": out})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    extra: list[tuple[str, str]] = []
    if PROBE:
        path = str(environ.get("PATH_INFO", ""))
        headers = [(k, str(v)) for k, v in environ.items() if k.startswith("HTTP_")]
        body: bytes | None = None
        error = ""
        if path != "/noread":
            try:
                body = stream.read(int(length)) if length else stream.read()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        out = probe_answer(path, headers, body, error)
        extra = [("X-App", "called")]
    else:
        out = handle(stream.read(int(length)) if length else b"")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out))), *extra])
    return [out]


# ---------------------------------------------------------------------- the servers

def serve_current(port: int, cert: str, key: str) -> None:
    """The broker's BrokerHTTPServer and BrokerRequestHandler, answering as the broker's
    dispatch does (server.py: RequestBody first, refusals as the broker's JSON, what a
    route left of a body dropped or the connection closed)."""
    from slurm_qpu.broker.admission import Budget
    from slurm_qpu.broker.exchange import Exchange
    from slurm_qpu.broker.httpserver import (
        BrokerHTTPServer,
        BrokerRequestHandler,
        Refused,
        RequestBody,
    )
    from slurm_qpu.broker.limits import ConnectionLimits
    from slurm_qpu.broker.tls import ServerTLS

    limits = ConnectionLimits()
    given = timeouts()
    if given is not None:
        limits.header_seconds, limits.idle_seconds, limits.body_seconds = given
    memory = Budget(256 * 1024 * 1024, 64 * 1024 * 1024)

    class Handler(BrokerRequestHandler):
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dispatch(self) -> None:
            with memory.hold(str(self.client_address[0])) as held:
                ex = Exchange(self, held)
                try:
                    ex.body = RequestBody(self.headers, self.rfile)
                    if PROBE:
                        path = self.path
                        body = None if path == "/noread" else \
                            ex.whole_body(1024 * 1024, counted=False)
                        ex.send(200, probe_answer(path, list(self.headers.items()), body),
                                headers={"X-App": "called"})
                    else:
                        ex.send(200, handle(ex.whole_body(64 * 1024, counted=False)))
                except Refused as exc:
                    if exc.close:
                        self.close_connection = True
                    if not ex.responded:
                        ex.error(exc.status, exc.message,
                                 {"Connection": "close"} if self.close_connection else None)
                    else:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True
                finally:
                    if ex.body is None or not ex.body.finish():
                        self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    Handler.limits = limits
    tls = ServerTLS(cert, key) if cert else None
    BrokerHTTPServer(("127.0.0.1", port), Handler, limits, tls).serve_forever()


def serve_uvicorn(port: int, cert: str, key: str, http: str) -> None:
    uvicorn: Any = importlib.import_module("uvicorn")
    options: dict[str, Any] = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
    given = timeouts()
    if given is not None:
        options["timeout_keep_alive"] = given[1]  # its only read time limit
    uvicorn.run(asgi_app, host="127.0.0.1", port=port, http=http, loop="asyncio",
                access_log=False, log_level="warning", backlog=BACKLOG, lifespan="off",
                timeout_graceful_shutdown=1, **options)


def serve_hypercorn(port: int, cert: str, key: str) -> None:
    config: Any = importlib.import_module("hypercorn.config").Config()
    serve: Any = importlib.import_module("hypercorn.asyncio").serve
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = BACKLOG
    config.accesslog = None
    config.graceful_timeout = 1
    if cert:
        config.certfile, config.keyfile = cert, key
    given = timeouts()
    if given is not None:
        config.read_timeout, config.keep_alive_timeout = given[0], given[1]
    asyncio.run(serve(asgi_app, config))


def serve_aiohttp(port: int, cert: str, key: str) -> None:
    web: Any = importlib.import_module("aiohttp.web")

    async def route(request: Any) -> Any:
        extra: dict[str, str] = {}
        if PROBE:
            path = str(request.path)
            headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in request.raw_headers]
            body: bytes | None = None
            error = ""
            if path != "/noread":
                try:
                    body = await asyncio.wait_for(request.read(), APP_WAIT)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
            out = probe_answer(path, headers, body, error)
            extra = {"X-App": "called"}
        else:
            body = await request.read()
            out = await asyncio.get_running_loop().run_in_executor(pool(), handle, body)
        return web.Response(body=out, content_type="application/json", headers=extra)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    context = None
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    given = timeouts()
    options = {"keepalive_timeout": given[1]} if given is not None else {}
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, backlog=BACKLOG,
                ssl_context=context, print=None, shutdown_timeout=1, **options)


def serve_cheroot(port: int, cert: str, key: str) -> None:
    wsgi: Any = importlib.import_module("cheroot.wsgi")
    given = timeouts()
    server = wsgi.Server(("127.0.0.1", port), wsgi_app, numthreads=POOL_THREADS,
                         request_queue_size=BACKLOG,
                         timeout=given[0] if given is not None else 10)
    if cert:
        adapter: Any = importlib.import_module("cheroot.ssl.builtin").BuiltinSSLAdapter
        server.ssl_adapter = adapter(cert, key)
    server.start()


def serve_granian(port: int, cert: str, key: str) -> None:
    """granian's command (Rust: parsing, TLS and the connections outside the interpreter),
    its WSGI interface with 64 blocking threads (the routes are synchronous); this process
    becomes it, so its PID is the server's."""
    argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--blocking-threads", str(POOL_THREADS), "--backlog", str(BACKLOG),
            "--log-level", "warning"]
    if cert:
        argv += ["--ssl-certificate", cert, "--ssl-keyfile", key]  # (PKCS#8: as made)
    given = timeouts()
    if given is not None:
        argv += ["--http1-header-read-timeout", str(round(given[0] * 1000))]
    os.execv(sys.executable, [*argv, "benchmarks.http_candidates:wsgi_app"])


SERVERS: dict[str, Callable[[int, str, str], None]] = {
    "current": serve_current,
    "uvicorn-httptools": lambda port, cert, key: serve_uvicorn(port, cert, key, "httptools"),
    "uvicorn-h11": lambda port, cert, key: serve_uvicorn(port, cert, key, "h11"),
    "hypercorn": serve_hypercorn,
    "aiohttp": serve_aiohttp,
    "cheroot": serve_cheroot,
    "granian": serve_granian,
}


# ---------------------------------------------------------------------- load client

BODY = json.dumps({"job": 123456, "qpus": "sim_a", "user": "alice", "uid": 1000,
                   "time_limit": 3600}).encode()
ACQUIRE = (b"POST /v1/leases/123456 HTTP/1.1\r\nHost: broker\r\nContent-Type: "
           b"application/json\r\nAuthorization: MUNGE x\r\nContent-Length: %d\r\n\r\n"
           % len(BODY)) + BODY
RELEASE = ACQUIRE


def answered(data: bytes) -> bool:
    """Whether ``data`` holds a whole 200 answer (ValueError: another answer)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"answered {head[:40]!r}")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    raise ValueError("an answer without Content-Length")


async def request_once(port: int, data: bytes, tls: ssl.SSLContext | None) -> None:
    """One request on a new connection, closed once the answer is in."""
    buf = b""
    if tls is None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, data)
            while not answered(buf):
                more = await loop.sock_recv(sock, 65536)
                if not more:
                    raise ConnectionError("closed before the answer was whole")
                buf += more
        finally:
            sock.close()
        return
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                   server_hostname="127.0.0.1")
    try:
        writer.write(data)
        while not answered(buf):
            more = await reader.read(65536)
            if not more:
                raise ConnectionError("closed before the answer was whole")
            buf += more
    finally:
        writer.close()


async def cycles(port: int, concurrency: int, start: float, warmup: float, seconds: float,
                 ca: str) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=ca) if ca else None
    window = (start + warmup, start + warmup + seconds)
    latencies: list[float] = []
    errors: list[str] = []

    async def job() -> None:
        while time.time() < window[1]:
            began = time.perf_counter()
            try:
                for data in (ACQUIRE, RELEASE):
                    await request_once(port, data, tls)
            except Exception as exc:
                if window[0] <= time.time() <= window[1]:
                    errors.append(f"{type(exc).__name__}: {exc}"[:160])
                await asyncio.sleep(0.01)
                continue
            if window[0] <= time.time() <= window[1]:
                latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.sleep(max(0.0, start - time.time()))
    await asyncio.gather(*(job() for _ in range(concurrency)))
    return {"latencies": latencies, "errors": len(errors),
            "error_kinds": sorted(set(errors))[:3]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.http_candidates")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("kind", choices=KINDS)
    serve.add_argument("port", type=int)
    serve.add_argument("--cert", default="")
    serve.add_argument("--key", default="")
    load = sub.add_parser("load")
    load.add_argument("port", type=int)
    load.add_argument("concurrency", type=int)
    load.add_argument("start", type=float)
    load.add_argument("warmup", type=float)
    load.add_argument("seconds", type=float)
    load.add_argument("--ca", default="")
    args = ap.parse_args(argv)
    if args.command == "serve":
        SERVERS[args.kind](args.port, args.cert, args.key)
        return
    result = asyncio.run(cycles(args.port, args.concurrency, args.start, args.warmup,
                                args.seconds, args.ca))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
