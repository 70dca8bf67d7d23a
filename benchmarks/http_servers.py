"""Item 8: the broker's own HTTP server (slurm_qpu.broker.httpserver) against established
Python HTTP servers, on speed and on what a hostile client gets from each. The project keeps
its own server; this section is the measurement behind that choice, made again by anyone
with ``make bench BENCH_ARGS='--only servers'``.

The candidates: uvicorn with httptools and with h11, hypercorn, aiohttp, cheroot and
granian (its WSGI interface: the broker's routes are synchronous). They are no dependency of
the project: the section makes a venv of its own in its workdir and pip-installs them
there; a candidate whose install fails is reported as not installed and the rest go on. The
broker's server is imported from this checkout. Every server runs in its own process, from
that venv, with the same two tiny apps (benchmarks/http_candidates.py).

Throughput. A cycle is what a job's prolog and epilog ask of the broker: two small POSTs,
each on a new TCP connection, each answered after about 0.3 ms of synchronous route work
(a Python loop calibrated on this machine at the start of the run). 1, 10 and 100 cycles
run at once, back to back, driven by a raw-socket client (one process; two for 10 and
100) that uses no HTTP library. All servers are up for the whole section; in each round
and load they are measured one after the other, the order reversed every other time
(ABBA), so that drift of the shared machine lands on all of them. A candidate's ratio to
the broker's server is taken round by round and the median reported. The broker's
server, uvicorn with httptools and granian are measured with TLS as well (a CA and a
certificate for 127.0.0.1 made for the run, a full handshake per connection, verified by
the client), against the broker's server with TLS. The server's CPU per cycle comes from
/proc (every process of its session).

Behaviour. The byte strings of the hostile-client tier (tests/hostile: request smuggling
framings, malformed header lines, malformed and huge chunks, oversized heads, bodies the
route does not read, a client dripping its head or body, idle connections) are sent to
every server running the probe app, each probe on its own connection, all at once. Each
server's own time limits are set as close to the tier's as it allows (header, idle and
body seconds below); every connection is watched for a few seconds. For each probe the
table gives what the tier expects and what each server did: the answers (the server's
own, or the app's, and whether a smuggled second request reached the app), and whether
and when the connection was closed. The tier also checks the broker's JSON ``message`` of
each refusal, which no other server can write: a refusal with the right status counts here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import processes
from benchmarks.options import Options
from benchmarks.report import Row, Section
from benchmarks.stats import Summary, percentile, ratio
from slurm_qpu_lab import certificates
from slurm_qpu_lab.certificates import Certificates

ROOT = Path(__file__).resolve().parents[1]
CURRENT = "current"  # the broker's server: the baseline
CANDIDATES = ("uvicorn-httptools", "uvicorn-h11", "hypercorn", "aiohttp", "cheroot",
              "granian")
TLS_KINDS = (CURRENT, "uvicorn-httptools", "granian")
PACKAGES: dict[str, tuple[str, ...]] = {
    "uvicorn-httptools": ("uvicorn", "httptools"),
    "uvicorn-h11": ("uvicorn", "h11"),
    "hypercorn": ("hypercorn",),
    "aiohttp": ("aiohttp",),
    "cheroot": ("cheroot",),
    "granian": ("granian",),
}
LOADS = (1, 10, 100)  # cycles at once
ROUTE_MS = 0.3  # the route's CPU per request
WARMUP = 0.3  # seconds of each load run not counted
START_DELAY = 0.6  # the load client's processes start this long after they are launched
WATCH = 5.0  # seconds each probe's connection is watched
PROBE_TIMEOUTS = (1.0, 1.0, 2.0)  # header, idle and body seconds, where a server has them
SAME = 0.1  # a ratio within 1 ± SAME is read as no difference in the conclusion
TITLE = "8. The broker's HTTP server against established ones"
# what pip says when the package index cannot be reached
NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|"
    r"ConnectTimeoutError|ReadTimeoutError|ProxyError|connection broken by|"
    r"No route to host|SSLError|Could not fetch URL", re.IGNORECASE)


# ---------------------------------------------------------------------- the private venv

@dataclass
class Venv:
    """The section's own venv and what pip could install into it."""

    python: Path
    missing: dict[str, str] = field(default_factory=dict)  # candidate -> pip's complaint
    versions: dict[str, str] = field(default_factory=dict)  # package -> version
    network_error: bool = False  # pip could not reach the package index
    pip_output: str = ""

    def has(self, kind: str) -> bool:
        return kind == CURRENT or (kind in PACKAGES and kind not in self.missing)


def _pip(python: Path, packages: Sequence[str]) -> subprocess.CompletedProcess[str]:
    argv = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
            "-q", *packages]
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: pip did not finish within "
                                           "900 s")


