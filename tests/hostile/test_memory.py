"""What a job can make the broker hold in memory: a body a view reads is bounded before
and after decompression, JSON is counted at what parsing it costs, every buffered byte
comes out of one broker-wide budget (past it: 503 and Retry-After, not growth), and a job
has a bounded number of requests in progress."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from harness import BrokerUnderTest, StartBroker, bearer
from wire import connect, read_replies, request, wait_until

from slurm_qpu.broker.admission import json_cost
from slurm_qpu.broker.limits import Limits
from slurm_qpu_emulator import Emulator, Fault

MiB = 1024 * 1024


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"],
                        limits=Limits(max_parsed=MiB, buffered=4 * MiB, in_flight=2))


def pasqal_token(b: BrokerUnderTest, job_id: int) -> str:
    return str(b.acquire(job_id, "EMU_FREE")["env"]["EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN"])


def post_batch(b: BrokerUnderTest, token: str, body: bytes,
               encoding: str | None = None) -> httpx.Response:
    headers = {**bearer(token), "Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return httpx.post(f"{b.url}/p/EMU_FREE/core-fast/api/v1/batches", content=body,
                      headers=headers, timeout=30)


def test_a_gzip_bomb_is_inflated_no_further_than_what_a_view_reads(
        b: BrokerUnderTest) -> None:
    token = pasqal_token(b, 51)
    bomb = gzip.compress(b'{"device_type": "EMU_FREE", "x": "' + b"0" * (64 * MiB) + b'"}')
    assert len(bomb) < 100 * 1024
    answer = post_batch(b, token, bomb, "gzip")
    assert answer.status_code == 413, answer.text
    assert answer.json()["message"] == ("request body is over the broker's limit of "
                                        f"{MiB} bytes")
    assert wait_until(lambda: b.broker.memory.used == 0)  # given back


def test_json_is_counted_at_what_parsing_it_would_cost(b: BrokerUnderTest) -> None:
    token = pasqal_token(b, 52)
    body = b'{"device_type": "EMU_FREE", "x": [' + b"{}," * 300_000 + b"{}]}"
    assert len(body) < MiB < json_cost(body)
    answer = post_batch(b, token, body)
    assert answer.status_code == 413, answer.text
    assert answer.json()["message"].startswith("checking the request body would need ")
    assert wait_until(lambda: b.broker.memory.used == 0)


def ibm_job(b: BrokerUnderTest, job_id: int) -> tuple[str, str]:
    """A job on ibm_manila: its token and its session."""
    env = b.acquire(job_id, "ibm_manila")["env"]
    return env["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"], env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]


@contextmanager
def half_sent_body(b: BrokerUnderTest, job: tuple[str, str],
                   sent: int) -> Iterator[socket.socket]:
    """A chunked request to the job's session, which the broker buffers whole before the
    vendor hears of it, stopped after ``sent`` bytes of body."""
    token, session = job
    with connect(b.url) as sock:
        sock.sendall(request("PATCH", f"/p/ibm_manila/api/v1/sessions/{session}",
                             {**bearer(token), "Transfer-Encoding": "chunked"}, b"",
                             length=False) + b"%x\r\n" % sent + b"x" * sent + b"\r\n")
        yield sock


def test_buffered_bodies_share_one_budget_and_past_it_the_broker_says_retry(
        b: BrokerUnderTest) -> None:
    with half_sent_body(b, ibm_job(b, 53), 3 * MiB):
        assert wait_until(lambda: b.broker.memory.used >= 3 * MiB)
        with half_sent_body(b, ibm_job(b, 54), 2 * MiB) as sock:
            replies, _ = read_replies(sock)
            assert [r.status for r in replies] == [503], replies
            assert replies[0].message == ("the broker is holding as many request bytes in "
                                          "memory as it may; try again shortly")
            assert replies[0].headers["retry-after"] == "1"
    assert wait_until(lambda: b.broker.memory.used == 0)


def test_a_job_has_a_bounded_number_of_requests_in_progress(
        b: BrokerUnderTest, emulator: Emulator) -> None:
    token, other = ibm_job(b, 55)[0], ibm_job(b, 56)[0]
    url = f"{b.url}/p/ibm_manila/api/v1/backends/ibm_manila/properties"
    emulator.inject(Fault(path="/properties", delay=2.0, count=2))
    slow = [threading.Thread(target=httpx.get, args=(url,),
                             kwargs={"headers": bearer(token), "timeout": 10})
            for _ in range(2)]
    try:
        for thread in slow:
            thread.start()
        assert wait_until(lambda: len(b.broker.in_flight) == 1 and
                          b.broker.in_flight._count.get(55) == 2)
        third = httpx.get(url, headers=bearer(token))
        assert third.status_code == 429
        assert third.json()["message"] == ("job 55 already has 2 requests in progress "
                                           "through the broker, its limit; wait for one "
                                           "to end")
        assert httpx.get(url, headers=bearer(other)).status_code == 200  # other jobs go on
    finally:
        for thread in slow:
            thread.join()
        emulator.clear_faults()
    assert httpx.get(url, headers=bearer(token)).status_code == 200
    assert json.loads(httpx.get(f"{b.url}/v1/health").text)["status"] == "ok"


def test_one_job_cannot_take_the_whole_budget_and_prologs_never_wait_for_it(
        emulator: Emulator, start_broker: StartBroker) -> None:
    b = start_broker(emulator.qrmi_config()["resources"],
                     limits=Limits(buffered=4 * MiB, buffered_share=2 * MiB))
    hog, other = ibm_job(b, 57), ibm_job(b, 58)
    with half_sent_body(b, hog, MiB - 1024):
        assert wait_until(lambda: b.broker.memory.held_by("job 57") >= MiB - 1024)
        with half_sent_body(b, hog, MiB - 1024):
            assert wait_until(lambda: b.broker.memory.held_by("job 57") >= 2 * MiB - 2048)
            with half_sent_body(b, hog, 512 * 1024) as sock:
                replies, _ = read_replies(sock)
                assert [r.status for r in replies] == [503], replies
                assert replies[0].message == ("job 57 holds as many request bytes in the "
                                              "broker's memory as one may; try again shortly")
            with half_sent_body(b, other, MiB - 1024), half_sent_body(b, other, MiB - 1024):
                # the budget is full now: a prolog still gets its QPU
                assert wait_until(lambda: b.broker.memory.used >= 4 * MiB - 4096)
                assert b.acquire(59, "ibm_manila")["state"] == "acquired"
    assert wait_until(lambda: b.broker.memory.used == 0)
