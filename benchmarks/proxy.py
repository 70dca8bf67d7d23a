"""Item 4 of issue 8: what the broker's authenticating proxy adds to a job's vendor calls.

The same requests go to the emulated IBM Quantum Compute API directly, with the site's
credentials (IAM bearer and Service-CRN), and through the broker's proxy
(``/p/<qpu>/...``) with what a job holds (the access token the broker's IAM exchange
gives for the job token). Three routes the SDKs use:

* small: ``GET /api/v1/backends/<qpu>/status`` (~150 bytes; qiskit-ibm-runtime and qrmi
  ask it before and while running);
* 1 MiB up: ``PUT /api/v1/jobs/<id>/tags`` with a 1 MiB JSON body (streamed through, as
  every body the proxy does not need to read);
* 1 MiB down: ``GET /api/v1/jobs/<id>/results`` of a sampler job whose result is ~1 MiB.

A third side, "relayed", sends the direct request through ``benchmarks/relay.py``, a
bare Python TCP relay: one more hop with no logic, the floor under any proxy here.

Latency: one keep-alive connection per side (the SDKs keep theirs: requests.Session,
reqwest), rounds of one request per side back to back, the order rotated every round;
the added time is the per-round difference. Throughput: THREADS threads, each with its
own keep-alive connection, as many requests as they can in a window; one window per side
per round, rotated likewise; then again for the small route with the vendor 20 ms away
(the emulator delays its answers, as a network would). Everything is a real process:
``slurm-qpu-emulator``, ``slurm-qpu broker`` (a lease acquired with real MUNGE, as a
prolog does), the relay, and the load generator (this process), all on the same two
cores, so a proxied request pays for the broker's CPU as well as the emulator's; the
notes give each one's share. When a target is missed, a CPU profile of the broker's
request threads follows the table (``profile_pass``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from benchmarks.options import Options
from benchmarks.processes import Munged, Process, broker, cpu_seconds, emulator, relay
from benchmarks.profiled import profile_tables
from benchmarks.report import Row, Section
from benchmarks.stats import Summary, paired_difference, ratio
from slurm_qpu.broker.client import BrokerClient

QPU = "ibm_brisbane"  # 127 qubits: a wide circuit's results are synthetic (cheap) bits
JOB_ID = 4_000_001
RESULT_SHOTS = 49_152  # x 127 bits: ~1 MiB of sampler results
BODY_BYTES = 1 << 20
THREADS = 4
TARGET_ADDED_MS = 1.0
TARGET_RATIO = 0.70
IAM_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


@dataclass(frozen=True)
class Route:
    key: str
    label: str
    method: str
    path: str  # from the API root: /api/v1/...
    body: bytes | None = None


@dataclass
class Side:
    """One way to the vendor: ``direct`` (site credentials), ``relayed`` (the same, through
    the bare relay) or ``proxied`` (the job's token, through the broker)."""

    name: str
    url: str  # the vendor API's root as this side reaches it
    headers: dict[str, str]

    def connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                          timeout=60)

    def call(self, conn: http.client.HTTPConnection, route: Route) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if route.body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(route.method, urlsplit(self.url).path + route.path, body=route.body,
                     headers=headers)
        response = conn.getresponse()
        return response.status, response.read()


@dataclass
class Stack:
    """The emulator, the broker, the bare relay, a job's lease and the three sides."""

    emulator: Process
    broker: Process
    relay: Process
    direct: Side
    relayed: Side  # the direct request through the bare TCP relay: one hop, no logic
    proxied: Side
    routes: list[Route]

    @property
    def sides(self) -> tuple[Side, Side, Side]:
        return self.direct, self.relayed, self.proxied

    @property
    def processes(self) -> tuple[Process, Process, Process]:
        return self.emulator, self.broker, self.relay