def _complaint(output: str) -> str:
    """The lines of pip's output that say why, shortened."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")] or lines[-2:]
    return " ".join(errors)[-400:]


def install(directory: Path, candidates: Sequence[str]) -> Venv:
    """A venv in ``directory`` (made with this Python) with the candidates' packages. A
    candidate whose packages fail to install is left out, with pip's reason."""
    python = directory / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(directory)], text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, check=False)
        if made.returncode != 0:  # the broker's server alone, with this Python
            return Venv(Path(sys.executable), dict.fromkeys(
                candidates, f"no venv could be made: {_complaint(made.stdout + made.stderr)}"))
    venv = Venv(python)
    wanted = sorted({p for c in candidates for p in PACKAGES[c]})
    if not wanted:
        return venv
    done = _pip(python, wanted)
    venv.pip_output = done.stdout + done.stderr
    failed: dict[str, str] = {}
    if done.returncode != 0:
        venv.network_error = bool(NETWORK_TROUBLE.search(venv.pip_output))
        if venv.network_error:  # one package at a time would fail the same way
            trouble = next(line for line in venv.pip_output.splitlines()
                           if NETWORK_TROUBLE.search(line))
            failed = dict.fromkeys(wanted, "pip cannot reach the package index: "
                                   + trouble.strip()[-300:])
        for package in [] if venv.network_error else wanted:
            one = _pip(python, [package])
            if one.returncode != 0:
                failed[package] = _complaint(one.stdout + one.stderr)
    for candidate in candidates:
        reasons = [f"{p}: {failed[p]}" for p in PACKAGES[candidate] if p in failed]
        if reasons:
            venv.missing[candidate] = "; ".join(reasons)
    script = ("import importlib.metadata as m, json, sys\n"
              "def v(p):\n"
              "    try:\n"
              "        return m.version(p)\n"
              "    except m.PackageNotFoundError:\n"
              "        return ''\n"
              "print(json.dumps({p: v(p) for p in sys.argv[1:]}))\n")
    listed = subprocess.run([str(python), "-c", script, *wanted], capture_output=True,
                            text=True, check=False, stdin=subprocess.DEVNULL)
    with contextlib.suppress(ValueError):
        venv.versions = {k: v for k, v in json.loads(listed.stdout).items() if v}
    return venv


def calibrate(ms: float = ROUTE_MS) -> int:
    """Turns of the route's loop that take about ``ms`` here (the candidates' Python is
    this one: their venv is made from it)."""
    from benchmarks.http_candidates import work

    n = 5000
    for _ in range(3):
        samples = []
        for _ in range(100):
            t0 = time.perf_counter()
            work(n)
            samples.append(time.perf_counter() - t0)
        n = max(100, int(n * ms / 1000 / statistics.median(samples)))
    return n


# ---------------------------------------------------------------------- server processes

def session_members(sid: int) -> list[int]:
    """PIDs of every live process of session ``sid`` (a server and whatever it spawned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def session_cpu(sid: int) -> float:
    return sum(processes.cpu_seconds(pid) for pid in session_members(sid))


@dataclass
class LoadRun:
    """One load run of one server: the cycles that ended inside its window."""

    seconds: float
    latencies: list[float]  # ms per cycle
    server_cpu: float  # seconds, inside the window
    errors: int = 0
    error_kinds: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


@dataclass
class Server:
    kind: str
    tls: bool
    process: processes.Process
    port: int
    runs: dict[int, list[LoadRun]] = field(default_factory=dict)  # by load, one per round

    @property
    def name(self) -> str:
        return f"{self.kind} (TLS)" if self.tls else self.kind


def _environment(work_n: int, probe: bool, watch: float = WATCH) -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
           "BENCH_WORK_N": str(work_n), "PYTHONDONTWRITEBYTECODE": "1"}
    if probe:
        env.update(BENCH_PROBE="1", BENCH_TIMEOUTS=",".join(map(str, PROBE_TIMEOUTS)),
                   BENCH_APP_WAIT=str(watch + 30))
    return env


def start_server(workdir: Path, venv: Venv, kind: str, env: dict[str, str],
                 certs: Certificates | None = None, suffix: str = "") -> Server:
    """``kind`` serving in a process of its own (RuntimeError with its log if it does not
    come up); ``certs``: serve TLS with these (slurm_qpu_lab.certificates)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    argv = [str(venv.python), "-m", "benchmarks.http_candidates", "serve", kind, str(port)]
    if certs is not None:
        argv += ["--cert", str(certs.cert), "--key", str(certs.key)]
    name = kind + ("-tls" if certs is not None else "") + suffix
    process = processes.Process(name, workdir, argv, processes.accepts(port), env)
    try:
        process.start(timeout=60.0)
    except RuntimeError:
        stop(process)
        raise
    return Server(kind, certs is not None, process, port)


def stop(process: processes.Process, grace: float = 3.0) -> None:
    """SIGTERM, a moment, then SIGKILL for whatever of its session is left (granian's
    workers, a server that does not stop on SIGTERM while a probe holds a connection)."""
    if process.proc is None:
        return
    sid = process.pid
    if process.proc.poll() is None:
        process.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(grace)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.proc.wait()


# ---------------------------------------------------------------------- throughput

