"""Behind a load balancer (HAProxy, docs/operations.md) every client reaches the broker
from one address. Trusted with --trusted-proxy, that address is not capped per address,
and each request counts as the client's that the X-Forwarded-For it appended names; from
anyone else, X-Forwarded-For is a client's own words and changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harness import BrokerUnderTest, StartBroker, bearer, sim_resources
from test_connections import busy_connections, serving
from wire import exchange, request, status, wait_until

from slurm_qpu.broker.limits import Limits
from slurm_qpu_emulator import Emulator

BALANCER, ATTACKER, OTHER_NODE = "127.0.0.4", "127.0.0.2", "127.0.0.3"
GUESS = "sqpu_71_1_" + "A" * 43


def guess(forwarded_for: str | None = None) -> bytes:
    headers = bearer(GUESS)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return request("GET", "/p/ibm_manila/api/v1/backends", headers)


@pytest.fixture
def b(emulator: Emulator, start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker(emulator.qrmi_config()["resources"],
                        limits=Limits(auth_failures=0.01, auth_burst=5,
                                      trusted_proxies=frozenset({BALANCER})))


def test_a_forwarded_for_header_from_anyone_but_the_load_balancer_changes_nothing(
        b: BrokerUnderTest) -> None:
    # an attacker naming other addresses in each request is still slowed down as itself
    statuses = [status(b.url, guess(f"10.0.0.{k}"), ATTACKER) for k in range(6)]
    assert statuses == [401] * 5 + [429]
    replies, _ = exchange(b.url, guess("10.0.0.9"), source=ATTACKER, expect=1)
    assert replies[0].message.startswith("too many failed authentications from 127.0.0.2;")


def test_behind_the_load_balancer_each_client_is_slowed_down_alone(
        b: BrokerUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    token = b.acquire(72, "ibm_manila")["env"]["ibm_manila_QRMI_IBM_QCS_IAM_APIKEY"]
    # the attacker's own X-Forwarded-For comes first; HAProxy appends the address it saw
    forged = "10.0.0.2, 10.0.0.1"
    with caplog.at_level(logging.INFO, "slurm_qpu.audit"):
        statuses = [status(b.url, guess(forged), BALANCER) for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    replies, _ = exchange(b.url, guess(forged), source=BALANCER, expect=1)
    assert replies[0].message.startswith("too many failed authentications from 10.0.0.1;")
    # another client through the same load balancer is served
    good = bearer(token)
    assert status(b.url, request("GET", "/p/ibm_manila/api/v1/backends",
                                 {**good, "X-Forwarded-For": "10.0.0.2"}), BALANCER) == 200
    # the audit log names the clients, never the load balancer
    proxied = [r.getMessage() for r in caplog.records
               if r.name == "slurm_qpu.audit" and "/p/ibm_manila/" in r.getMessage()]
    assert proxied and all(line.endswith((" client=10.0.0.1", " client=10.0.0.2"))
                           for line in proxied), proxied


def test_the_load_balancers_connections_are_not_capped_per_address(
        start_broker: StartBroker, tmp_path: Path) -> None:
    b = start_broker(sim_resources(tmp_path / "ledger"),
                     limits=Limits(connections=12, per_client=4, header_seconds=0.5,
                                   idle_seconds=0.5, body_seconds=3.0,
                                   trusted_proxies=frozenset({BALANCER})))
    health = request("GET", "/v1/health")
    with busy_connections(b.url, 6, BALANCER):
        assert wait_until(lambda: serving(b) == 6)  # more than per_client, all in
        assert [r.status for r in exchange(b.url, health, source=BALANCER)[0]] == [200]
    with busy_connections(b.url, 4, OTHER_NODE):  # any other address keeps its cap
        assert wait_until(lambda: serving(b) == 4)
        replies, _ = exchange(b.url, health, source=OTHER_NODE)
        assert [r.status for r in replies] == [503]


def test_a_trusted_network_and_a_forwarded_for_that_is_no_address(
        emulator: Emulator, start_broker: StartBroker) -> None:
    b = start_broker(emulator.qrmi_config()["resources"],
                     limits=Limits(auth_failures=0.01, auth_burst=2,
                                   trusted_proxies=frozenset({"127.0.0.0/29"})))
    # 127.0.0.4 is in the trusted network: its X-Forwarded-For counts
    statuses = [status(b.url, guess("10.1.1.1"), BALANCER) for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert status(b.url, guess("10.1.1.2"), BALANCER) == 401  # another client
    # what is no address is not taken at its word: the balancer's own address counts
    statuses = [status(b.url, guess("<script>"), BALANCER) for _ in range(3)]
    assert statuses == [401, 401, 429]
    replies, _ = exchange(b.url, guess("not-an-ip"), source=BALANCER, expect=1)
    assert replies[0].message.startswith(f"too many failed authentications from {BALANCER};")
