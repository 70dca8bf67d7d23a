"""Broker mode: the QPUs' partition/account/QOS policy at the job's start, from squeue's
record of the job; when squeue cannot tell where the job runs, a QPU with a policy is
never acquired (by selection or by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import lease_service, read_ledger, sim_resources

from slurm_qpu.broker.journal import State
from slurm_qpu.broker.service import AcquireRequest, LeaseService
from slurm_qpu.request.selection import Placement
from slurm_qpu.slurm.commands import JobRecord, SlurmCommandError


@dataclass
class Squeue:
    """squeue as the broker sees it: the job's record, or a failure."""

    placement: Placement | None = None  # None: squeue fails

    def job(self, job_id: int) -> JobRecord:
        if self.placement is None:
            raise SlurmCommandError("squeue --json --states=all -j 5: slurm_load_jobs error: "
                                    "Unable to contact slurm controller")
        return JobRecord(3600, "", 0, "alice", ("RUNNING",), self.placement)

    def live_jobs(self) -> set[int]:
        return {5}


def service(tmp_path: Path, squeue: Squeue, **kw: Any) -> LeaseService:
    """sim_a only for partition quantum (and the shorter queue: a selection would take
    it first), sim_b for everyone."""
    ledger = tmp_path / "ledger.jsonl"
    resources = sim_resources(ledger, sim_b={"QUEUE_DEPTH": "9"})
    resources[0]["slurm"] = {"partitions": ["quantum"]}
    return lease_service(tmp_path, resources, squeue=squeue, **kw)


def ask(qpus: str, **kw: Any) -> AcquireRequest:
    return AcquireRequest(5, user="alice", uid=1000, qpus=qpus, **kw)


def test_when_squeue_fails_a_selection_passes_over_the_qpus_with_a_policy(
        tmp_path: Path) -> None:
    lease = service(tmp_path, Squeue(None)).acquire(ask("any:sim_*")).lease
    assert (lease.state, lease.names) == (State.ACQUIRED, ["sim_b"])


def test_when_squeue_fails_a_selection_of_only_qpus_with_a_policy_fails_with_why(
        tmp_path: Path) -> None:
    lease = service(tmp_path, Squeue(None)).acquire(ask("any:sim_a")).lease
    assert lease.state is State.FAILED
    assert lease.error == ("--qpu=any:sim_a: no QPU matching any:sim_a is available now "
                           "(sim_a: its partition/account/QOS policy cannot be checked: "
                           "squeue failed)")
    assert read_ledger(tmp_path / "ledger.jsonl") == []


def test_when_squeue_answers_a_selection_may_take_a_qpu_its_policy_allows(
        tmp_path: Path) -> None:
    squeue = Squeue(Placement("quantum", "physics", "normal"))
    assert service(tmp_path, squeue).acquire(ask("any:sim_*")).lease.names == ["sim_a"]


def test_a_named_qpu_is_not_acquired_where_its_policy_refuses_the_job(
        tmp_path: Path) -> None:
    # whatever --qpu value job_submit.lua checked, the broker acquires only what the
    # QPU's policy allows where the job runs
    squeue = Squeue(Placement("debug", "physics", "normal"))
    lease = service(tmp_path, squeue).acquire(ask("sim_a")).lease
    assert lease.state is State.FAILED
    assert lease.error == "--qpu=sim_a: QPU sim_a: not for partition debug (allowed: quantum)"
    assert read_ledger(tmp_path / "ledger.jsonl") == []
    (tmp_path / "2").mkdir()
    other = service(tmp_path / "2", Squeue(None)).acquire(ask("sim_a")).lease
    assert other.error == ("--qpu=sim_a: QPU sim_a: its partition/account/QOS policy cannot "
                           "be checked: squeue failed")


def test_a_named_qpu_whose_license_slurmctld_did_not_count_is_not_acquired(
        tmp_path: Path) -> None:
    """job_submit.lua adds qpu_<name> to every job that names the QPU: a job that starts
    without it was checked by slurmctld for another --qpu value than the one read now."""
    squeue = Squeue(Placement("quantum", "physics", "normal", frozenset({"qpu_sim_b"})))
    broker = service(tmp_path, squeue, licenses=lambda: {"qpu_sim_a", "qpu_sim_b"})
    lease = broker.acquire(ask("sim_a")).lease
    assert lease.state is State.FAILED
    assert lease.error is not None and lease.error.startswith(
        "--qpu=sim_a: QPU sim_a: the job does not hold its license qpu_sim_a, which "
        "job_submit.lua adds to every job that names the QPU")
    assert read_ledger(tmp_path / "ledger.jsonl") == []
    (tmp_path / "2").mkdir()
    other = service(tmp_path / "2", squeue, licenses=lambda: {"qpu_sim_a", "qpu_sim_b"})
    assert other.acquire(ask("sim_b")).lease.state is State.ACQUIRED