def load_name(concurrency: int) -> str:
    return f"{concurrency} concurrent cycle{'s' if concurrency > 1 else ''}"


def load(venv: Venv, server: Server, concurrency: int, seconds: float, env: dict[str, str],
         ca: Path | None) -> LoadRun:
    """``concurrency`` cycles at once against ``server`` for ``seconds`` (after WARMUP),
    and the server's CPU in that window."""
    clients = 1 if concurrency == 1 else 2
    shares = [concurrency // clients + (1 if k < concurrency % clients else 0)
              for k in range(clients)]
    start = time.time() + START_DELAY
    window = (start + WARMUP, start + WARMUP + seconds)
    argv = [str(venv.python), "-m", "benchmarks.http_candidates", "load", str(server.port)]
    extra = ["--ca", str(ca)] if ca is not None else []
    procs = [subprocess.Popen([*argv, str(share), repr(start), str(WARMUP), str(seconds),
                               *extra], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, **env})
             for share in shares]
    try:
        time.sleep(max(0.0, window[0] - time.time()))
        cpu0 = session_cpu(server.process.pid)
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1 = session_cpu(server.process.pid)
        outs = [p.communicate(timeout=seconds + 120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"the load client of {server.name} failed: "
                               f"{err.decode(errors='replace')[-1000:]}")
        results.append(json.loads(out))
    return LoadRun(seconds, [x for r in results for x in r["latencies"]], cpu1 - cpu0,
                   sum(r["errors"] for r in results),
                   sorted({k for r in results for k in r["error_kinds"]})[:3])


def measure(venv: Venv, servers: list[Server], loads: Sequence[int], rounds: int,
            seconds: float, env: dict[str, str], ca: Path | None) -> None:
    """Every load on every server, one after the other, the order reversed every other
    time (ABBA)."""
    step = 0
    for _ in range(rounds):
        for concurrency in loads:
            order = servers if step % 2 == 0 else servers[::-1]
            step += 1
            for server in order:
                run_ = load(venv, server, concurrency, seconds, env,
                            ca if server.tls else None)
                server.runs.setdefault(concurrency, []).append(run_)
                time.sleep(0.2)


def _cpu_per_cycle(runs: list[LoadRun]) -> float:
    return 1000 * sum(r.server_cpu for r in runs) / max(1, sum(len(r.latencies) for r in runs))


def _rounds(summary: Summary, digits: int) -> str:
    """`` (rounds LOW-HIGH)`` when there was more than one round."""
    if summary.n < 2:
        return ""
    return f" (rounds {summary.low:.{digits}f}-{summary.high:.{digits}f})"


def _latencies(runs: list[LoadRun]) -> list[float]:
    return [x for r in runs for x in r.latencies]


def _measured(runs: list[LoadRun]) -> str:
    """Cycles/s (median of the rounds), the cycles' p50 and p99, the server's CPU."""
    rates = Summary.of([r.rate for r in runs])
    values = _latencies(runs)
    failed = sum(r.errors for r in runs)
    latency = (f"p50 {percentile(values, 50):.1f} / p99 {percentile(values, 99):.1f} ms"
               if values else "no cycle")
    return (f"{rates.median:.0f}/s{_rounds(rates, 0)}, {latency}, "
            f"{_cpu_per_cycle(runs):.2f} ms server CPU/cycle"
            + (f", **{failed} failed**" if failed else ""))


def _ratios(runs: list[LoadRun], base: list[LoadRun]) -> Summary:
    return Summary.of([ratio(a.rate, b.rate) for a, b in zip(runs, base, strict=True)])


def baseline_of(server: Server, servers: list[Server]) -> Server | None:
    return next((s for s in servers if s.kind == CURRENT and s.tls == server.tls), None)


def throughput_rows(servers: list[Server], loads: Sequence[int]) -> list[Row]:
    """A row per server and load: its cycles/s, p50 / p99 and CPU against the broker's
    server's (with TLS: the broker's server with TLS), and the ratio of the rates."""
    rows = []
    for server in servers:
        base = baseline_of(server, servers)
        if base is None or base is server:
            continue
        for concurrency in loads:
            runs, base_runs = server.runs[concurrency], base.runs[concurrency]
            ratios = _ratios(runs, base_runs)
            rows.append(Row(
                f"{load_name(concurrency)}{', TLS' if server.tls else ''}, {server.kind}: "
                "cycles/s, cycle p50 / p99",
                f"{base.name}: {_measured(base_runs)}", _measured(runs),
                f"x{ratios.median:.2f} cycles/s{_rounds(ratios, 2)}"))
    return rows


def throughput_table(servers: list[Server], loads: Sequence[int]) -> str:
    """Cycles/s of every server at every load: the ratio to its baseline, and TLS against
    the same server's plain rate."""
    head = ["| server | " + " | ".join(load_name(c) for c in loads) + " |",
            "|---" * (1 + len(loads)) + "|"]
    lines = []
    for server in servers:
        base = baseline_of(server, servers)
        plain = next((s for s in servers if s.kind == server.kind and not s.tls), None)
        cells = []
        for concurrency in loads:
            runs = server.runs[concurrency]
            cell = f"{Summary.of([r.rate for r in runs]).median:.0f}/s"
            notes = []
            if base is not None and base is not server:
                notes.append(f"x{_ratios(runs, base.runs[concurrency]).median:.2f}")
            if server.tls and plain is not None:
                notes.append(f"{_ratios(runs, plain.runs[concurrency]).median:.2f} of plain")
            cells.append(cell + (f" ({', '.join(notes)})" if notes else ""))
        lines.append(f"| {server.name} | " + " | ".join(cells) + " |")
    return "\n".join(head + lines)


# ---------------------------------------------------------------------- behaviour

@dataclass
class Reply:
    status: int
    app: bool  # the app answered (X-App: called); else the server itself
    path: str = ""  # what the app saw
    body_len: int | None = None  # what the app read of the body
    dup: list[list[str]] = field(default_factory=list)  # the X-Dup headers the app saw


@dataclass
class Outcome:
    replies: list[Reply]
    closed: float | None  # seconds until the server closed the connection (None: open)
    first: float | None = None  # seconds until the first whole answer
    note: str = ""

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.replies]

    @property
    def smuggled(self) -> bool:
        """A request that was another request's body reached the app."""
        return any(r.app and r.path.startswith("/v1/catalog") for r in self.replies)


