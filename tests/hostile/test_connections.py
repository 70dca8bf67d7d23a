"""Connections and time: a client that opens many connections, or holds them open idle, or
sends its request a byte at a time, costs the broker a bounded share and is cut off; the
other clients (the prologs of other jobs, on other nodes) are still served."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import BrokerUnderTest, StartBroker, fake_credential, sim_resources
from wire import connect, exchange, read_replies, request, wait_until

from slurm_qpu.broker.client import munge_payload
from slurm_qpu.broker.limits import Limits

HEALTH = request("GET", "/v1/health")
ATTACKER, OTHER_NODE = "127.0.0.2", "127.0.0.3"


def small_limits(**kw: float) -> Limits:
    values = {"connections": 12, "per_client": 4, "header_seconds": 0.5,
              "idle_seconds": 0.5, "body_seconds": 3.0, **kw}
    return Limits(**values)  # type: ignore[arg-type]


@pytest.fixture
def b(start_broker: StartBroker, tmp_path: Path) -> BrokerUnderTest:
    return start_broker(sim_resources(tmp_path / "ledger"), limits=small_limits())


@contextlib.contextmanager
def idle_connections(url: str, count: int, source: str) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            socks.append(connect(url, source))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def open_connections(b: BrokerUnderTest) -> int:
    assert b.broker._server is not None
    return b.broker._server.open_connections()


def serving(b: BrokerUnderTest) -> int:
    assert b.broker._server is not None
    return b.broker._server.serving()


@contextlib.contextmanager
def busy_connections(url: str, count: int, source: str) -> Iterator[list[socket.socket]]:
    """Connections in the middle of a request: a node request (a root MUNGE credential)
    whose body is still to come."""
    with idle_connections(url, count, source) as socks:
        for sock in socks:
            credential = fake_credential(munge_payload("POST", "/v1/leases/3", b"x" * 900))
            sock.sendall(request("POST", "/v1/leases/3", {
                "Authorization": f"MUNGE {credential}", "Content-Length": "900"}))
        yield socks


def test_idle_connections_make_room_for_new_ones(start_broker: StartBroker,
                                                 tmp_path: Path) -> None:
    """Holding connections open costs a client nothing once the broker is full: the one
    that waited longest for a request goes, and the newcomer (a prolog sends its request
    at once) is served."""
    b = start_broker(sim_resources(tmp_path / "ledger"), limits=small_limits(idle_seconds=30))
    with idle_connections(b.url, 4, ATTACKER) as socks:
        assert wait_until(lambda: open_connections(b) == 4)
        assert [r.status for r in exchange(b.url, HEALTH, source=ATTACKER)[0]] == [200]
        assert read_replies(socks[0], timeout=5) == ([], True)  # the oldest was closed
        assert open_connections(b) <= 4
        for sock in socks[1:]:  # the others still open
            sock.sendall(HEALTH)
            assert [r.status for r in read_replies(sock, expect=1)[0]] == [200]
    with contextlib.ExitStack() as stack:
        for k in range(3):
            stack.enter_context(idle_connections(b.url, 4, f"127.0.1.{k + 1}"))
        assert wait_until(lambda: open_connections(b) == 12)
        assert [r.status for r in exchange(b.url, HEALTH, source="127.0.2.1")[0]] == [200]
        assert b.acquire(5, "sim_a")["state"] == "acquired"  # a prolog from another node
        assert open_connections(b) <= 12


def test_a_client_whose_connections_are_all_busy_gets_a_503_and_others_are_served(
        b: BrokerUnderTest) -> None:
    with busy_connections(b.url, 4, ATTACKER):
        assert wait_until(lambda: serving(b) == 4)
        replies, closed = exchange(b.url, HEALTH, source=ATTACKER)
        assert [r.status for r in replies] == [503] and closed
        assert replies[0].message == ("4 connections are open from 127.0.0.2, the limit per "
                                      "client; try again shortly")
        assert replies[0].headers["retry-after"] == "1"
        assert [r.status for r in exchange(b.url, HEALTH, source=OTHER_NODE)[0]] == [200]
    assert wait_until(lambda: open_connections(b) == 0)
    assert [r.status for r in exchange(b.url, HEALTH, source=ATTACKER)[0]] == [200]


def test_the_broker_wide_connection_limit_holds_when_every_connection_is_busy(
        b: BrokerUnderTest) -> None:
    with contextlib.ExitStack() as stack:
        for k in range(3):
            stack.enter_context(busy_connections(b.url, 4, f"127.0.1.{k + 1}"))
        assert wait_until(lambda: serving(b) == 12)
        replies, _ = exchange(b.url, HEALTH, source="127.0.2.1")
        assert [r.status for r in replies] == [503]
        assert re.fullmatch(r"the broker has 12 connections open, its limit; try again "
                            r"shortly", replies[0].message)


def test_idle_connections_are_closed_and_free_their_place(b: BrokerUnderTest) -> None:
    with idle_connections(b.url, 4, ATTACKER) as socks:
        for sock in socks:  # the broker closes each once idle_seconds have passed
            assert read_replies(sock, timeout=5) == ([], True)
        assert wait_until(lambda: open_connections(b) == 0)
    # a kept-alive connection after its answer: closed too once idle
    with connect(b.url, ATTACKER) as sock:
        sock.sendall(HEALTH)
        replies, closed = read_replies(sock, timeout=5, settle=5)
        assert [r.status for r in replies] == [200] and closed


def drip(sock: socket.socket, data: bytes, every: float = 0.1, within: float = 5.0) -> bool:
    """Send ``data`` a byte at a time; whether the broker cut the connection before the
    client was done (or ``within`` seconds had passed)."""
    end = time.monotonic() + within
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return True
        time.sleep(every)
        if time.monotonic() > end:
            return False
    return False


def test_a_client_dripping_its_headers_is_cut_off(b: BrokerUnderTest) -> None:
    # one byte every 0.3 s, within one header line: no single read waits the idle time
    with connect(b.url, ATTACKER) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nX-Pad: ")
        assert drip(sock, b"y" * 100, every=0.3)
    assert wait_until(lambda: open_connections(b) == 0)


def test_a_client_dripping_its_body_is_cut_off(b: BrokerUnderTest) -> None:
    credential = fake_credential(munge_payload("POST", "/v1/leases/1", b"x" * 400))
    with connect(b.url, ATTACKER) as sock:
        sock.sendall(request("POST", "/v1/leases/1", {"Authorization": f"MUNGE {credential}",
                                                      "Content-Length": "400"}))
        assert drip(sock, b"x" * 400, every=0.3)
    assert wait_until(lambda: open_connections(b) == 0)


def test_a_chunk_size_line_dripped_a_byte_at_a_time_is_cut_off(b: BrokerUnderTest) -> None:
    credential = fake_credential(munge_payload("POST", "/v1/leases/1", b""))
    with connect(b.url, ATTACKER) as sock:
        sock.sendall(request("POST", "/v1/leases/1", {"Authorization": f"MUNGE {credential}",
                                                      "Transfer-Encoding": "chunked"},
                             length=False))
        assert drip(sock, b"0" * 100, every=0.3)
    assert wait_until(lambda: open_connections(b) == 0)


def test_the_unit_allows_far_more_descriptors_than_the_broker_opens_connections() -> None:
    unit = (Path(__file__).parents[2] / "systemd" / "slurm-qpu-broker.service").read_text()
    (limit,) = re.findall(r"^LimitNOFILE=(\d+)$", unit, re.M)
    defaults = Limits()
    # every connection costs a descriptor, and an upstream one at most; the journal, logs,
    # munged and squeue a few more
    assert int(limit) >= 2 * defaults.connections + 1024
    assert defaults.per_client < defaults.connections


def test_a_connection_no_thread_could_take_is_not_counted_forever(
        b: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    server = b.broker._server
    assert server is not None

    def no_thread(request: object, client_address: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(server.threads, "submit", no_thread)
    for _ in range(3):
        with connect(b.url, ATTACKER) as sock:
            read_replies(sock, timeout=2)
    monkeypatch.undo()
    assert wait_until(lambda: open_connections(b) == 0)
    assert [r.status for r in exchange(b.url, HEALTH, source=ATTACKER)[0]] == [200]
