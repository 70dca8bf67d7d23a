"""The node side of the broker API (prolog/epilog): MUNGE per request, waiting for a
restarting broker within a deadline, and the broker's refusals in its own words."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from slurm_qpu.broker.client import BrokerClient, BrokerError, munge_payload
from slurm_qpu.munge import MungeError

URL = "http://broker.test:8291"
Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Node:
    """A BrokerClient on a MockTransport, a fake MUNGE and a clock that moves with sleep."""

    answers: list[Handler | Exception]
    deadline: float = 60.0
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request)

    def encode(self, payload: bytes) -> str:
        self.payloads.append(payload)
        return f"cred-{len(self.payloads)}"

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def client(self) -> BrokerClient:
        return BrokerClient(URL, deadline=self.deadline, transport=httpx.MockTransport(self.handle),
                            encode=self.encode, sleep=self.sleep, clock=lambda: self.now)


def ok(body: object) -> Handler:
    return lambda request: httpx.Response(200, json=body)


def status(code: int, **kw: object) -> Handler:
    return lambda request: httpx.Response(code, **kw)  # type: ignore[arg-type]


DOWN = httpx.ConnectError("[Errno 111] Connection refused")


def test_each_request_carries_a_fresh_munge_credential_bound_to_it() -> None:
    node = Node([ok({"state": "acquired"})])
    answer = node.client().acquire(5, qpus="a,b", user="alice", uid=1000, time_limit=600,
                                   overrides='{"a":{}}')
    assert answer == {"state": "acquired"}
    (request,) = node.seen
    assert (request.method, request.url.path) == ("POST", "/v1/leases/5")
    assert request.headers["Authorization"] == "MUNGE cred-1"
    body = json.loads(request.content)
    assert body == {"qpus": "a,b", "user": "alice", "uid": 1000, "time_limit": 600,
                    "overrides": '{"a":{}}'}
    assert node.payloads == [munge_payload("POST", "/v1/leases/5", request.content)]


def test_release_and_the_lease_list() -> None:
    node = Node([ok({"state": "released"})])
    assert node.client().release(5) == {"state": "released"}
    node.answers = [ok([{"job_id": 6}])]
    assert node.client().leases() == [{"job_id": 6}]
    assert [(r.method, r.url.path, r.content) for r in node.seen] == [
        ("DELETE", "/v1/leases/5", b""), ("GET", "/v1/leases", b"")]
    assert node.payloads[0] == munge_payload("DELETE", "/v1/leases/5", b"")


def test_a_broker_that_is_down_is_waited_for_and_then_answers() -> None:
    node = Node([DOWN, DOWN, status(503), ok({"state": "acquired"})])
    answer = node.client().acquire(5, qpus="a", user="alice", uid=1000)
    assert answer == {"state": "acquired"}
    assert node.sleeps == [0.5, 1.0, 2.0]
    assert len(node.payloads) == 4  # a credential per attempt: MUNGE refuses replays


def test_the_wait_for_the_broker_ends_at_the_deadline_with_the_url_and_what_to_check() -> None:
    node = Node([DOWN], deadline=4.0)
    with pytest.raises(BrokerError) as raised:
        node.client().release(5)
    assert str(raised.value) == (
        f"the slurm-qpu broker at {URL} does not answer (ConnectError: [Errno 111] Connection "
        "refused) after 4 s; is it running (systemctl status slurm-qpu-broker)?")
    assert sum(node.sleeps) <= 4.0 and node.sleeps == [0.5, 1.0, 2.0]


def test_a_broker_answering_502_until_the_deadline_is_reported_with_the_status() -> None:
    node = Node([status(502)], deadline=1.0)
    with pytest.raises(BrokerError) as raised:
        node.client().leases()
    assert str(raised.value) == (
        f"the slurm-qpu broker at {URL} does not answer (HTTP 502) after 1 s; is it running "
        "(systemctl status slurm-qpu-broker)?")


def test_a_timeout_without_a_message_is_named_by_its_type() -> None:
    node = Node([httpx.ReadTimeout("")], deadline=0.1)
    with pytest.raises(BrokerError) as raised:
        node.client().leases()
    assert "does not answer (ReadTimeout) after 0.1 s" in str(raised.value)


@pytest.mark.parametrize("answer,message", [
    (status(403, json={"message": "uid 1000 may not manage leases (allowed: 0)"}),
     "uid 1000 may not manage leases (allowed: 0)"),
    (status(404, json={"message": "job 5 has no lease"}), "job 5 has no lease"),
    (status(400, text="not json at all\n"), "not json at all"),
    (status(401), "401"),
    (status(500, json={"message": "internal broker error: KeyError"}),
     "internal broker error: KeyError"),
], ids=["403", "404", "text", "empty", "500"])
def test_a_refusal_is_reported_in_the_brokers_words_without_retrying(
        answer: Handler, message: str) -> None:
    node = Node([answer])
    with pytest.raises(BrokerError) as raised:
        node.client().release(5)
    assert str(raised.value) == f"the slurm-qpu broker refused DELETE /v1/leases/5: {message}"
    assert len(node.seen) == 1 and node.sleeps == []


def test_no_munge_credential_means_no_request() -> None:
    def no_munge(payload: bytes) -> str:
        raise MungeError("munged is not running (socket /run/munge/munge.socket.2 missing)")

    node = Node([ok({})])
    client = node.client()
    client.encode = no_munge
    with pytest.raises(BrokerError) as raised:
        client.release(5)
    assert str(raised.value) == ("munged is not running (socket /run/munge/munge.socket.2 "
                                 "missing) (the broker authenticates nodes with MUNGE)")
    assert node.seen == []


def test_the_credential_binds_method_path_and_body() -> None:
    base = munge_payload("POST", "/v1/leases/5", b"{}")
    assert base.startswith(b"slurm-qpu POST /v1/leases/5 ")
    assert len({base, munge_payload("DELETE", "/v1/leases/5", b"{}"),
                munge_payload("POST", "/v1/leases/6", b"{}"),
                munge_payload("POST", "/v1/leases/5", b"{ }")}) == 4


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_without_a_test_transport_the_client_speaks_http_itself_and_reuses_the_connection(
) -> None:
    import http.server
    import threading

    seen: list[tuple[str, str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, self.headers["Authorization"], body))
            data = json.dumps({"state": "released", "port": self.client_address[1]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_DELETE = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = BrokerClient(f"http://127.0.0.1:{server.server_address[1]}/base",
                              encode=lambda payload: "CRED")
        first = client.acquire(5, qpus="a", user="alice", uid=1000)
        second = client.release(5)
    finally:
        server.shutdown()
    assert [(m, p, a) for m, p, a, _ in seen] == [
        ("POST", "/base/v1/leases/5", "MUNGE CRED"), ("DELETE", "/base/v1/leases/5", "MUNGE CRED")]
    assert json.loads(seen[0][3])["qpus"] == "a"
    assert first["port"] == second["port"]  # one keep-alive connection for both


def test_a_refused_connection_is_named_in_the_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    client = BrokerClient(url, deadline=0.2, encode=lambda payload: "CRED",
                          sleep=lambda s: None)
    with pytest.raises(BrokerError) as raised:
        client.release(5)
    assert str(raised.value) == (
        f"the slurm-qpu broker at {url} does not answer (ConnectionRefusedError: [Errno 111] "
        "Connection refused) after 0.2 s; is it running (systemctl status slurm-qpu-broker)?")


# ------------------------------------------------------------------ the deadline is a deadline
# A broker that accepts and never answers, or drips its answer a byte at a time, must not
# hold a prolog past broker_timeout: every wait of every attempt is cut at what is left.

class Stalling:
    """A real listening socket: accepts, reads the request, and then says nothing
    (``drip=None``) or one byte of a never-ending answer every ``drip`` seconds."""

    def __init__(self, drip: float | None = None) -> None:
        import socket
        import threading

        self.drip = drip
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import threading

        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: Any) -> None:
        import itertools

        answer = itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Slow: yes\r\n"))
        with conn:
            conn.settimeout(0.05)
            while not self.stop.is_set():
                try:
                    if not conn.recv(65536):
                        return  # the client gave up
                except TimeoutError:
                    pass
                except OSError:
                    return
                if self.drip is not None and not self.stop.wait(self.drip):
                    try:
                        conn.sendall(bytes([next(answer)]))
                    except OSError:
                        return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


class RecordingClock:
    """time.monotonic, remembering the first reading (the call's start) and the last."""

    def __init__(self) -> None:
        import time

        self.monotonic = time.monotonic
        self.first: float | None = None
        self.last = 0.0

    def __call__(self) -> float:
        self.last = self.monotonic()
        if self.first is None:
            self.first = self.last
        return self.last


@dataclass
class Timeouts:
    """Every socket timeout the client sets, as (what, seconds, the clock's reading when
    it was computed): each connect (socket.create_connection) and each send and receive
    (bounded.Bounded.settimeout)."""

    clock: RecordingClock = field(default_factory=RecordingClock)
    seen: list[tuple[str, float, float]] = field(default_factory=list)

    def client(self, url: str, **kw: Any) -> BrokerClient:
        return BrokerClient(url, encode=lambda payload: "CRED", clock=self.clock, **kw)


@pytest.fixture
def timeouts(monkeypatch: pytest.MonkeyPatch) -> Timeouts:
    import socket

    from slurm_qpu.broker import bounded

    record = Timeouts()
    real_connect, real_settimeout = socket.create_connection, socket.socket.settimeout

    def create_connection(address: Any, timeout: float, *args: Any) -> socket.socket:
        record.seen.append(("connect", timeout, record.clock.last))
        return real_connect(address, timeout, *args)

    def settimeout(self: socket.socket, value: float | None) -> None:
        record.seen.append(("wait", float("inf") if value is None else value,
                            record.clock.last))
        real_settimeout(self, value)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(bounded.Bounded, "settimeout", settimeout)
    return record


@pytest.mark.timeout(20)  # today's code waited 30 s per attempt, whatever the deadline
@pytest.mark.parametrize("deadline, attempt", [(0.6, 30.0), (1.4, 0.3)],
                         ids=["one-attempt", "attempts-and-pauses"])
def test_a_broker_that_accepts_and_never_answers_is_given_up_at_the_deadline(
        timeouts: Timeouts, deadline: float, attempt: float) -> None:
    server = Stalling()
    clock = timeouts.clock
    try:
        client = timeouts.client(server.url, deadline=deadline, timeout=attempt)
        with pytest.raises(BrokerError) as raised:
            client.acquire(5, qpus="a", user="alice", uid=1000)
    finally:
        server.close()
    assert str(raised.value) == (
        f"the slurm-qpu broker at {server.url} does not answer (TimeoutError: timed out) "
        f"after {deadline:g} s; is it running (systemctl status slurm-qpu-broker)?")
    assert clock.first is not None
    end = clock.first + deadline
    assert {what for what, _, _ in timeouts.seen} == {"connect", "wait"}
    for what, seconds, at in timeouts.seen:  # never longer than what was left when it was set
        assert 0 < seconds <= min(end - at, attempt) + 1e-9, (what, seconds, end - at)
    # a new connection per attempt: 2 when the attempt's own limit leaves time for a retry
    assert server.connections == (1 if attempt > deadline else 2)


@pytest.mark.timeout(20)  # today's code read the drip for ~100 headers: minutes
def test_a_broker_that_drips_its_answer_is_given_up_at_the_deadline(
        timeouts: Timeouts) -> None:
    server = Stalling(drip=0.05)  # each byte well within any single wait's timeout
    clock = timeouts.clock
    try:
        client = timeouts.client(server.url, deadline=1.0)
        with pytest.raises(BrokerError) as raised:
            client.release(5)
    finally:
        server.close()
    assert "does not answer (TimeoutError: timed out) after 1 s" in str(raised.value)
    assert clock.first is not None
    waits = [(seconds, at) for what, seconds, at in timeouts.seen if what == "wait"]
    assert len(waits) > 5  # one per receive of the drip: each one shorter than the last
    assert all(seconds <= clock.first + 1.0 - at + 1e-9 for seconds, at in waits)
    assert [s for s, _ in waits] == sorted((s for s, _ in waits), reverse=True)


@pytest.mark.timeout(20)
def test_a_tls_handshake_that_never_ends_is_given_up_at_the_deadline(
        timeouts: Timeouts) -> None:
    server = Stalling()  # reads the ClientHello and says nothing
    url = server.url.replace("http://", "https://")
    try:
        client = timeouts.client(url, deadline=0.6)
        with pytest.raises(BrokerError) as raised:
            client.release(5)
    finally:
        server.close()
    assert "handshake operation timed out" in str(raised.value)
    assert "after 0.6 s" in str(raised.value)
    assert timeouts.clock.first is not None
    end = timeouts.clock.first + 0.6
    assert timeouts.seen and all(seconds <= end - at + 1e-9 for _, seconds, at in timeouts.seen)


def test_no_attempt_starts_once_the_credential_took_the_time_left() -> None:
    node = Node([ok({})], deadline=5.0)

    def slow_munge(payload: bytes) -> str:
        node.now += 6.0  # munged took longer than the whole deadline
        return "cred"

    client = node.client()
    client.encode = slow_munge
    with pytest.raises(BrokerError) as raised:
        client.release(5)
    assert "does not answer (no attempt made) after 5 s" in str(raised.value)
    assert node.seen == [] and node.sleeps == []


def test_munged_is_given_what_is_left_of_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu import munge

    given: list[float | None] = []

    def encode(payload: bytes, timeout: float | None = None) -> str:
        given.append(timeout)
        node.now += 1.5
        return "cred"

    monkeypatch.setattr(munge, "encode", encode)
    node = Node([DOWN, DOWN, ok({"state": "released"})], deadline=10.0)
    client = node.client()
    client.encode = None  # munged's, as in the plugin
    assert client.release(5) == {"state": "released"}
    # 10 s; then 1.5 s for the credential and a 0.5 s pause; then 1.5 s and 1 s
    assert given == [10.0, 8.0, 5.5]


def test_the_pause_between_attempts_never_runs_past_the_deadline() -> None:
    node = Node([DOWN], deadline=2.9)
    with pytest.raises(BrokerError):
        node.client().release(5)
    assert node.sleeps == [0.5, 1.0] and sum(node.sleeps) <= 2.9


def test_the_plugins_broker_timeout_is_the_clients_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu import munge
    from slurm_qpu.settings import parse_args
    from slurm_qpu.spank.jobscript import _broker

    server = Stalling()
    monkeypatch.setattr(munge, "encode", lambda payload, timeout=None: "CRED")
    try:
        client = _broker(parse_args([f"broker={server.url}", "broker_timeout=0.5"]))
        assert client.deadline == 0.5
        with pytest.raises(BrokerError, match=r"does not answer \(TimeoutError: timed out\) "
                                              r"after 0\.5 s"):
            client.acquire(5, qpus="a", user="alice", uid=1000)
    finally:
        server.close()


# ----------------------------------------------------------- several brokers (broker=A,B)
SECOND = "http://broker2.test:8291"


def by_host(answers: dict[str, Handler | Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers[str(request.url.host)]
        if isinstance(answer, Exception):
            raise answer
        return answer(request)
    return handle


def two_brokers(first: Handler | Exception, second: Handler | Exception,
                node: Node) -> BrokerClient:
    node.answers = [by_host({"broker.test": first, "broker2.test": second})]
    client = node.client()
    client.url = f"{URL},{SECOND}"
    return client


def test_a_broker_that_is_down_is_followed_at_once_by_the_next_one() -> None:
    node = Node([])
    client = two_brokers(DOWN, ok({"state": "acquired"}), node)
    assert client.acquire(5, qpus="a", user="alice", uid=1000) == {"state": "acquired"}
    assert [r.url.host for r in node.seen] == ["broker.test", "broker2.test"]
    assert node.sleeps == []  # no pause before the second broker
    assert len(node.payloads) == 2  # a credential for each attempt
    # the broker that answered is asked first next time
    assert client.release(5) == {"state": "acquired"}
    assert [r.url.host for r in node.seen][2:] == ["broker2.test"]


def test_a_broker_answering_503_is_followed_by_the_next_one() -> None:
    node = Node([])
    client = two_brokers(status(503), ok([]), node)
    assert client.leases() == []
    assert [r.url.host for r in node.seen] == ["broker.test", "broker2.test"]


def test_a_refusal_from_the_first_broker_is_final_and_the_second_is_not_asked() -> None:
    node = Node([])
    client = two_brokers(status(403, json={"message": "uid 1000 may not manage leases"}),
                         ok([]), node)
    with pytest.raises(BrokerError, match="uid 1000 may not manage leases"):
        client.leases()
    assert [r.url.host for r in node.seen] == ["broker.test"]


def test_with_no_broker_answering_a_pause_comes_after_each_round_and_the_error_names_each(
) -> None:
    node = Node([], deadline=4.0)
    client = two_brokers(DOWN, status(502), node)
    with pytest.raises(BrokerError) as raised:
        client.release(5)
    assert str(raised.value) == (
        f"no slurm-qpu broker answers ({URL}: ConnectError: [Errno 111] Connection refused; "
        f"{SECOND}: HTTP 502) after 4 s; is one running (systemctl status slurm-qpu-broker on "
        "each)?")
    assert node.sleeps == [0.5, 1.0, 2.0]  # between rounds, never between brokers
    assert [r.url.host for r in node.seen] == ["broker.test", "broker2.test"] * 4


def test_a_broker_that_swallows_connections_leaves_the_next_one_its_share_of_the_deadline(
) -> None:
    import http.server
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_DELETE(self) -> None:
            data = json.dumps({"state": "released"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    silent = Stalling()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = BrokerClient(f"{silent.url},http://127.0.0.1:{server.server_address[1]}",
                              deadline=2.0, encode=lambda payload: "CRED")
        started = time.monotonic()
        assert client.release(5) == {"state": "released"}
        # the silent one had half of the deadline, not all of it: one deadline, two brokers
        assert time.monotonic() - started < 1.9
        assert silent.connections == 1
    finally:
        server.shutdown()
        silent.close()


def test_the_plugin_takes_several_brokers_and_refuses_a_list_with_a_wrong_url() -> None:
    from slurm_qpu.settings import SettingsError, parse_args
    from slurm_qpu.spank.jobscript import _broker

    settings = parse_args([f"broker={URL}/,{SECOND}"])
    assert _broker(settings).urls == [URL, SECOND]
    with pytest.raises(SettingsError, match=r"broker=http://a:1,b:2: expected the broker's "
                                            r"URL.*or several separated by commas"):
        parse_args(["broker=http://a:1,b:2"])