def _reply(status: int, headers: dict[str, str], body: bytes) -> Reply:
    if headers.get("x-app") != "called":
        return Reply(status, False)
    try:
        data = json.loads(body)
    except ValueError:
        return Reply(status, True)
    return Reply(status, True, str(data.get("path", "")), data.get("body_len"),
                 [list(map(str, h)) for h in data.get("dup", [])])


def parse(data: bytes, closed: bool) -> list[Reply]:
    """The whole answers in ``data`` (an answer without a length ends with the
    connection)."""
    out: list[Reply] = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            return out
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, pos = b"", 0
            while True:
                end = rest.find(b"\r\n", pos)
                if end < 0:
                    return out
                try:
                    size = int(rest[pos:end].split(b";")[0], 16)
                except ValueError:
                    return out
                if len(rest) < end + 2 + size + 2:
                    return out
                body += rest[end + 2:end + 2 + size]
                pos = end + 2 + size + 2
                if size == 0:
                    break
            out.append(_reply(status, headers, body))
            data = rest[pos:]
            continue
        if "content-length" in headers:
            length = int(headers["content-length"])
        elif status in (204, 304) or not closed:
            length = 0
        else:
            length = len(rest)
        if len(rest) < length:
            return out
        out.append(_reply(status, headers, rest[:length]))
        data = rest[length:]
    return out


def request(method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes = b"", length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: broker"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEALTH = request("GET", "/v1/health")
SMUGGLED = request("GET", "/v1/catalog")
CHUNKED = {"Transfer-Encoding": "chunked"}


def _elapsed(t0: float) -> float:
    return time.monotonic() - t0


def send_and_watch(data: bytes) -> Callable[[int, float], Outcome]:
    """Send ``data`` at once, then read until the server closes or ``watch`` s pass."""
    def probe(port: int, watch: float) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=watch) as sock:
            t0, note = time.monotonic(), ""
            try:
                sock.sendall(data)
            except OSError as exc:
                note = f"sending failed: {type(exc).__name__}"
            buf, closed, first = b"", None, None
            while (left := watch - _elapsed(t0)) > 0:
                sock.settimeout(left)
                try:
                    more = sock.recv(65536)
                except TimeoutError:
                    break
                except OSError:
                    more = b""
                if not more:
                    closed = _elapsed(t0)
                    break
                buf += more
                if first is None and parse(buf, False):
                    first = _elapsed(t0)
        return Outcome(parse(buf, closed is not None), closed, first, note)
    return probe


def drip(prefix: bytes, byte: bytes, every: float = 0.3) -> Callable[[int, float], Outcome]:
    """Send ``prefix``, then one byte every ``every`` s: when (if) the server cuts it."""
    def probe(port: int, watch: float) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=watch) as sock:
            t0 = time.monotonic()
            sock.sendall(prefix)
            buf, closed = b"", None
            while _elapsed(t0) < watch:
                try:
                    sock.sendall(byte)
                    sock.settimeout(every)
                    more = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    more = b""
                if not more:
                    closed = _elapsed(t0)
                    break
                buf += more
        return Outcome(parse(buf, closed is not None), closed)
    return probe


def idle(first: bytes = b"") -> Callable[[int, float], Outcome]:
    """Connect (send ``first`` and read its answer), then send nothing: when the server
    closes the connection, counted from then."""
    def probe(port: int, watch: float) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=watch) as sock:
            buf = b""
            if first:
                sock.sendall(first)
                while not parse(buf, False):
                    more = sock.recv(65536)
                    if not more:
                        return Outcome(parse(buf, True), 0.0, note="closed at once")
                    buf += more
            t0, closed = time.monotonic(), None
            while (left := watch - _elapsed(t0)) > 0:
                sock.settimeout(left)
                try:
                    if not sock.recv(65536):
                        closed = _elapsed(t0)
                        break
                except TimeoutError:
                    break
                except OSError:
                    closed = _elapsed(t0)
                    break
        return Outcome(parse(buf, closed is not None), closed)
    return probe


