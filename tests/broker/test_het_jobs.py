"""Heterogeneous jobs: every component's prologs ask under the het leader's job id, with
their own component id; the job holds one lease, one vendor session per QPU whatever
component names it, each component's tasks see their own QPUs, and one release ends it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import BrokerUnderTest, StartBroker, read_ledger, sim_resources

LEADER, OTHER = 40, 41  # the het job's components: 40+0 (its leader) and 40+1


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


@pytest.fixture
def b(start_broker: StartBroker, ledger: Path) -> BrokerUnderTest:
    broker = start_broker(sim_resources(ledger))
    broker.jobs.ids.update({LEADER, OTHER})
    broker.jobs.het.update({LEADER: LEADER, OTHER: LEADER})
    return broker


def component(b: BrokerUnderTest, job_id: int, qpus: str) -> dict[str, Any]:
    """What a component's prolog asks (jobscript: the lease under the het leader's id)."""
    return b.node().acquire(LEADER, qpus=qpus, user="alice", uid=1000, time_limit=600,
                            component=job_id)


def acquisitions(ledger: Path) -> list[tuple[str, str]]:
    return [(event, qpu) for event, qpu, _ in read_ledger(ledger)]


def test_components_naming_the_same_qpu_share_one_lease_and_one_session(
        b: BrokerUnderTest, ledger: Path) -> None:
    first = component(b, LEADER, "sim_a")
    second = component(b, OTHER, "sim_a")
    again = component(b, OTHER, "sim_a")  # the component's second node
    assert first["state"] == second["state"] == again["state"] == "acquired"
    token = "sim_a_QRMI_JOB_ACQUISITION_TOKEN"
    assert first["env"][token] == second["env"][token] == again["env"][token]
    assert acquisitions(ledger) == [("acquire", "sim_a")]
    # one release for the het job, whichever component's epilog asks first
    assert b.node().release(LEADER)["state"] == "released"
    assert b.node().release(LEADER)["state"] == "released"
    assert acquisitions(ledger) == [("acquire", "sim_a"), ("release", "sim_a")]


def test_each_component_sees_its_own_qpus_and_the_job_holds_them_all(
        b: BrokerUnderTest, ledger: Path) -> None:
    first = component(b, LEADER, "sim_a")
    second = component(b, OTHER, "sim_b,sim_a")
    assert first["env"]["QRMI_JOB_QPU_RESOURCES"] == "sim_a"
    assert second["env"]["QRMI_JOB_QPU_RESOURCES"] == "sim_b,sim_a"  # its order
    assert second["qpus"] == ["sim_b", "sim_a"]
    assert first["env"]["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == \
        second["env"]["sim_a_QRMI_JOB_ACQUISITION_TOKEN"]
    assert "sim_b_QRMI_JOB_ACQUISITION_TOKEN" not in component(b, LEADER, "sim_a")["env"]
    assert sorted(acquisitions(ledger)) == [("acquire", "sim_a"), ("acquire", "sim_b")]
    lease = b.service.journal.current(LEADER)
    assert lease is not None and lease.names == ["sim_a", "sim_b"]
    assert b.node().release(LEADER)["state"] == "released"
    assert sorted(acquisitions(ledger)) == [("acquire", "sim_a"), ("acquire", "sim_b"),
                                            ("release", "sim_a"), ("release", "sim_b")]


def test_a_selection_resolves_once_for_the_whole_het_job(
        b: BrokerUnderTest, ledger: Path) -> None:
    first = component(b, LEADER, "any:sim_*")
    picked = first["env"]["QRMI_JOB_QPU_RESOURCES"]
    for job_id in (OTHER, OTHER, LEADER):  # every node of every component: the same pick
        assert component(b, job_id, "any:sim_*")["env"]["QRMI_JOB_QPU_RESOURCES"] == picked
    assert acquisitions(ledger) == [("acquire", picked)]


def test_a_component_whose_qpu_is_refused_fails_alone_and_the_lease_stands(
        b: BrokerUnderTest, ledger: Path) -> None:
    assert component(b, LEADER, "sim_a")["state"] == "acquired"
    refused = component(b, OTHER, "nosuch")
    assert refused["state"] == "failed" and refused["env"] == {}
    assert "het job component 41" in refused["error"] and "nosuch" in refused["error"]
    assert component(b, LEADER, "sim_a")["state"] == "acquired"  # the leader goes on
    assert acquisitions(ledger) == [("acquire", "sim_a")]


def test_a_job_that_is_no_het_job_is_answered_as_before(b: BrokerUnderTest) -> None:
    # (no component: a job's other nodes get the same lease, every QPU of it)
    lease = b.acquire(50, "sim_a,sim_b")
    assert b.acquire(50, "sim_a,sim_b")["env"] == lease["env"]
    assert lease["env"]["QRMI_JOB_QPU_RESOURCES"] == "sim_a,sim_b"


def test_a_component_that_reaches_the_broker_first_is_checked_as_itself(
        b: BrokerUnderTest, ledger: Path) -> None:
    # the other component's prolog came first and its QPU failed: the leader's own
    # request is asked for anew, not answered with the other's failure
    assert component(b, OTHER, "nosuch")["state"] == "failed"
    assert component(b, LEADER, "sim_a")["state"] == "acquired"
    assert acquisitions(ledger) == [("acquire", "sim_a")]


def test_a_job_that_is_no_component_of_the_het_job_cannot_join_its_lease(
        b: BrokerUnderTest, ledger: Path) -> None:
    assert component(b, LEADER, "sim_a")["state"] == "acquired"
    b.jobs.ids.add(77)  # a job of its own, no het job
    stranger = component(b, 77, "sim_b")
    assert stranger["state"] == "failed" and stranger["env"] == {}
    assert stranger["error"] == "job 77 is no component of het job 40 (Slurm says its het " \
                                "job is none)"
    assert acquisitions(ledger) == [("acquire", "sim_a")]


def test_the_epilog_that_released_the_het_jobs_lease_is_told_so(b: BrokerUnderTest) -> None:
    component(b, LEADER, "sim_a")
    first, second = b.node().release(LEADER), b.node().release(LEADER)
    assert (first["released_now"], second["released_now"]) == (True, False)
    assert first["usage"] and [u["qpu"] for u in first["usage"]] == ["sim_a"]


def test_the_het_jobs_usage_is_written_once_by_the_epilog_that_released_it(
        b: BrokerUnderTest, tmp_path: Path) -> None:
    from slurm_qpu.lease import from_broker
    from slurm_qpu.lease.store import LeaseStore
    from slurm_qpu.slurm.job import JobFacts

    written: list[tuple[int, list[Any]]] = []
    for job_id, node in ((OTHER, "n2"), (LEADER, "n1")):  # the other component's first
        facts = JobFacts(job_id, node, (node,), 1000, "alice", het_job_id=LEADER)
        store = LeaseStore(tmp_path / node)
        lease = from_broker.run_prolog(facts, "sim_a", store, b.node())
        assert lease.env["sim_a_QRMI_JOB_ACQUISITION_TOKEN"]
    for job_id, node in ((OTHER, "n2"), (LEADER, "n1")):
        facts = JobFacts(job_id, node, (node,), 1000, "alice", het_job_id=LEADER)
        from_broker.run_epilog(facts, LeaseStore(tmp_path / node), b.node(),
                               on_usage=lambda records, j=job_id: written.append((j, records)))
    assert [(j, [u.qpu for u in records]) for j, records in written] == [(OTHER, ["sim_a"])]


def test_a_qpu_whose_vendor_fails_for_a_component_is_no_part_of_the_lease(
        start_broker: StartBroker, ledger: Path) -> None:
    b = start_broker(sim_resources(ledger, sim_b={"ACQUIRE_ERROR": "sim_b is down"}))
    b.jobs.ids.update({LEADER, OTHER})
    b.jobs.het.update({LEADER: LEADER, OTHER: LEADER})
    assert component(b, LEADER, "sim_a")["state"] == "acquired"
    failed = component(b, OTHER, "sim_b")
    assert failed["state"] == "failed" and "sim_b is down" in failed["error"]
    lease = b.service.journal.current(LEADER)
    assert lease is not None and lease.names == ["sim_a"]  # named again as before
    assert b.service.active_counts()["sim_b"] == 0
    assert b.node().release(LEADER)["state"] == "released"
