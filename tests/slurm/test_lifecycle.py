"""Acquire exactly once per job, release exactly once, however the job ends."""

import time

import pytest


def events(lab, job_id, qpu="sim_a"):
    return [e["event"] for e in lab.ledger_events(qpu, job_id)]


def test_one_acquire_and_one_release_for_a_single_node_job(lab):
    run = lab.run_job("--qpu=sim_a", script="srun true\nsrun true\n")
    assert run.state == "COMPLETED"
    assert events(lab, run.job_id) == ["acquire", "release"]


def test_one_acquire_and_one_release_for_a_two_node_job(lab):
    run = lab.run_job("-N2", "--qpu=sim_a,sim_b", script="srun true\nsrun -N1 true\n")
    assert run.state == "COMPLETED"
    assert events(lab, run.job_id, "sim_a") == ["acquire", "release"]
    assert events(lab, run.job_id, "sim_b") == ["acquire", "release"]


def test_each_node_keeps_its_own_lease_and_only_the_first_releases(lab):
    run = lab.run_job("-N2", "--qpu=sim_a", script="srun true\n")
    assert run.state == "COMPLETED"
    first, second = lab.leases_on("node1")[run.job_id], lab.leases_on("node2")[run.job_id]
    assert first["node"] == "node1" and first["owner_node"] == "node1"
    assert second["node"] == "node2" and second["owner_node"] == "node1"
    assert first["state"] == second["state"] == "released"
    assert [(r["name"], r["token"]) for r in first["resources"]] == \
        [(r["name"], r["token"]) for r in second["resources"]]


def test_failing_job_releases_once(lab):
    run = lab.run_job("--qpu=sim_a", script="exit 3\n")
    assert run.state == "FAILED"
    assert events(lab, run.job_id) == ["acquire", "release"]


def wait_running(lab, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.job(job_id).get("JobState") == "RUNNING" and lab.ledger_events("sim_a", job_id):
            return
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not start: {lab.job(job_id)}")


def test_scancel_releases_once(lab):
    job_id = lab.sbatch("-N2", "--qpu=sim_a", "-o", "/dev/null",
                        script="#!/bin/bash\nsrun sleep 300\n")
    wait_running(lab, job_id)
    assert lab.as_user(["scancel", str(job_id)]).returncode == 0
    assert lab.wait_job(job_id) == "CANCELLED"
    assert events(lab, job_id) == ["acquire", "release"]
    assert lab.undrained()


def test_time_limit_releases_once(lab):
    job_id = lab.sbatch("--time=1", "--qpu=sim_a", "-o", "/dev/null",
                        script="#!/bin/bash\nsleep 600\n")
    wait_running(lab, job_id)
    assert lab.wait_job(job_id, timeout=180) == "TIMEOUT"
    assert events(lab, job_id) == ["acquire", "release"]
    assert lab.undrained()