def refused(*allowed: int) -> Callable[[Outcome], bool]:
    """One answer, of the server's own with one of these statuses, and the connection
    closed."""
    return lambda o: len(o.replies) == 1 and o.statuses[0] in allowed \
        and not o.replies[0].app and o.closed is not None


def refused_at_once(status: int) -> Callable[[Outcome], bool]:
    return lambda o: refused(status)(o) and o.first is not None and o.first < 1.0


def never_smuggled(o: Outcome) -> bool:
    """The route's answer, then the pipelined health check's, or the connection closed
    after the first: never the smuggled request."""
    if not o.replies or o.statuses[0] != 200 or o.smuggled:
        return False
    if len(o.replies) == 1:
        return o.closed is not None
    return len(o.replies) == 2 and o.replies[1].app and o.replies[1].path == "/v1/health"


def answered_then_closed(within: float | None = None) -> Callable[[Outcome], bool]:
    """The route's answer (at once when ``within`` is given) and the connection closed
    (within ``within`` s)."""
    def check(o: Outcome) -> bool:
        if o.statuses != [200] or not o.replies[0].app or o.closed is None:
            return False
        return within is None or (o.first is not None and o.first < 1.0
                                  and o.closed <= within)
    return check


def both_headers(o: Outcome) -> bool:
    """The app saw both X-Dup values (two fields, or one joined with a comma)."""
    if o.statuses != [200] or not o.replies[0].app:
        return False
    values = [v for _, v in o.replies[0].dup]
    return values == ["a", "b"] or [v.replace(" ", "") for v in values] == ["a,b"]


def both_answered(o: Outcome) -> bool:
    return (o.statuses == [200, 200] and [r.path for r in o.replies]
            == ["/v1/echo", "/v1/health"] and o.replies[0].body_len == len(SMUGGLED))


def cut(o: Outcome) -> bool:
    return o.closed is not None


@dataclass(frozen=True)
class Probe:
    name: str
    expects: str  # what the hostile tier asserts, in words
    run: Callable[[int, float], Outcome]  # (port, watch)
    check: Callable[[Outcome], bool]


