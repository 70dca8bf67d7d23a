"""Tutorial scenario 2: a user overrides a setting with <qpu>_<KEY> in the environment.
Allowed settings (the session mode here) reach the vendor; credentials and endpoints are
never taken from users in broker mode, and sbatch says so."""

from __future__ import annotations

from jobs import QPU, SAMPLER, result

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster


def test_user_override_of_an_allowed_setting_reaches_the_vendor(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    cluster.write_home("alice", "override.sh", f"#!/bin/bash\npython3 - <<'PY'\n{SAMPLER}\nPY\n")
    submitted = cluster.as_user(
        f"export {QPU}_QRMI_IBM_QCS_SESSION_MODE=batch; "
        f"export {QPU}_QRMI_IBM_QCS_IAM_APIKEY=my-own-key; "
        f"sbatch --parsable --qpu={QPU} override.sh")
    assert submitted.rc == 0, submitted.out
    assert f"ignoring {QPU}_QRMI_IBM_QCS_IAM_APIKEY from your environment" in submitted.out
    assert f"ignoring {QPU}_QRMI_IBM_QCS_SESSION_MODE" not in submitted.out
    job_id = int(submitted.out.strip().splitlines()[-1])
    assert cluster.wait_job(job_id) == "COMPLETED"
    output = (cluster.home / "alice" / f"slurm-{job_id}.out").read_text()
    session = admin.session(result(output)["token"])
    assert session["mode"] == "batch"
