"""salloc --qpu, then srun inside the allocation: the steps see the QPU; the lease ends
with the allocation."""

from __future__ import annotations

from jobs import QPU, lease_states, wait_until

from slurm_qpu_lab.docker_cluster import DockerCluster


def test_salloc_with_qpu_then_srun_sees_the_qpu_and_the_lease_ends_with_it(
        cluster: DockerCluster) -> None:
    out = cluster.as_user(
        f"salloc --qpu={QPU} -N2 -p normal srun bash -c "
        "'echo STEP $(hostname) $SLURM_JOB_QPU_RESOURCES ${" + QPU + "_QRMI_IBM_QCS_ENDPOINT}'"
        " 2>&1")
    assert out.rc == 0, out.out
    steps = sorted(line.split()[1:] for line in out.out.splitlines()
                   if line.startswith("STEP "))
    assert [s[0] for s in steps] == ["c1", "c2"], out.out
    assert all(s[1] == QPU and s[2].startswith("http://broker:8291/p/") for s in steps)
    job_id = int(next(w for w in out.out.split() if w.isdigit()))  # "Granted job allocation N"
    # salloc returns when the allocation is revoked; the epilog releases right after
    wait_until("the lease to be released",
               lambda: lease_states(cluster, job_id) == ["released"], 60)