def _post_form(url: str, form: dict[str, str]) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("POST", parts.path, body=urlencode(form),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {url}: {response.status} {body[:300]!r}")
        answer: dict[str, Any] = json.loads(body)
        return answer
    finally:
        conn.close()


def _bearer(iam_root: str, api_key: str) -> str:
    """An access token from an IAM (the vendor's, or the broker's for a job token), as
    the SDKs get theirs."""
    return str(_post_form(f"{iam_root}/identity/token",
                          {"grant_type": IAM_GRANT, "apikey": api_key})["access_token"])


def wide_sampler_job(qubits: int = 127, shots: int = RESULT_SHOTS) -> bytes:
    """A SamplerV2 job measuring every qubit of the backend: the emulator gives such wide
    circuits synthetic random bits at once, so its ~1 MiB result costs no simulation."""
    qasm = "".join(["OPENQASM 3.0;\ninclude \"stdgates.inc\";\n", f"bit[{qubits}] meas;\n",
                    *(f"sx ${i};\n" for i in range(qubits)),
                    *(f"meas[{i}] = measure ${i};\n" for i in range(qubits))])
    return json.dumps({"program_id": "sampler", "backend": QPU,
                       "params": {"pubs": [[qasm, None, shots]], "version": 2,
                                  "support_qiskit": True}}).encode()


def tags_body(size: int = BODY_BYTES) -> bytes:
    """``{"tags": [...]}`` of exactly ``size`` bytes."""
    empty = len(json.dumps({"tags": []}))
    count = max(1, size // 1024)
    each = (size - empty - 4 * count + 2) // count  # quotes, comma and space per tag
    tags = [f"{i:06d}" + "x" * (each - 6) for i in range(count)]
    body = json.dumps({"tags": tags})
    tags[-1] += "x" * (size - len(body))
    return json.dumps({"tags": tags}).encode()


def _prepare_job(side: Side, shots: int) -> str:
    """A completed sampler job the lease owns (created through the proxy): its results
    are the download, its tags the upload."""
    conn = side.connect()
    try:
        status, body = side.call(conn, Route("create", "", "POST", "/api/v1/jobs",
                                             wide_sampler_job(shots=shots)))
        if status != 200:
            raise RuntimeError(f"cannot create the benchmark's vendor job: {status} {body!r}")
        job_id = str(json.loads(body)["id"])
        end = time.monotonic() + 60
        while time.monotonic() < end:
            status, body = side.call(conn, Route("poll", "", "GET", f"/api/v1/jobs/{job_id}"
                                                 "?exclude_params=true"))
            state = json.loads(body).get("status") if status == 200 else None
            if state == "Completed":
                return job_id
            if state not in ("Queued", "Running"):
                raise RuntimeError(f"the benchmark's vendor job ended {state}: {body[:300]!r}")
            time.sleep(0.05)
        raise RuntimeError("the benchmark's vendor job did not complete within 60 s")
    finally:
        conn.close()


@contextlib.contextmanager
def stack(workdir: Path, *, profile: Path | None = None,
          shots: int = RESULT_SHOTS) -> Iterator[Stack]:
    """Start munged (if needed), the emulator, the broker and the relay; acquire a job's
    lease on QPU as a prolog does; yield; release, stop every process (also on errors)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with Munged(), contextlib.ExitStack() as running:
        emu, emu_url, emu_config = emulator(workdir)
        running.callback(emu.stop)
        emu.start()
        rel, relay_url = relay(workdir, emu_url)
        running.callback(rel.stop)
        rel.start()
        resources = [r for r in json.loads(emu_config.read_text())["resources"]
                     if r["name"] == QPU]
        brk, broker_url = broker(workdir, resources, profile=profile)
        running.callback(brk.stop)
        brk.start()
        node = BrokerClient(broker_url, deadline=10.0)
        running.callback(node.close)
        lease = node.acquire(JOB_ID, qpus=QPU, user="bench", uid=os.getuid(), time_limit=3600)
        running.callback(_release, node)
        if lease.get("state") != "acquired":
            raise RuntimeError(f"the broker did not grant the lease: {lease}")
        env = lease["env"]
        site = resources[0]["environment"]
        vendor = {"Authorization": "Bearer " + _bearer(emu_url, site["QRMI_IBM_QCS_IAM_APIKEY"]),
                  "Service-CRN": site["QRMI_IBM_QCS_SERVICE_CRN"], "Accept": "application/json"}
        proxy_iam = env[f"{QPU}_QRMI_IBM_QCS_IAM_ENDPOINT"]  # .../p/<qpu>
        job_side = {"Authorization": "Bearer " + _bearer(
                        proxy_iam, env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"]),
                    "Service-CRN": env[f"{QPU}_QRMI_IBM_QCS_SERVICE_CRN"],
                    "Accept": "application/json"}
        proxied = Side("proxied", proxy_iam, job_side)
        job = _prepare_job(proxied, shots)
        routes = [
            Route("small", "small (GET backend status)", "GET", f"/api/v1/backends/{QPU}/status"),
            Route("up", "1 MiB request (PUT job tags)", "PUT", f"/api/v1/jobs/{job}/tags",
                  tags_body()),
            Route("down", "1 MiB response (GET job results)", "GET",
                  f"/api/v1/jobs/{job}/results"),
        ]
        yield Stack(emu, brk, rel, Side("direct", emu_url, vendor),
                    Side("relayed", relay_url, vendor), proxied, routes)


def _release(node: BrokerClient) -> None:
    with contextlib.suppress(Exception):
        node.release(JOB_ID)


# ---------------------------------------------------------------------- measuring

@dataclass
class Latency:
    route: Route
    ms: dict[str, list[float]] = field(default_factory=dict)  # side -> per round
    statuses: set[tuple[str, int]] = field(default_factory=set)
    same_answer: bool = True  # every answer of a round equal to the direct one
    response_bytes: int = 0


def latency(st: Stack, route: Route, rounds: int, warmup: int = 5) -> Latency:
    """Rounds of one request per side, back to back on one keep-alive connection per
    side, the order rotated every round."""
    out = Latency(route, {side.name: [] for side in st.sides})
    conns = {side.name: side.connect() for side in st.sides}
    try:
        for _ in range(warmup):  # connections, the broker's upstream pool, caches
            for side in st.sides:
                side.call(conns[side.name], route)
        for k in range(rounds):
            answers: dict[str, bytes] = {}
            shift = k % len(st.sides)
            for side in st.sides[shift:] + st.sides[:shift]:
                t0 = time.perf_counter()
                status, body = side.call(conns[side.name], route)
                out.ms[side.name].append((time.perf_counter() - t0) * 1000)
                out.statuses.add((side.name, status))
                answers[side.name] = body
            out.same_answer &= len(set(answers.values())) == 1
            out.response_bytes = len(answers["direct"])
    finally:
        for conn in conns.values():
            conn.close()
    return out


@dataclass
class Window:
    side: str
    requests: int
    seconds: float
    errors: int
    cpu: dict[str, float]  # process name -> CPU seconds it used in the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def window(st: Stack, side: Side, route: Route, threads: int, seconds: float) -> Window:
    """``threads`` threads, each on its own keep-alive connection (opened, and used once,
    before the window opens), as many requests as they manage in ``seconds``."""
    counts = [0] * threads
    errors = [0] * threads
    ready = threading.Barrier(threads + 1)
    stop_at = [time.perf_counter() + 3600.0]  # set for real once every thread is ready

    def work(i: int) -> None:
        conn = side.connect()
        try:
            side.call(conn, route)
            ready.wait()
            while time.perf_counter() < stop_at[0]:
                status, _ = side.call(conn, route)
                counts[i] += 1
                if not 200 <= status < 300:
                    errors[i] += 1
        finally:
            conn.close()

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    cpu0 = {p.name: cpu_seconds(p.pid) for p in st.processes}
    ready.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = {p.name: cpu_seconds(p.pid) - cpu0[p.name] for p in st.processes}
    return Window(side.name, sum(counts), elapsed, sum(errors), cpu)


@dataclass
class Throughput:
    route: Route
    label: str
    rounds: list[dict[str, Window]] = field(default_factory=list)  # side -> its window

    def rates(self, side: str) -> list[float]:
        return [r[side].rate for r in self.rounds]

    def ratios(self, side: str) -> list[float]:
        return [ratio(r[side].rate, r["direct"].rate) for r in self.rounds]

    @property
    def errors(self) -> int:
        return sum(w.errors for r in self.rounds for w in r.values())

    def cpu_ms(self, side: str, process: str) -> float:
        """CPU time ``process`` spent per request of ``side`` (ms)."""
        cpu = sum(r[side].cpu[process] for r in self.rounds)
        n = sum(r[side].requests for r in self.rounds)
        return cpu / n * 1000 if n else 0.0


def throughput(st: Stack, route: Route, rounds: int, seconds: float,
               threads: int = THREADS, label: str = "") -> Throughput:
    """Rounds of one window per side, the order rotated every round."""
    out = Throughput(route, label or route.label)
    for k in range(rounds):
        shift = k % len(st.sides)
        out.rounds.append({side.name: window(st, side, route, threads, seconds)
                           for side in st.sides[shift:] + st.sides[:shift]})
    return out


@contextlib.contextmanager
def vendor_delay(st: Stack, route: Route, seconds: float) -> Iterator[None]:
    """The emulator answers ``route`` ``seconds`` late (a vendor across a network)."""
    control = Side("control", st.direct.url + "/_emulator", {})
    conn = control.connect()
    try:
        fault = json.dumps({"path": "^" + route.path.split("?")[0] + "$",
                            "delay": seconds}).encode()
        status, body = control.call(conn, Route("fault", "", "POST", "/faults", fault))
        if status != 200:
            raise RuntimeError(f"the emulator refused the delay: {status} {body!r}")
        yield
    finally:
        control.call(conn, Route("clear", "", "DELETE", "/faults"))
        conn.close()


# ---------------------------------------------------------------------- profile

def profile_pass(workdir: Path, requests: int) -> str:
    """The broker under a CPU-time cProfile of its request threads, ``requests``
    proxied requests per route on one connection: where the broker's CPU goes. Not
    timed (the profiler slows everything)."""
    out = workdir / "broker.prof"
    with stack(workdir / "profiled", profile=out) as st:
        conn = st.proxied.connect()
        try:
            for route in st.routes:
                for _ in range(requests):
                    st.proxied.call(conn, route)
        finally:
            conn.close()
        keys = ", ".join(r.key for r in st.routes)
    # leaving the stack stopped the broker, which wrote its profile as it exited
    cpu, own, cumulative = profile_tables(
        str(out), 18, r"slurm_qpu|http/(client|server)|socketserver", 28)
    return "\n".join([
        f"CPU-time cProfile of the broker's request threads (benchmarks/profiled.py), "
        f"{requests} proxied requests per route ({keys}) on one keep-alive connection, "
        f"{cpu:.2f} s of CPU in all (the profiler's own cost included).",
        "", "By own time:", *own, "", "Cumulative (broker and standard-library HTTP):",
        *cumulative])



# ---------------------------------------------------------------------- report

def _ms(s: Summary) -> str:
    return s.text("ms", 2)


def _added(with_: list[float], without: list[float]) -> str:
    d = paired_difference(with_, without)
    return f"+{d.median:.2f} ms (IQR {d.p25:.2f}-{d.p75:.2f})"


def section(lat: list[Latency], thr: list[Throughput], far: list[Throughput],
            delay: float) -> Section:
    rows: list[Row] = []
    for la in lat:
        direct, proxied, relayed = la.ms["direct"], la.ms["proxied"], la.ms["relayed"]
        added = paired_difference(proxied, direct)
        d, p = Summary.of(direct), Summary.of(proxied)
        rows.append(Row(f"{la.route.label}: latency p50", f"direct {_ms(d)}",
                        f"proxied {_ms(p)}", _added(proxied, direct),
                        f"< {TARGET_ADDED_MS:g} ms added", added.median < TARGET_ADDED_MS))
        rows.append(Row(f"{la.route.label}: latency p99", f"direct {d.p99:.2f} ms",
                        f"proxied {p.p99:.2f} ms", f"{p.p99 - d.p99:+.2f} ms"))
        rows.append(Row(f"{la.route.label}: latency p50 through a bare TCP relay (the floor "
                        "of any extra hop)", f"direct {_ms(d)}",
                        f"relayed {_ms(Summary.of(relayed))}", _added(relayed, direct)))
    for th in [*thr, *far]:
        d, p = (Summary.of(th.rates(s)) for s in ("direct", "proxied"))
        q = Summary.of(th.ratios("proxied"))
        target = th in thr
        rows.append(Row(f"{th.label}: throughput, {THREADS} threads",
                        f"direct {d.text('req/s', 0)}", f"proxied {p.text('req/s', 0)}",
                        f"{q.median:.0%} of direct (IQR {q.p25:.0%}-{q.p75:.0%}); bare relay "
                        f"{Summary.of(th.ratios('relayed')).median:.0%}",
                        f">= {TARGET_RATIO:.0%} of direct" if target else "",
                        q.median >= TARGET_RATIO if target else None))
    same = all(la.same_answer for la in lat)
    statuses = sorted({s for la in lat for s in la.statuses})
    ok = all(200 <= status < 300 for _, status in statuses)
    down = next((la.response_bytes for la in lat if la.route.key == "down"), 0)
    notes = [
        "Direct: the emulated IBM Quantum Compute API (`slurm-qpu-emulator`) with the "
        "site's IAM bearer and Service-CRN. Proxied: the same request to the broker "
        "(`slurm-qpu broker`, production settings but no rate limit) at `/p/<qpu>/`, "
        "with the access token a job gets for its job token: the broker checks token, "
        "lease and route, writes the audit line, adds the real credentials and forwards "
        "on a pooled keep-alive connection. Relayed: the direct request through "
        "`benchmarks/relay.py`, a bare Python TCP relay (two threads copying bytes): what "
        "one more hop costs on this machine with no logic at all. Latency: one keep-alive "
        "connection per side, one request per side per round, the order rotated every "
        "round; differences are taken round by round. Throughput: one window per side per "
        "round, rotated likewise.",
        f"Every answer 2xx: {'yes' if ok else 'NO'} "
        f"({', '.join(f'{n} {s}' for n, s in statuses)}); every round's answers equal "
        f"(proxied = relayed = direct): {'yes' if same else 'NO'}. The download is "
        f"{down:,} bytes.",
        f"The throughput rows under \"vendor {delay * 1000:g} ms away\" delay each vendor "
        "answer in the emulator, as a network between the broker and a vendor would: "
        "then the broker's CPU is no longer what limits a job's request rate.",
    ]
    cpu = [f"{th.label}: {th.cpu_ms('proxied', 'broker'):.2f} ms broker + "
           f"{th.cpu_ms('proxied', 'emulator'):.2f} ms emulator per proxied request, "
           f"{th.cpu_ms('direct', 'emulator'):.2f} ms emulator per direct one, "
           f"{th.cpu_ms('relayed', 'relay'):.2f} ms relay per relayed one"
           + (f" ({th.errors} non-2xx answers)" if th.errors else "") for th in thr]
    notes.append(
        f"CPU time per request in the throughput windows (the load generator, the broker "
        f"and the emulator share {os.cpu_count()} cores, so a proxied request also waits "
        "for the broker's CPU): " + "; ".join(cpu) + ".")
    notes += reading(lat, thr, far, delay)
    return Section("proxy", "4. The broker's proxy: overhead per request", rows, notes)


def reading(lat: list[Latency], thr: list[Throughput], far: list[Throughput],
            delay: float) -> list[str]:
    """What the numbers say about the targets, in this run's own numbers."""
    added = {la.route.key: paired_difference(la.ms["proxied"], la.ms["direct"]).median
             for la in lat}
    floor = {la.route.key: paired_difference(la.ms["relayed"], la.ms["direct"]).median
             for la in lat}
    out = []
    if "small" in added and any(added[k] >= TARGET_ADDED_MS for k in added if k != "small"):
        big = [k for k in added if k != "small"]
        out.append(
            "Reading the 1 MiB latency rows: a second hop for the same bytes costs "
            + " and ".join(f"+{floor[k]:.2f} ms ({k})" for k in big)
            + " by itself (bare relay: the kernel copies each byte in and out once more). "
            "The broker adds "
            + " and ".join(f"{added[k] - floor[k]:.2f} ms ({k})" for k in big)
            + " beyond that floor, against "
            f"{added['small'] - floor['small']:.2f} ms for a small request: its fixed cost "
            "per request (parsing the job's request and the vendor's answer, token, lease, "
            "route), plus moving the body through Python in blocks.")
    missed = [th for th in thr if Summary.of(th.ratios("proxied")).median < TARGET_RATIO]
    if missed:
        small = next((th for th in thr if th.route.key == "small"), thr[0])
        line = (
            "Reading the throughput rows: with every process on this machine's "
            f"{os.cpu_count()} cores they measure CPU per request, not the network. A direct "
            f"small request costs the emulator {small.cpu_ms('direct', 'emulator'):.2f} ms of "
            f"CPU; a proxied one costs the broker {small.cpu_ms('proxied', 'broker'):.2f} ms "
            "more (an HTTP server and an HTTP client in one Python process, and the token, "
            "lease, route, audit line and metrics of every request). For 70 % of the direct "
            "rate the broker would have to cost well under what the emulator itself costs. "
            "The bare relay, with no logic at all, gets "
            + ", ".join(f"{Summary.of(th.ratios('relayed')).median:.0%} ({th.route.key})"
                        for th in thr) + " of the direct rate.")
        if far:
            line += (f" With the vendor {delay * 1000:g} ms away the broker keeps "
                     f"{Summary.of(far[0].ratios('proxied')).median:.0%} of the direct rate: "
                     "across a network, its CPU is not what limits a job.")
        out.append(line)
    return out


def run(opts: Options) -> list[Section]:
    rounds = {"small": opts.reps(600, 20), "up": opts.reps(150, 6), "down": opts.reps(150, 6)}
    windows, seconds = opts.reps(6, 3), (1.5 if not opts.quick else 0.3)
    delay = 0.02
    with stack(opts.workdir / "timed") as st:
        lat = [latency(st, route, rounds[route.key]) for route in st.routes]
        thr = [throughput(st, route, windows, seconds) for route in st.routes]
        small = st.routes[0]
        with vendor_delay(st, small, delay):
            far = [throughput(st, small, windows, seconds,
                              label=f"{small.label}, vendor {delay * 1000:g} ms away")]
    out = section(lat, thr, far, delay)
    if any(row.met is False for row in out.rows):
        out.profile = profile_pass(opts.workdir, opts.reps(300, 20))
    return [out]
