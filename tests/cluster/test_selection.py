"""--qpu=any:FILTER through the broker: it picks among the QPUs the job may use, asks the
vendor (the emulator) for qubit counts, and the pick shows in the job and in sacct."""

from __future__ import annotations

import pytest
from jobs import run, wait_until

from slurm_qpu.usage import decode
from slurm_qpu_lab.docker_cluster import DockerCluster

pytestmark = pytest.mark.cluster

# ibm_manila and ibm_brisbane are the IBM Quantum Platform QPUs; ibm_brisbane is only for
# account physics (docker_cluster.POLICY), and alice is in account quantum
WANT = "any:ibm_*&type=ibm-quantum-compute-service&min_qubits=2"


def test_a_selection_picks_a_qpu_the_job_may_use_and_sacct_records_the_pick(
        cluster: DockerCluster) -> None:
    job = run(cluster, f"#!/bin/bash\n#SBATCH --qpu={WANT}\n"
                       "srun printenv QRMI_JOB_QPU_RESOURCES SLURM_QPU_REQUEST\n")
    assert job.state == "COMPLETED", job.output
    assert job.output.split()[-2:] == ["ibm_manila", WANT]

    def comment() -> str:
        return cluster.as_user(f"sacct -n -X -P -j {job.job_id} -o AdminComment").out.strip()

    wait_until("the usage record in sacct", lambda: comment().startswith("slurm-qpu-usage:v1"))
    [usage] = decode(comment())
    assert (usage.qpu, usage.selected_by) == ("ibm_manila", WANT)


def test_a_selection_of_only_qpus_the_policy_keeps_from_the_job_fails_it_with_why(
        cluster: DockerCluster) -> None:
    job = run(cluster, "#!/bin/bash\n#SBATCH --qpu=any:ibm_brisbane\ntrue\n")
    assert job.state == "FAILED"
    assert ("no QPU matching any:ibm_brisbane is available now (ibm_brisbane: not for "
            "account quantum (allowed: physics))") in job.output
