"""Where one request ends and the next begins, decided one way only. Behind a proxy that
reuses connections (the docs recommend TLS in front of the broker), a body the broker reads
differently from the proxy becomes the next client's request: request smuggling, which can
capture another job's bearer token. And a body's declared sizes must never decide what the
broker holds in memory."""

from __future__ import annotations

import json
import logging

import pytest
from harness import BrokerUnderTest, StartBroker, bearer, fake_credential
from wire import exchange, request

from slurm_qpu.broker.client import munge_payload
from slurm_qpu_emulator import Emulator

HEALTH = request("GET", "/v1/health")
SMUGGLED = request("GET", "/v1/catalog")  # answers with the QPU list: easy to tell apart


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"])


@pytest.fixture
def token(b: BrokerUnderTest) -> str:
    return str(b.acquire(41, "ibm_manila")["env"]["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"])


def no_internal_errors(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if "internal error" in r.getMessage()]


def chunked_post(path: str, token: str, body: bytes) -> bytes:
    return request("POST", path, {**bearer(token), "Transfer-Encoding": "chunked",
                                  "Content-Type": "application/json"}, body, length=False)


@pytest.mark.parametrize("size", [b"-1", b"-0", b"zz", b"0x10", b"1 1", b"+a", b"", b"\xff",
                                  b"1" * 40])
def test_a_malformed_chunk_size_is_a_400_not_an_internal_error(
        b: BrokerUnderTest, token: str, caplog: pytest.LogCaptureFixture, size: bytes) -> None:
    caplog.set_level(logging.ERROR)
    body = size + b"\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"
    replies, closed = exchange(b.url, chunked_post("/p/ibm_manila/api/v1/jobs", token, body))
    assert [r.status for r in replies] == [400], replies
    assert "malformed chunked body" in replies[0].message
    assert closed
    assert no_internal_errors(caplog)
    assert [r.status for r in exchange(b.url, HEALTH)[0]] == [200]


def test_a_chunk_over_the_limit_is_refused_before_it_is_read(
        b: BrokerUnderTest, token: str) -> None:
    # 16 TiB declared, nothing sent: the answer must come without waiting for it
    head = chunked_post("/p/ibm_manila/api/v1/jobs", token, b"fffffffffff\r\nabc")
    replies, closed = exchange(b.url, head)
    assert [r.status for r in replies] == [413] and closed
    assert "over the broker's limit" in replies[0].message


def test_the_node_api_checks_munge_before_it_reads_a_body(b: BrokerUnderTest) -> None:
    """An unauthenticated client declaring a body and never sending it is answered at once
    (the broker used to read, and buffer, the body first)."""
    for headers in ({"Content-Length": "60000"}, {"Transfer-Encoding": "chunked"}):
        # (what it did not read is waited for a moment, then the connection closed)
        replies, closed = exchange(b.url, request("POST", "/v1/leases/1", headers), settle=3)
        assert [r.status for r in replies] == [401], headers
        assert replies[0].message == "node requests need a MUNGE credential"
        assert closed  # the body it did not read cannot be left to the next request
    forged = {"Authorization": "MUNGE FAKE:bm90IGpzb24=", "Content-Length": "60000"}
    replies, _ = exchange(b.url, request("POST", "/v1/leases/1", forged))
    assert [r.status for r in replies] == [401]


def test_a_node_request_body_is_bounded_and_bound_to_its_credential(
        b: BrokerUnderTest) -> None:
    body = json.dumps({"qpus": "sim_a"}).encode()
    credential = fake_credential(munge_payload("POST", "/v1/leases/2", b"{}"))
    replies, _ = exchange(b.url, request("POST", "/v1/leases/2",
                                         {"Authorization": f"MUNGE {credential}"}, body))
    assert [r.status for r in replies] == [401]
    assert replies[0].message == "the MUNGE credential was made for another request"
    big = b" " * (64 * 1024 + 1)
    credential = fake_credential(munge_payload("POST", "/v1/leases/2", big))
    replies, closed = exchange(b.url, request("POST", "/v1/leases/2",
                                              {"Authorization": f"MUNGE {credential}"}, big))
    assert [r.status for r in replies] == [413] and closed


@pytest.mark.parametrize("headers", [
    {"Content-Length": "5", "Transfer-Encoding": "chunked"},
    {"Transfer-Encoding": "chunked", "Content-Length": "0"},
])
def test_a_request_with_both_a_length_and_chunks_is_refused_and_its_connection_closed(
        b: BrokerUnderTest, headers: dict[str, str]) -> None:
    replies, closed = exchange(b.url, request("GET", "/v1/health", headers, length=False)
                               + b"0\r\n\r\n" + SMUGGLED)
    assert [r.status for r in replies] == [400], replies
    assert replies[0].message == ("a request may not have both Content-Length and "
                                  "Transfer-Encoding")
    assert closed


@pytest.mark.parametrize("coding", ["xchunked", "chunked, identity", "gzip, chunked",
                                    "identity", "chunked;q=1", "chunkedx", "\tchunked\x0b"])
