"""Tutorial 0_getting_started: one task on the quantum partition, one QPU, SamplerV2."""

from __future__ import annotations

import json

from jobs import QPU, SAMPLER, assert_session_closed, lease_states, result, run, sessions_opened

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

SCRIPT = f"""#!/bin/bash
#SBATCH --ntasks=1
#SBATCH --partition=quantum
#SBATCH --gres=qpu:1
#SBATCH --qpu={QPU}
srun python3 - <<'PY'
{SAMPLER}
PY
"""


def test_single_qpu_sampler_job_gets_counts_in_the_session_the_prolog_opened(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    job = run(cluster, SCRIPT)
    assert job.state == "COMPLETED", job.output
    got = result(job.output)
    assert got["host"] == "q1"  # the quantum partition's node
    assert sum(got["counts"].values()) == 400
    assert got["counts"].get("00", 0) + got["counts"].get("11", 0) >= 360
    assert got["session"] == got["token"]  # the prolog's session, not a new one
    assert admin.job(got["job"])["session_id"] == got["token"]
    assert len(sessions_opened(admin, seen)) == 1
    assert_session_closed(admin, got["token"])
    assert lease_states(cluster, job.job_id) == ["released"]


def test_no_credential_reaches_a_compute_node_the_login_node_or_the_job(
        cluster: DockerCluster) -> None:
    config = json.loads((cluster.root / "secrets" / "qrmi_config.json").read_text())
    secrets = {v for r in config["resources"] for k, v in r["environment"].items()
               if any(w in k for w in ("APIKEY", "SECRET", "TOKEN", "PASSWORD"))}
    assert secrets
    job = run(cluster, f"#!/bin/bash\n#SBATCH --qpu={QPU}\nenv\n")
    assert job.state == "COMPLETED", job.output
    assert f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY=sqpu_" in job.output  # a job token instead
    assert not [s for s in secrets if s in job.output]
    for node in ("c1", "c2", "q1", "login"):
        found = cluster.exec(node, "grep -rlsF -e " + " -e ".join(sorted(secrets))
                             + " /etc /var/lib/slurm-qpu /var/spool || true").out.strip()
        assert found == "", f"{node} holds a credential in {found}"
