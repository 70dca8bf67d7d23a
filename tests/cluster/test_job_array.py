"""A job array with --qpu. Each element is a job of its own to Slurm, so each element gets
its own lease and its own vendor session, opened by its prolog and closed by its epilog; no
element sees another's session."""

from __future__ import annotations

from jobs import QPU, SAMPLER, assert_session_closed, lease_states, output_of, result, wait_until

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


def array_elements(cluster: DockerCluster, array: int) -> dict[int, tuple[int, str]]:
    """task id -> (job id, state), from accounting."""
    out = cluster.exec("login", f"sacct -n -X -P -j {array} -o JobID,JobIDRaw,State").out
    elements = {}
    for line in out.split():
        job, raw, state = line.split("|")
        if "_" in job and "[" not in job:
            elements[int(job.split("_")[1])] = (int(raw), state)
    return elements


def test_each_job_array_element_gets_its_own_session_and_releases_it(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    array = cluster.sbatch(f"#!/bin/bash\n#SBATCH --array=1-3 --qpu={QPU}\n"
                           f"python3 - <<'PY'\n{SAMPLER}\nPY\n")
    wait_until("the three elements to end", lambda: len(array_elements(cluster, array)) == 3
               and all(s in FINAL for _, s in array_elements(cluster, array).values()), 300)
    sessions = set()
    for task, (job_id, state) in sorted(array_elements(cluster, array).items()):
        text = output_of(cluster, array, name=f"slurm-{{id}}_{task}.out")
        assert state == "COMPLETED", text
        got = result(text)
        assert got["session"] == got["token"]  # the element's own prolog session
        assert lease_states(cluster, job_id) == ["released"]
        sessions.add(got["token"])
    assert len(sessions) == 3  # one session per element
    for session in sessions:
        assert_session_closed(admin, session)
