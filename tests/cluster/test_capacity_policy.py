"""Capacity and policy at submit, enforced by slurmctld through the job_submit.lua that
`slurm-qpu slurm-conf --job-submit` made from the cluster's qrmi_config.json
(slurm_qpu_lab.docker_cluster.POLICY): ibm_kawasaki takes one job at a time and only from
partition quantum, ibm_brisbane only account physics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jobs import wait_until

from slurm_qpu_lab.docker_cluster import DockerCluster

pytestmark = pytest.mark.cluster

HOLD = "#!/bin/bash\n#SBATCH --qpu=ibm_kawasaki -p quantum\nsleep 600\n"


def squeue(cluster: DockerCluster, job_id: int, fmt: str) -> str:
    return cluster.exec("login", f"squeue -h -j {job_id} -o '{fmt}'").out.strip()


@pytest.fixture
def jobs(cluster: DockerCluster) -> Iterator[list[int]]:
    started: list[int] = []
    yield started
    if started:
        cluster.exec("login", "scancel " + " ".join(map(str, started)))


def test_qpu_brings_its_license_without_the_user_asking(cluster: DockerCluster,
                                                         jobs: list[int]) -> None:
    job = cluster.sbatch("#!/bin/bash\n#SBATCH --qpu=ibm_manila\nsleep 60\n")
    jobs.append(job)
    assert squeue(cluster, job, "%W") == "qpu_ibm_manila:1"


def test_a_second_job_waits_for_the_qpu_and_cannot_shed_the_license(
        cluster: DockerCluster, jobs: list[int]) -> None:
    first = cluster.sbatch(HOLD)
    jobs.append(first)
    wait_until(f"job {first} running", lambda: cluster.job_state(first) == "RUNNING")
    second = cluster.sbatch(HOLD)
    jobs.append(second)
    wait_until(f"job {second} pending on the license",
               lambda: squeue(cluster, second, "%T %r") == "PENDING Licenses")
    # the bypass: drop the license from the pending job
    tried = cluster.as_user(f"scontrol update job={second} Licenses=")
    assert tried.rc != 0 and "Invalid license specification" in tried.out
    assert squeue(cluster, second, "%T %r %W") == "PENDING Licenses qpu_ibm_kawasaki:1"
    # nor move it to a partition the QPU refuses
    moved = cluster.as_user(f"scontrol update job={second} Partition=normal")
    assert moved.rc != 0 and "Access/permission denied" in moved.out
    cluster.exec("login", f"scancel {first}")
    wait_until(f"job {second} running once the first ended",
               lambda: cluster.job_state(second) == "RUNNING")


def test_a_partition_the_qpu_refuses_is_refused_at_submit(cluster: DockerCluster) -> None:
    before = cluster.exec("login", "squeue -h -u alice | wc -l").out.strip()
    cluster.write_home("alice", "wrongpart.sh", "#!/bin/bash\n#SBATCH --qpu=ibm_kawasaki\n"
                                                "true\n")
    out = cluster.as_user("sbatch wrongpart.sh")
    assert out.rc != 0
    assert ("sbatch: error: --qpu=ibm_kawasaki refused: QPU ibm_kawasaki may not be used "
            "from partition normal; allowed: quantum") in out.out
    assert cluster.exec("login", "squeue -h -u alice | wc -l").out.strip() == before


def test_an_account_the_qpu_refuses_is_refused_and_its_account_accepted(
        cluster: DockerCluster) -> None:
    out = cluster.as_user("salloc --qpu=ibm_brisbane true")
    assert out.rc != 0
    assert ("--qpu=ibm_brisbane refused: QPU ibm_brisbane may not be used by account "
            "quantum; allowed: physics") in out.out
    job = cluster.sbatch("#!/bin/bash\n#SBATCH --qpu=ibm_brisbane -A physics\n"
                         "echo QPU $SLURM_JOB_QPU_RESOURCES\n", user="bob")
    assert cluster.wait_job(job) == "COMPLETED"
