"""The broker's Prometheus endpoint: values after a known sequence of lease operations and
proxied requests, in a format Prometheus's own parser reads, with no job id or user in it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from harness import BrokerUnderTest, StartBroker, sim_resources
from prometheus_client.parser import text_string_to_metric_families

from slurm_qpu.broker.metrics import Counter, Histogram


def scrape(b: BrokerUnderTest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{b.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


@pytest.fixture
def b(start_broker: StartBroker, tmp_path: Path) -> BrokerUnderTest:
    return start_broker(sim_resources(tmp_path / "ledger.jsonl",
                                      sim_b={"ACQUIRE_ERROR": "sim_b is calibrating"}))


def test_metrics_after_a_known_sequence_of_jobs(b: BrokerUnderTest) -> None:
    b.acquire(1, "sim_a")
    b.acquire(2, "sim_b")  # the vendor refuses
    b.node().release(1)
    b.acquire(3, "sim_a")  # still held when scraped
    b.acquire(3, "sim_a")  # the job's second node: the same lease, no second acquisition
    m = scrape(b)
    assert m[("slurm_qpu_leases_active", (("qpu", "sim_a"),))] == 1
    assert m[("slurm_qpu_leases_active", (("qpu", "sim_b"),))] == 0
    assert m[("slurm_qpu_acquire_seconds_count", (("outcome", "acquired"),))] == 2
    assert m[("slurm_qpu_acquire_seconds_count", (("outcome", "failed"),))] == 1
    assert m[("slurm_qpu_release_seconds_count", (("outcome", "released"),))] == 1
    errors = {labels: v for (name, labels), v in m.items()
              if name == "slurm_qpu_vendor_errors_total"}
    [(labels, value)] = errors.items()
    assert dict(labels) | {"error": "-"} == {"qpu": "sim_b", "type": "local-simulator",
                                            "op": "acquire", "error": "-"}
    assert dict(labels)["error"] and value == 1


def test_proxied_requests_are_counted_by_qpu_and_status(b: BrokerUnderTest) -> None:
    for _ in range(2):
        httpx.get(f"{b.url}/p/sim_a/anything", headers={"Authorization": "Bearer nope"})
    m = scrape(b)
    counted = {dict(labels)["status"]: v for (name, labels), v in m.items()
               if name == "slurm_qpu_proxy_requests_total"}
    assert counted == {"401": 2}
    assert sum(v for (name, _), v in m.items()
               if name == "slurm_qpu_proxy_request_seconds_count") == 2


def test_metrics_name_no_job_and_no_user(b: BrokerUnderTest) -> None:
    b.acquire(4242, "sim_a", user="alice")
    text = httpx.get(f"{b.url}/metrics").text
    assert "4242" not in text
    assert "alice" not in text


def test_histogram_buckets_are_cumulative_and_end_in_inf() -> None:
    h = Histogram("t_seconds", "test", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.7, 5.0):
        h.observe(value, qpu="q")
    lines = h.render()
    assert 't_seconds_bucket{qpu="q",le="0.1"} 1' in lines
    assert 't_seconds_bucket{qpu="q",le="1"} 3' in lines
    assert 't_seconds_bucket{qpu="q",le="+Inf"} 4' in lines
    assert 't_seconds_count{qpu="q"} 4' in lines


def test_label_values_are_escaped() -> None:
    c = Counter("t_total", "test")
    c.inc(error='say "hi"\\now')
    assert c.render()[-1] == 't_total{error="say \\"hi\\"\\\\now"} 1'
