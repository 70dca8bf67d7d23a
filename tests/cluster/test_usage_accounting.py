"""Who used which QPU, for how long: the usage record in Slurm accounting (sacct), the
license TRES, and `slurm-qpu usage` reading them back on the login node."""

from __future__ import annotations

import json

from jobs import QPU, SAMPLER, result, run, wait_until

from slurm_qpu.usage import decode
from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

SCRIPT = f"""#!/bin/bash
#SBATCH --qpu={QPU}
srun python3 - <<'PY'
{SAMPLER}
PY
"""


def test_sacct_shows_the_jobs_qpu_usage_and_slurm_qpu_usage_adds_it_up(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    job = run(cluster, SCRIPT)
    assert job.state == "COMPLETED", job.output
    vendor_job = admin.job(result(job.output)["job"])

    def comment() -> str:
        return cluster.as_user(f"sacct -n -X -P -j {job.job_id} -o AdminComment").out.strip()

    wait_until("the usage record in sacct", lambda: comment().startswith("slurm-qpu-usage:v1"))
    [usage] = decode(comment())
    assert (usage.qpu, usage.type, usage.vendor_jobs, usage.shots) == \
        (QPU, "ibm-quantum-compute-service", 1, 400)
    assert usage.qpu_seconds is not None and usage.qpu_seconds > 0
    assert abs(usage.qpu_seconds - vendor_job["usage"]["quantum_seconds"]) < 0.001
    assert usage.session_seconds is not None and usage.session_seconds >= 1
    tres = cluster.as_user(f"sacct -n -X -P -j {job.job_id} -o AllocTRES").out
    assert f"license/qpu_{QPU}=1" in tres
    report = cluster.as_user(f"slurm-qpu usage --user alice --qpu {QPU} --format json")
    assert report.rc == 0, report.out
    [row] = json.loads(report.out)
    assert (row["user"], row["account"], row["qpu"]) == ("alice", "quantum", QPU)
    assert row["jobs"] >= 1 and row["vendor_jobs"] >= 1 and row["shots"] >= 400
