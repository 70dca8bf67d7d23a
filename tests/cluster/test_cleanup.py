"""However a job ends, its QPUs are released and nothing leaks at the vendor: scancel, the
time limit, and a compute node (container) that disappears mid-job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from jobs import QPU, assert_session_closed, lease_states, wait_for_output, wait_until

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

HOLD = (f"#!/bin/bash\n#SBATCH --qpu={QPU} --no-requeue\n"
        f"echo SESSION ${QPU}_QRMI_JOB_ACQUISITION_TOKEN\nsleep 600\n")


@contextlib.contextmanager
def held(cluster: DockerCluster, *args: str) -> Iterator[tuple[int, str]]:
    """A running job holding the QPU: (job id, vendor session); cancelled if a test fails
    before ending it, so that it cannot block the tests after it."""
    job_id = cluster.sbatch(HOLD, *args)
    try:
        session = wait_for_output(cluster, job_id, r"SESSION (\S+)")
        assert lease_states(cluster, job_id) == ["acquired"]
        yield job_id, session
    finally:
        cluster.exec("login", f"scancel {job_id}")


def _released(cluster: DockerCluster, admin: EmulatorAdmin, job_id: int, session: str,
              timeout: float = 60) -> None:
    wait_until(f"job {job_id}'s lease to be released",
               lambda: lease_states(cluster, job_id) == ["released"], timeout)
    assert_session_closed(admin, session)


def test_scancel_releases_the_qpu_and_closes_the_session(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    with held(cluster) as (job_id, session):
        cluster.as_user(f"scancel {job_id}").check("scancel")
        assert cluster.wait_job(job_id) == "CANCELLED"
        _released(cluster, admin, job_id, session)


def test_time_limit_releases_the_qpu_and_closes_the_session(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    with held(cluster, "--time=0:10") as (job_id, session):
        assert cluster.wait_job(job_id, timeout=180) == "TIMEOUT"
        _released(cluster, admin, job_id, session)


def test_compute_container_stopped_mid_job_the_lease_is_released_and_nothing_leaks(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    with held(cluster, "--nodelist=c2") as (job_id, session):
        node = cluster.client.containers.get("slurm-qpu-c2")
        node.kill()  # the node is gone: no epilog will ever run for this job there
        try:
            assert cluster.wait_job(job_id, timeout=180) == "NODE_FAIL"
            # the broker's reaper sees that Slurm no longer runs the job and releases it
            _released(cluster, admin, job_id, session, timeout=120)
            broker_log = cluster.broker_logs()  # the reaper runs on the broker leading it
            assert f"reaper: job {job_id} is no longer known to Slurm" in broker_log
        finally:
            node.start()
            wait_until("c2 to be idle again", lambda: cluster.exec(
                "login", "sinfo -h -n c2 -o %t").out.strip() == "idle", 180)
