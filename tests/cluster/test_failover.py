"""Two brokers on one MariaDB journal behind HAProxy, as docs/operations.md sets them up:
many jobs at once make one vendor session each whichever broker their nodes reach, a
broker killed while jobs run costs them nothing (their calls and the new jobs go through
the other, every lease is released and every session closed), and brokers upgraded onto
the journal of an older slurm-qpu migrate it and keep its leases."""

from __future__ import annotations

import re

from jobs import (
    QPU,
    SAMPLER,
    assert_session_closed,
    lease_states,
    output_of,
    result,
    sessions_opened,
    wait_for_output,
    wait_until,
)

from slurm_qpu.broker.journal import SCHEMA_VERSION
from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import BROKERS, DockerCluster
from slurm_qpu_lab.old_journal import make_v1

TWO_NODES = f"#!/bin/bash\n#SBATCH --qpu={QPU} -N2 --ntasks-per-node=1 --no-requeue\n"


def audited_jobs(cluster: DockerCluster, broker: str) -> set[int]:
    text = (cluster.log_dir(broker) / "broker-audit.log").read_text(errors="replace")
    return {int(m) for m in re.findall(r"\bjob=(\d+) .*route=\"POST /v1/leases/", text)}


def test_twenty_two_node_jobs_at_once_through_both_brokers_make_twenty_sessions(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    script = TWO_NODES + "srun bash -c 'echo NODE $(hostname) ${" + QPU + \
        "_QRMI_JOB_ACQUISITION_TOKEN}'\n"
    jobs = [cluster.sbatch(script) for _ in range(20)]
    for job_id in jobs:
        assert cluster.wait_job(job_id, timeout=600) == "COMPLETED", \
            output_of(cluster, job_id)
    assert len(sessions_opened(admin, seen)) == 20  # one per job, however many nodes
    for job_id in jobs:
        tokens = set(re.findall(r"NODE \S+ (\S+)", output_of(cluster, job_id)))
        assert len(tokens) == 1, output_of(cluster, job_id)  # both nodes, one session
        wait_until(f"job {job_id}'s lease released",
                   lambda j=job_id: lease_states(cluster, j) == ["released"], 120)
        assert_session_closed(admin, tokens.pop())
    # both brokers served prologs: HAProxy spreads the nodes over them
    served = [audited_jobs(cluster, b) & set(jobs) for b in BROKERS]
    assert all(served), served


def test_a_broker_killed_while_jobs_run_costs_them_nothing(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    flag = "/home/alice/failover-go"
    cluster.exec("login", f"rm -f {flag}")
    sampler = f"srun python3 - <<'PY'\n{SAMPLER}\nPY\n"
    holding = cluster.sbatch(f"#!/bin/bash\n#SBATCH --qpu={QPU} --no-requeue\n"
                             f"echo STARTED; while [ ! -e {flag} ]; do sleep 0.5; done\n"
                             + sampler)
    wait_for_output(cluster, holding, r"(STARTED)")
    victim = cluster.client.containers.get("slurm-qpu-broker1")
    victim.kill()  # SIGKILL: no drain, no goodbye; its database locks go with it
    try:
        # the held job's SDK calls go on through HAProxy to broker2
        cluster.exec("login", f"touch {flag}")
        assert cluster.wait_job(holding, timeout=300) == "COMPLETED", \
            output_of(cluster, holding)
        assert sum(result(output_of(cluster, holding))["counts"].values()) == 400
        # a new job starts and runs through the broker left
        fresh = cluster.sbatch(f"#!/bin/bash\n#SBATCH --qpu={QPU}\n" + sampler)
        assert cluster.wait_job(fresh, timeout=300) == "COMPLETED", output_of(cluster, fresh)
        for job_id in (holding, fresh):
            wait_until(f"job {job_id}'s lease released",
                       lambda j=job_id: lease_states(cluster, j) == ["released"], 120)
            assert_session_closed(admin, result(output_of(cluster, job_id))["session"])
        drained = cluster.exec("login", "sinfo -h -t drain,down -o %N").out.strip()
        assert drained == ""
    finally:
        victim.start()
        wait_until("broker1 back", lambda: cluster._http_ok("broker1", 8291, "/v1/health"),
                   120)


def test_mariadb_restarted_while_jobs_start_loses_nothing(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    script = TWO_NODES + "srun bash -c 'echo NODE $(hostname) ${" + QPU + \
        "_QRMI_JOB_ACQUISITION_TOKEN}'\n"
    jobs = [cluster.sbatch(script) for _ in range(6)]
    database = cluster.client.containers.get("slurm-qpu-mariadb")
    database.restart(timeout=30)  # the brokers' journal (and accounting) away for seconds
    for job_id in jobs:
        assert cluster.wait_job(job_id, timeout=600) == "COMPLETED", \
            output_of(cluster, job_id)
    assert len(sessions_opened(admin, seen)) == 6  # one per job: no lease made twice
    for job_id in jobs:
        wait_until(f"job {job_id}'s lease released",
                   lambda j=job_id: lease_states(cluster, j) == ["released"], 120)
        tokens = set(re.findall(r"NODE \S+ (\S+)", output_of(cluster, job_id)))
        assert len(tokens) == 1
        assert_session_closed(admin, tokens.pop())
    assert cluster.exec("login", "sinfo -h -t drain,down -o %N").out.strip() == ""


def test_brokers_started_on_the_journal_of_an_older_slurm_qpu_migrate_it_and_keep_its_leases(
        cluster: DockerCluster) -> None:
    containers = [cluster.client.containers.get(f"slurm-qpu-{b}") for b in BROKERS]
    for container in containers:
        container.stop(timeout=30)
    try:
        # what a slurm-qpu of schema version 1 left: a lease it granted and released
        make_v1(cluster.journal)
        cluster.journal("INSERT INTO leases VALUES (7, 1, 'released', 'alice', 1001, "
                        "'[\"ibm_manila\"]', '{}', NULL, 's', 1000.0, 5000.0, 1500.0, '[]')")
        cluster.journal("INSERT INTO held (job_id, gen, name, type, token, acquired_at, "
                        "released_at) VALUES (7, 1, 'ibm_manila', "
                        "'ibm-quantum-compute-service', 'old-session', 1001.0, 1500.0)")
    finally:
        for container in containers:  # both at once: they migrate it one at a time
            container.start()
        for broker in BROKERS:
            wait_until(f"{broker} back", lambda b=broker: cluster._http_ok(b, 8291,
                                                                           "/v1/health"), 120)
    assert cluster.journal("SELECT value FROM meta WHERE `key`='schema_version'") == [
        (str(SCHEMA_VERSION),)]
    assert lease_states(cluster, 7) == ["released"]
    assert cluster.journal("SELECT selected FROM leases WHERE job_id=7") == [("{}",)]
    job_id = cluster.sbatch(f"#!/bin/bash\n#SBATCH --qpu={QPU}\n" + "srun hostname\n")
    assert cluster.wait_job(job_id, timeout=300) == "COMPLETED", output_of(cluster, job_id)
    wait_until(f"job {job_id}'s lease released",
               lambda: lease_states(cluster, job_id) == ["released"], 120)
    logs = cluster.broker_logs()
    assert f"from schema version {SCHEMA_VERSION - 1} to {SCHEMA_VERSION}" in logs
    assert "Traceback" not in logs