def _probes() -> list[Probe]:
    def chunked(path: str, body: bytes) -> bytes:
        return request("POST", path, CHUNKED, body, length=False)

    def head(fields: str) -> bytes:
        return f"POST /v1/health HTTP/1.1\r\nHost: b\r\n{fields}\r\n".encode()

    out: list[Probe] = [
        Probe("Content-Length and Transfer-Encoding", "400, closed", send_and_watch(
            request("GET", "/v1/health", {"Content-Length": "5", **CHUNKED}, length=False)
            + b"0\r\n\r\n" + SMUGGLED), refused(400)),
        Probe("Transfer-Encoding, then Content-Length: 0", "400, closed", send_and_watch(
            request("GET", "/v1/health", {**CHUNKED, "Content-Length": "0"}, length=False)
            + b"0\r\n\r\n" + SMUGGLED), refused(400)),
    ]
    for coding in ("chunked, identity", "gzip, chunked", "identity", "xchunked",
                   "chunked;q=1"):
        out.append(Probe(f"Transfer-Encoding: {coding}", "501, closed", send_and_watch(
            request("POST", "/v1/health", {"Transfer-Encoding": coding}, length=False)
            + b"0\r\n\r\n" + SMUGGLED), refused(501)))
    out.append(Probe("two Transfer-Encoding: chunked", "501, closed", send_and_watch(
        head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")
        + b"0\r\n\r\n" + SMUGGLED), refused(501)))
    for value in ("5, 5", "+5", "-1", "0x5", "5 5", ""):
        out.append(Probe(f"Content-Length: '{value}'", "400, closed", send_and_watch(
            head(f"Content-Length: {value}\r\n") + b"hello" + SMUGGLED), refused(400)))
    out.append(Probe("two Content-Length: 5", "400, closed", send_and_watch(
        head("Content-Length: 5\r\nContent-Length: 5\r\n") + b"hello" + SMUGGLED),
        refused(400)))
    n = len(SMUGGLED)
    for name, raw in (
            ("space before the colon (Content-Length)",
             f"GET /v1/health HTTP/1.1\r\nHost: b\r\nContent-Length : {n}\r\n\r\n"),
            ("space before the colon (another field)",
             f"POST /v1/health HTTP/1.1\r\nHost: b\r\nX-Harmless : 1\r\n"
             f"Content-Length: {n}\r\n\r\n"),
            ("folded header line",
             f"POST /v1/health HTTP/1.1\r\nHost: b\r\nX-Folded: a\r\n b\r\n"
             f"Content-Length: {n}\r\n\r\n"),
            ("bare LF after a header",
             f"POST /v1/health HTTP/1.1\r\nHost: b\nContent-Length: {n}\r\n\r\n"),
            ("bare LF after the request line",
             f"POST /v1/health HTTP/1.1\nHost: b\r\nContent-Length: {n}\r\n\r\n"),
            ("empty field name",
             f"POST /v1/health HTTP/1.1\r\nHost: b\r\n: empty\r\nContent-Length: {n}\r\n\r\n"),
            ("NUL in a field name",
             f"POST /v1/health HTTP/1.1\r\nHost: b\r\nX\x00Y: 1\r\nContent-Length: {n}"
             "\r\n\r\n")):
        out.append(Probe(name, "400, closed", send_and_watch(raw.encode() + SMUGGLED),
                         refused(400)))
    for size in (b"-1", b"zz", b"0x10", b"+a", b"1 1", b"1" * 40):
        out.append(Probe(f"chunk size '{size.decode()[:12]}'", "400, closed", send_and_watch(
            chunked("/v1/echo", size + b"\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n")),
            refused(400)))
    out += [
        Probe("chunk line ended by a bare LF", "400, closed",
              send_and_watch(chunked("/v1/echo", b"2\nxx\r\n0\r\n\r\n")), refused(400)),
        Probe("a 16 TiB chunk declared, 3 bytes sent", "413 at once, closed",
              send_and_watch(chunked("/v1/echo", b"fffffffffff\r\nabc")),
              refused_at_once(413)),
        Probe("90 KB of headers", "431, closed", send_and_watch(request(
            "GET", "/v1/health", {f"X-Filler-{k}": "y" * 1000 for k in range(90)})),
            refused(431)),
        Probe("a 70 KB request line", "414 or 431, closed", send_and_watch(
            b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"), refused(414, 431)),
        Probe("X-Dup twice", "the app sees both values", send_and_watch(
            b"GET /v1/health HTTP/1.1\r\nHost: b\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n"),
            both_headers),
        Probe("unread body (Content-Length), then a request", "never the body as a request",
              send_and_watch(request("POST", "/noread", {}, SMUGGLED) + HEALTH),
              never_smuggled),
        Probe("unread body (chunked), then a request", "never the body as a request",
              send_and_watch(chunked("/noread", b"%x\r\n%b\r\n0\r\n\r\n"
                                     % (len(SMUGGLED), SMUGGLED)) + HEALTH),
              never_smuggled),
        Probe("unread 1 MiB body, then a request", "200, closed", send_and_watch(
            request("GET", "/noread", {}, b"x" * (1024 * 1024)) + HEALTH),
            answered_then_closed()),
        Probe("Content-Length: 60000, nothing sent, unread", "200 at once, closed within 3 s",
              send_and_watch(request("POST", "/noread", {"Content-Length": "60000"})),
              answered_then_closed(3.0)),
        Probe("chunked, nothing sent, unread", "200 at once, closed within 3 s",
              send_and_watch(request("POST", "/noread", CHUNKED)),
              answered_then_closed(3.0)),
        Probe("body read, then a request (control)", "both answered", send_and_watch(
            request("POST", "/v1/echo", {}, SMUGGLED) + HEALTH), both_answered),
        Probe("headers dripped (1 B / 0.3 s)", "cut off",
              drip(b"GET /v1/health HTTP/1.1\r\nX-Pad: ", b"y"), cut),
        Probe("body dripped (1 B / 0.3 s)", "cut off",
              drip(request("POST", "/v1/echo", {"Content-Length": "400"}), b"x"), cut),
        Probe("chunk size dripped (1 B / 0.3 s)", "cut off",
              drip(request("POST", "/v1/echo", CHUNKED, length=False), b"0"), cut),
        Probe("idle, no request", "closed", idle(), cut),
        Probe("idle after an answer", "closed", idle(HEALTH),
              lambda o: o.statuses == [200] and cut(o)),
    ]
    return out


PROBES = _probes()


def describe(o: Outcome) -> str:
    parts = []
    for r in o.replies:
        if r.app:
            text = f"{r.status} app {r.path[:24]}"
            if r.path.startswith("/v1/catalog"):
                text += " **smuggled**"
        else:
            text = f"{r.status} server"
        parts.append(text)
    out = " + ".join(parts) or "no answer"
    if o.first is not None and o.first >= 1.0:
        out += f" at {o.first:.1f} s"
    out += f"; closed {o.closed:.1f} s" if o.closed is not None else "; open"
    if o.note and not o.replies:
        out += f" ({o.note})"
    return out


@dataclass
class Behaviour:
    """Every probe's outcome on every server (or why a server has none)."""

    watch: float
    outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)  # kind, probe
    failed: dict[str, str] = field(default_factory=dict)  # kind -> why it did not start

    def kept(self, kind: str) -> list[str]:
        return [p.name for p in PROBES if p.check(self.outcomes[kind][p.name])]

    def smuggled(self, kind: str) -> list[str]:
        return [p.name for p in PROBES if self.outcomes[kind][p.name].smuggled]


def probe_all(workdir: Path, venv: Venv, kinds: Sequence[str], work_n: int,
              watch: float = WATCH) -> Behaviour:
    """Every probe on every server at once (each on its own connection), then every
    server stopped."""
    result = Behaviour(watch)
    servers: list[Server] = []
    env = _environment(work_n, True, watch)
    try:
        for kind in kinds:
            try:
                servers.append(start_server(workdir, venv, kind, env, suffix="-probes"))
                result.outcomes[kind] = {}
            except RuntimeError as exc:
                result.failed[kind] = str(exc).splitlines()[0][:200]
        lock = threading.Lock()

        def one(server: Server, probe: Probe) -> None:
            try:
                outcome = probe.run(server.port, watch)
            except Exception as exc:  # (a connection refused, an answer not HTTP)
                outcome = Outcome([], None, note=f"probe failed: {type(exc).__name__}")
            with lock:
                result.outcomes[server.kind][probe.name] = outcome

        threads = [threading.Thread(target=one, args=(s, p), daemon=True)
                   for s in servers for p in PROBES]
        for t in threads:
            t.start()
            time.sleep(0.002)
        for t in threads:
            t.join(watch + 60)
    finally:
        for server in servers:
            stop(server.process)
    for kind in list(result.outcomes):  # a probe thread that never ended: no outcome
        for p in PROBES:
            result.outcomes[kind].setdefault(p.name, Outcome([], None, note="no outcome"))
    return result


def behaviour_table(b: Behaviour) -> str:
    kinds = list(b.outcomes)
    lines = ["| probe | the hostile tier expects | " + " | ".join(kinds) + " |",
             "|---" * (2 + len(kinds)) + "|"]
    for p in PROBES:
        cells = []
        for kind in kinds:
            o = b.outcomes[kind][p.name]
            cells.append(("ok: " if p.check(o) else "**no**: ") + describe(o))
        name = p.name.replace("|", "/")
        lines.append(f"| {name} | {p.expects} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def behaviour_rows(b: Behaviour) -> list[Row]:
    if CURRENT not in b.outcomes:
        return []
    n = len(PROBES)
    base = len(b.kept(CURRENT))
    rows = []
    for kind in b.outcomes:
        if kind == CURRENT:
            continue
        kept, smuggled = len(b.kept(kind)), len(b.smuggled(kind))
        rows.append(Row(f"hostile-tier probes answered as the tier expects, {kind}",
                        f"{CURRENT}: {base} of {n}", f"{kept} of {n}",
                        f"{kept - base:+d}; a smuggled request reached the app in {smuggled} "
                        f"probe{'' if smuggled == 1 else 's'}"))
    return rows


def behaviour_summary(b: Behaviour) -> str:
    n = len(PROBES)
    parts = []
    for kind in b.outcomes:
        smuggled = b.smuggled(kind)
        parts.append(f"{kind} {len(b.kept(kind))} of {n}"
                     + (f" (a smuggled request reached the app: {'; '.join(smuggled)})"
                        if smuggled else ""))
    return ("Probes answered as the hostile tier expects: " + ", ".join(parts) + "."
            + "".join(f" {kind} did not start: {why}." for kind, why in b.failed.items()))


# ---------------------------------------------------------------------- the section

def conclusion(servers: list[Server], loads: Sequence[int], b: Behaviour | None) -> str:
    """What the numbers say, read from them: which servers answer every probe as the tier
    expects, which let a smuggled request through, which are faster or slower than the
    broker's server in every round at every load (by more than SAME)."""
    faster, slower = [], []
    for server in servers:
        base = baseline_of(server, servers)
        if base is None or base is server:
            continue
        ratios = [_ratios(server.runs[c], base.runs[c]) for c in loads]
        if all(r.low > 1 + SAME for r in ratios):
            low, high = (f"x{f(r.median for r in ratios):.2f}" for f in (min, max))
            faster.append(f"{server.name} {low}" + (f"-{high}" if high != low else ""))
        elif all(r.high < 1 - SAME for r in ratios):
            slower.append(server.name)
    rounds = min((len(runs) for s in servers for runs in s.runs.values()), default=0)
    out = ["Read from this run" + (" (one round: rough)" if rounds < 2 else "") + ":"]
    if b is not None and b.outcomes:
        keep = [k for k in b.outcomes if len(b.kept(k)) == len(PROBES)]
        smuggle = [k for k in b.outcomes if b.smuggled(k)]
        out.append("every probe answered as the hostile tier expects by "
                   + (", ".join(keep) or "no server") + ";")
        out.append("a smuggled request reached the app on "
                   + (", ".join(smuggle) or "no server") + ";")
    out.append(f"faster than the broker's server by more than {SAME:.0%} in every round at "
               f"every load: {', '.join(faster) or 'none'};")
    out.append(f"slower by as much: {', '.join(slower) or 'none'}.")
    return " ".join(out)


def section(venv: Venv, servers: list[Server], loads: Sequence[int], rounds: int,
            seconds: float, work_n: int, route_ms: float, b: Behaviour | None,
            failed: dict[str, str]) -> Section:
    notes = []
    if servers:
        notes.append(
            f"{rounds} round(s) of {seconds:g} s per server and load (after {WARMUP:g} s of "
            "warm-up each), the servers one after the other, their order reversed every "
            "other time (ABBA). A cycle: two POSTs, each on a new connection, each running "
            f"{route_ms:.2f} ms of route CPU ({work_n} turns of a Python loop); the client "
            "(one process at 1 cycle at once, two otherwise) shares the machine's cores "
            "with the server, so the absolute rates are lower than a separate client host "
            "would give; the ratios and the server CPU per cycle are the steadier figures. "
            "Baseline: the broker's server (with TLS: the broker's server with TLS).")
        notes.append("Cycles/s, the ratio to the baseline (median of the rounds' ratios), "
                     "and for TLS the share of the same server's plain rate:\n\n"
                     + throughput_table(servers, loads))
        errors = [(s.name, r) for s in servers for rs in s.runs.values() for r in rs
                  if r.errors]
        if errors:
            notes.append("Cycles that failed (not in the rates): " + "; ".join(
                f"{name} {r.errors} ({', '.join(r.error_kinds)})" for name, r in errors))
    if b is not None:
        header, idle_s, body = PROBE_TIMEOUTS
        notes.append(
            f"Behaviour: {len(PROBES)} probes, each on its own connection, all at once, each "
            f"watched for {b.watch:g} s. The time limits, where a server has them: the "
            f"broker's server header {header:g} s, idle {idle_s:g} s, body {body:g} s; "
            f"uvicorn and aiohttp keep-alive {idle_s:g} s (no header or body limit); "
            f"hypercorn read {header:g} s and keep-alive {idle_s:g} s; cheroot socket "
            f"timeout {header:g} s; granian header read {header:g} s. In the cells, "
            "'server' is an answer the server wrote itself (the app never ran), 'app PATH' "
            "one the app wrote for the request it was given; '**smuggled**' marks a request "
            "that was the body of another reaching the app; 'closed' is when the server "
            "closed the connection, in seconds after the bytes were sent (after the answer "
            "for the idle one), 'open' that it had not within the watch. The hostile tier "
            "also checks the broker's JSON message of each refusal, which only the broker's "
            "server writes.")
        notes.append(behaviour_summary(b))
        if b.outcomes:
            notes.append(behaviour_table(b))
    notes.append(conclusion(servers, loads, b))
    installed = ", ".join(f"{p} {v}" for p, v in sorted(venv.versions.items()))
    notes.append(f"Python {sys.version.split()[0]}" + (f"; {installed}" if installed else "")
                 + "".join(f"; {kind} not installed ({why})"
                           for kind, why in venv.missing.items())
                 + "".join(f"; {name} did not start ({why})"
                           for name, why in failed.items()) + ".")
    rows = throughput_rows(servers, loads) + (behaviour_rows(b) if b is not None else [])
    return Section("servers", TITLE, rows, notes)


def run(opts: Options, *, candidates: Sequence[str] = CANDIDATES,
        loads: Sequence[int] = LOADS, seconds: float | None = None,
        rounds: int | None = None, tls: bool = True, probes: bool = True,
        watch: float = WATCH, venv: Venv | None = None) -> list[Section]:
    """The section; the keywords are for the smoke test (fewer candidates and loads,
    shorter rounds, no TLS; ``venv``: one already installed)."""
    rounds = rounds or opts.reps(3, 1)
    seconds = seconds or (1.0 if opts.quick else 5.0)
    venv = venv or install(opts.workdir / "venv", candidates)
    kinds = [CURRENT, *(c for c in candidates if venv.has(c))]
    work_n = calibrate()
    logs = opts.workdir / "servers"
    b = probe_all(logs, venv, kinds, work_n, watch) if probes else None
    certs = certificates.make(opts.workdir / "tls") if tls else None
    env = _environment(work_n, False)
    started: list[Server] = []
    failed: dict[str, str] = {}
    try:
        wanted: list[tuple[str, Certificates | None]] = [(k, None) for k in kinds]
        if certs is not None:
            wanted += [(k, certs) for k in TLS_KINDS if k in kinds]
        for kind, c in wanted:
            try:
                started.append(start_server(logs, venv, kind, env, c))
            except RuntimeError as exc:
                failed[kind + (" (TLS)" if c is not None else "")] = \
                    str(exc).splitlines()[0][:200]
        # a server whose baseline did not start has nothing to be compared with
        servers = [s for s in started if baseline_of(s, started) is not None]
        time.sleep(0.5)
        measure(venv, servers, loads, rounds, seconds, env,
                certs.ca if certs is not None else None)
    finally:
        for server in started:
            stop(server.process)
    return [section(venv, servers, loads, rounds, seconds, work_n,
                    ROUTE_MS, b, failed)]