def test_only_exactly_chunked_is_accepted_as_a_transfer_coding(
        b: BrokerUnderTest, coding: str) -> None:
    replies, closed = exchange(b.url, request("POST", "/v1/health",
                                              {"Transfer-Encoding": coding}, length=False)
                               + b"0\r\n\r\n" + SMUGGLED)
    assert [r.status for r in replies] == [501], (coding, replies)
    assert closed


def test_two_transfer_encoding_fields_are_refused(b: BrokerUnderTest) -> None:
    raw = (b"POST /v1/health HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    replies, closed = exchange(b.url, raw + SMUGGLED)
    assert [r.status for r in replies] == [501] and closed


@pytest.mark.parametrize("value", ["5, 5", "+5", "-1", "0x5", "5 5", "5_0", "", "\u0661"])
def test_a_malformed_content_length_is_refused(b: BrokerUnderTest, value: str) -> None:
    raw = f"POST /v1/health HTTP/1.1\r\nHost: b\r\nContent-Length: {value}\r\n\r\n".encode()
    replies, closed = exchange(b.url, raw + b"hello" + SMUGGLED)
    assert [r.status for r in replies] == [400], (value, replies)
    assert replies[0].message == "Content-Length must be given once, as a decimal number"
    assert closed


def test_two_content_lengths_are_refused_even_when_equal(b: BrokerUnderTest) -> None:
    raw = (b"POST /v1/health HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n"
           b"Content-Length: 5\r\n\r\nhello")
    replies, closed = exchange(b.url, raw + SMUGGLED)
    assert [r.status for r in replies] == [400] and closed


def routes(token: str) -> dict[str, tuple[str, str, dict[str, str]]]:
    """Routes that answer without reading a body: public ones, the IAM exchange the broker
    answers itself, refusals."""
    return {
        "health": ("GET", "/v1/health", {}),
        "metrics": ("GET", "/metrics", {}),
        "catalog": ("GET", "/v1/catalog", {}),
        "status": ("GET", "/v1/status", {}),
        "iam exchange": ("POST", "/p/ibm_manila/identity/token", bearer(token)),
        "unknown route": ("POST", "/v1/nothing-here", {}),
        "proxy without token": ("POST", "/p/ibm_manila/api/v1/jobs", {}),
        "qpu not held": ("POST", "/p/sim_a/api/v1/jobs", bearer(token)),
    }


@pytest.mark.parametrize("route", sorted(routes("t")))
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_a_route_does_not_read_never_becomes_the_next_request(
        b: BrokerUnderTest, token: str, route: str, framing: str) -> None:
    method, path, headers = routes(token)[route]
    if framing == "length":
        first = request(method, path, headers, SMUGGLED)
    else:
        first = request(method, path, {**headers, "Transfer-Encoding": "chunked"},
                        b"%x\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED), length=False)
    replies, closed = exchange(b.url, first + HEALTH)
    # the smuggled request is never answered: either the body was read and dropped (and the
    # health check that follows is answered) or the connection closed after the first answer
    assert not any(r.status == 200 and b"ibm_manila" in r.body and b"status" not in r.body
                   for r in replies[1:]), replies
    assert len(replies) in (1, 2), replies
    if len(replies) == 1:
        assert closed
    else:
        assert replies[1].status == 200 and replies[1].json()["status"] == "ok"


def test_a_large_body_a_route_does_not_read_closes_the_connection(b: BrokerUnderTest) -> None:
    replies, closed = exchange(b.url, request("GET", "/v1/health", {},
                                              b"x" * (1024 * 1024)) + HEALTH)
    assert [r.status for r in replies] == [200] and closed


def test_request_line_and_headers_over_the_limit_are_refused(b: BrokerUnderTest) -> None:
    headers = {f"X-Filler-{k}": "y" * 1000 for k in range(90)}
    replies, closed = exchange(b.url, request("GET", "/v1/health", headers))
    assert [r.status for r in replies] == [431] and closed
    replies, closed = exchange(b.url, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert [r.status for r in replies] in ([414], [431]) and closed


@pytest.mark.parametrize("raw", [
    b"GET /v1/health HTTP/1.1\r\nHost: b\r\nContent-Length : %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: b\r\nX-Harmless : 1\r\nContent-Length: %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: b\r\nX-Folded: a\r\n b\r\nContent-Length: %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: b\nContent-Length: %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\nHost: b\r\nContent-Length: %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: b\r\n: empty name\r\nContent-Length: %d\r\n\r\n",
    b"POST /v1/health HTTP/1.1\r\nHost: b\r\nX\x00Y: 1\r\nContent-Length: %d\r\n\r\n",
], ids=["space-before-colon", "space-before-colon-earlier", "folded", "bare-lf-header",
        "bare-lf-request-line", "empty-name", "nul-in-name"])
def test_header_lines_another_parser_could_read_differently_are_refused(
        b: BrokerUnderTest, raw: bytes) -> None:
    replies, closed = exchange(b.url, raw % len(SMUGGLED) + SMUGGLED)
    assert [r.status for r in replies] == [400], replies
    assert closed


def test_a_chunk_line_ended_by_a_bare_lf_is_refused(b: BrokerUnderTest, token: str) -> None:
    replies, closed = exchange(b.url, chunked_post("/p/ibm_manila/api/v1/jobs", token,
                                                   b"2\nxx\r\n0\r\n\r\n"))
    assert [r.status for r in replies] == [400] and closed
