"""The broker's node API over HTTP: MUNGE-authenticated acquire/release for prologs and
epilogs (root only), and the unauthenticated health and catalog."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from harness import (
    BrokerUnderTest,
    StartBroker,
    fake_credential,
    raw,
    read_ledger,
    sim_resources,
    wait_for,
)

from slurm_qpu.broker.client import BrokerError, munge_payload


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


@pytest.fixture
def b(start_broker: StartBroker, ledger: Path) -> BrokerUnderTest:
    return start_broker(sim_resources(ledger))


def munge(method: str, path: str, body: bytes = b"", uid: int = 0) -> dict[str, str]:
    return {"Authorization": "MUNGE " + fake_credential(munge_payload(method, path, body), uid)}


def test_a_node_request_without_a_credential_is_refused(b: BrokerUnderTest) -> None:
    answer = httpx.post(f"{b.url}/v1/leases/5", content=b"{}")
    assert answer.status_code == 401
    assert answer.json()["message"] == "node requests need a MUNGE credential"
    answer = httpx.get(f"{b.url}/v1/leases", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 401
    assert b.service.journal.current(5) is None


def test_a_bad_credential_is_refused_with_munges_reason(b: BrokerUnderTest) -> None:
    answer = httpx.delete(f"{b.url}/v1/leases/5", headers={"Authorization": "MUNGE garbage"})
    assert answer.status_code == 401
    assert answer.json()["message"] == "MUNGE credential refused: Invalid credential format"


def test_a_credential_made_for_another_request_is_refused(b: BrokerUnderTest) -> None:
    body = json.dumps({"qpus": "sim_a", "uid": 1000}).encode()
    for headers in (munge("DELETE", "/v1/leases/5"),  # another method
                    munge("POST", "/v1/leases/6", body),  # another job
                    munge("POST", "/v1/leases/5", b"{}")):  # another body
        answer = httpx.post(f"{b.url}/v1/leases/5", content=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["message"] == "the MUNGE credential was made for another request"
    assert b.service.journal.current(5) is None


def test_a_user_other_than_root_may_not_manage_leases(b: BrokerUnderTest) -> None:
    answer = httpx.get(f"{b.url}/v1/leases", headers=munge("GET", "/v1/leases", uid=1000))
    assert answer.status_code == 403
    assert answer.json()["message"] == "uid 1000 may not manage leases (allowed: 0)"
    with pytest.raises(BrokerError) as raised:
        b.node(uid=1000).acquire(5, qpus="sim_a", user="mallory", uid=1000)
    assert str(raised.value) == ("the slurm-qpu broker refused POST /v1/leases/5: uid 1000 may "
                                 "not manage leases (allowed: 0)")
    with pytest.raises(BrokerError) as raised:
        b.node(uid=1000).release(5)
    assert "uid 1000 may not manage leases" in str(raised.value)
    assert b.service.journal.current(5) is None


def test_the_prolog_acquires_and_the_epilog_releases(b: BrokerUnderTest, ledger: Path) -> None:
    lease = b.acquire(5, "sim_a,sim_b")
    assert (lease["job_id"], lease["generation"], lease["state"]) == (5, 1, "acquired")
    assert (lease["user"], lease["uid"], lease["qpus"]) == ("alice", 1000, ["sim_a", "sim_b"])
    assert lease["warnings"] == [] and lease["error"] is None
    assert [r["name"] for r in lease["resources"]] == ["sim_a", "sim_b"]
    assert lease["env"]["QRMI_JOB_QPU_RESOURCES"] == "sim_a,sim_b"
    assert lease["env"]["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == lease["resources"][0]["token"]
    assert b.acquire(5, "sim_a,sim_b") == lease  # the job's other node
    released = b.node().release(5)
    assert released["state"] == "released" and "env" not in released
    assert b.node().release(5)["state"] == "released"
    assert [e for e, _, _ in read_ledger(ledger)] == ["acquire", "acquire", "release",
                                                      "release"]


def test_a_failed_acquisition_is_answered_with_its_reason(
        start_broker: StartBroker, ledger: Path) -> None:
    b = start_broker(sim_resources(ledger, sim_a={"STATUS": "maintenance"}))
    lease = b.acquire(5, "sim_a")
    assert lease["state"] == "failed" and lease["env"] == {}
    assert lease["error"] == ("cannot acquire QPU sim_a: not accessible now (offline or in "
                              "maintenance): sim_a is maintenance")


def test_refused_overrides_come_back_as_warnings(b: BrokerUnderTest) -> None:
    lease = b.acquire(5, "sim_a", overrides=json.dumps({"sim_a": {"QRMI_LOCAL_SIM_STATUS":
                                                                  "online"}}))
    assert lease["warnings"] == [
        "ignoring sim_a_QRMI_LOCAL_SIM_STATUS from your environment: endpoints, credentials "
        "and other site settings come from the site's QPU configuration (nothing may be "
        "overridden for sim_a)"]


def test_releasing_a_job_without_a_lease_is_not_found(b: BrokerUnderTest) -> None:
    with pytest.raises(BrokerError) as raised:
        b.node().release(99)
    assert str(raised.value) == "the slurm-qpu broker refused DELETE /v1/leases/99: job 99 has " \
                                "no lease"
    answer = httpx.delete(f"{b.url}/v1/leases/99", headers=munge("DELETE", "/v1/leases/99"))
    assert answer.status_code == 404


def test_the_lease_list_shows_active_leases_without_environment_or_secrets(
        start_broker: StartBroker, ledger: Path) -> None:
    b = start_broker(sim_resources(ledger, sim_a={"API_KEY": "site-secret-value"},
                                   sim_b={"ACQUIRE_ERROR": "no"}))
    acquired = b.acquire(5, "sim_a")
    assert "site-secret-value" not in json.dumps(acquired)
    b.acquire(6, "sim_b")  # failed: not active
    b.acquire(7, "sim_a")
    b.node().release(7)
    leases = b.node().leases()
    assert [(lease["job_id"], lease["state"]) for lease in leases] == [(5, "acquired")]
    assert "env" not in leases[0]
    text = json.dumps(leases)
    token = acquired["env"]["sim_a_QRMI_JOB_ACQUISITION_TOKEN"]
    assert token in text  # the vendor's session id, which admins need
    job_token = b.service.job_token(b.service.journal.current(5))  # type: ignore[arg-type]
    assert job_token not in text and "site-secret-value" not in text


def test_health_and_catalog_need_no_credential(b: BrokerUnderTest) -> None:
    b.acquire(5, "sim_a")
    health = httpx.get(f"{b.url}/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "active_leases": 1}
    catalog = httpx.get(f"{b.url}/v1/catalog")
    assert catalog.status_code == 200
    assert catalog.json() == {"sim_a": "local-simulator", "sim_b": "local-simulator"}


def test_health_fails_with_the_reason_while_the_journal_is_gone_or_replaced(
        b: BrokerUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slurm_qpu.broker")
    path = b.journal_path
    moved = path.with_name("moved.sqlite")
    path.rename(moved)
    for _ in range(3):
        gone = httpx.get(f"{b.url}/v1/health")
        assert gone.status_code == 503
    assert gone.json() == {"status": "unavailable", "reason": (
        f"the broker journal {path} is gone (No such file or directory); restore it from a "
        "backup and restart the broker")}
    # a load balancer checks every few seconds: the log says it once per cause
    assert sum("health check fails" in r.getMessage() for r in caplog.records) == 1
    path.write_bytes(moved.read_bytes())  # a restored copy is another file
    replaced = httpx.get(f"{b.url}/v1/health")
    assert replaced.status_code == 503
    assert "was replaced since the broker opened it; restart the broker" in \
        replaced.json()["reason"]
    path.unlink()
    moved.rename(path)
    assert httpx.get(f"{b.url}/v1/health").status_code == 200
    assert any("health check passes again" in r.getMessage() for r in caplog.records)


def test_health_fails_while_the_journals_last_write_did_not_reach_the_disk(
        b: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    journal = b.service.journal
    journal._group = True  # the production mode, which fsyncs the WAL itself
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(BrokerError):  # the broker answers an error: it cannot keep it
        b.acquire(5, "sim_a")
    health = httpx.get(f"{b.url}/v1/health")
    assert health.status_code == 503
    assert health.json()["reason"].startswith(f"cannot write the broker journal "
                                              f"{b.journal_path} to disk: ")
    monkeypatch.setattr(os, "fsync", real_fsync)
    b.acquire(6, "sim_a")
    assert httpx.get(f"{b.url}/v1/health").status_code == 200


def test_an_unknown_route_is_not_found(b: BrokerUnderTest) -> None:
    for method, path in (("GET", "/v1/nope"), ("PUT", "/v1/leases/5"), ("GET", "/v1/leases/5"),
                         ("POST", "/v1/leases/x"), ("GET", "/")):
        answer = raw(b.url, method, path, headers=munge(method, path))
        assert answer.status == 404, path
        assert answer.message == f"no such broker route: {method} {path}"


def test_a_lease_request_that_is_not_json_is_refused(b: BrokerUnderTest) -> None:
    for body in (b"{not json", b"[1, 2]"):
        answer = httpx.post(f"{b.url}/v1/leases/5", content=body,
                            headers=munge("POST", "/v1/leases/5", body))
        assert answer.status_code == 400
        assert answer.json()["message"] == "lease request is not the expected JSON"
    assert b.service.journal.current(5) is None


def test_an_oversized_node_request_is_refused(b: BrokerUnderTest) -> None:
    body = b"{" + b" " * (64 * 1024) + b"}"
    answer = raw(b.url, "POST", "/v1/leases/5", body=body,
                 headers=munge("POST", "/v1/leases/5", body))
    assert answer.status == 413
    assert answer.message == (f"request body of {len(body)} bytes is over the broker's limit "
                              f"of {64 * 1024} bytes")


def test_each_lease_request_is_audited(b: BrokerUnderTest,
                                      caplog: pytest.LogCaptureFixture) -> None:
    def audited() -> list[str]:
        return sorted(r.getMessage() for r in caplog.records if r.name == "slurm_qpu.audit")

    with caplog.at_level(logging.INFO, "slurm_qpu.audit"):
        httpx.get(f"{b.url}/v1/health")  # not a lease request: not audited
        b.acquire(5, "sim_a")
        b.node().release(5)
        assert wait_for(lambda: len(audited()) >= 2)  # written once the answer is sent
    lines = audited()
    assert len(lines) == 2
    assert lines[0].startswith('job=5 user=alice qpu=- route="DELETE /v1/leases/5" status=200 ')
    assert lines[1].startswith('job=5 user=alice qpu=- route="POST /v1/leases/5" status=200 ')


def test_a_stopping_broker_finishes_the_acquisition_in_progress_before_it_stops(
        start_broker: StartBroker, ledger: Path) -> None:
    import threading

    slow = start_broker(sim_resources(ledger, sim_a={"ACQUIRE_DELAY": "1.0"}))
    answers: list[dict[str, object]] = []
    prolog = threading.Thread(target=lambda: answers.append(slow.acquire(8, "sim_a")))
    prolog.start()
    assert wait_for(lambda: read_ledger(ledger) == [] and slow.broker._server is not None
                    and slow.broker._server.serving() == 1)
    assert slow.broker.stop(drain=10) == 0  # SIGTERM: what `slurm-qpu broker` then does
    prolog.join()
    assert answers and answers[0]["state"] == "acquired"  # the prolog got its lease
    lease = slow.service.journal.current(8)
    assert lease is not None and lease.state.value == "acquired" and lease.held  # all of it
    assert [event for event, _, _ in read_ledger(ledger)] == ["acquire"]


def test_plugstack_env_arguments_reach_the_job_and_the_brokers_variables_win(
        start_broker: StartBroker, tmp_path: Path) -> None:
    """spank_qrmi's ``--env:NAME=VALUE`` in broker mode: set in every task (whatever the
    job exported), but never in place of the broker's endpoints or the job token."""
    from slurm_qpu.lease import from_broker
    from slurm_qpu.lease.store import LeaseStore
    from slurm_qpu.settings import parse_args
    from slurm_qpu.slurm.job import JobFacts

    b = start_broker(sim_resources(tmp_path / "ledger"))
    b.jobs.ids.add(12)
    settings = parse_args([f"broker={b.url}", "--env:https_proxy=http://proxy:3128",
                           "--env:QRMI_JOB_QPU_RESOURCES=not-this"])
    store = LeaseStore(tmp_path / "state")
    from_broker.run_prolog(JobFacts(12, "n1", ("n1",), 1000, "alice"), "sim_a", store,
                           b.node(), job_env=settings.extra_env)
    stored = store.load(12)
    assert stored is not None
    assert stored.env["https_proxy"] == "http://proxy:3128"
    assert stored.env["QRMI_JOB_QPU_RESOURCES"] == "sim_a"
