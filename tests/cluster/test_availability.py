"""A QPU the vendor takes into maintenance: new jobs for it wait PENDING with the reason
shown by `slurm-qpu jobs`, `slurm-qpu status` says why, and the jobs start by themselves
when the QPU is back. And the broker's metrics after a known sequence of jobs."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from jobs import QPU, SAMPLER, run, wait_until
from prometheus_client.parser import text_string_to_metric_families

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import BROKER_PORT, BROKERS, DockerCluster

AWAY = "ibm_kawasaki"


def reservations(cluster: DockerCluster) -> str:
    return cluster.exec("login", "scontrol -o show reservation").out


def test_a_maintenance_window_holds_new_jobs_and_releases_them_when_it_ends(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    admin.maintenance(AWAY, True)
    try:
        wait_until("the broker's reservation", lambda: f"qpu_maint_{AWAY}" in
                   reservations(cluster), timeout=60)
        def row_of_away() -> dict[str, Any]:
            status = cluster.as_user("slurm-qpu status --json")
            assert status.rc == 0, status.out
            row: dict[str, Any] = next(r for r in json.loads(status.out) if r["name"] == AWAY)
            return row

        # every broker asks the vendors and reads the holds at its own pace (3 s here):
        # whichever one HAProxy gives the command says so once its next pass is done
        wait_until("both brokers to see the hold", lambda: all(
            (r["state"], r["held"]) == ("unavailable", True)
            for r in (row_of_away(), row_of_away())), timeout=60)
        row = row_of_away()
        assert row["reason"] == (f"IBM Quantum System reports {AWAY} paused: The backend is "
                                 "paused for maintenance.")
        table = cluster.as_user("slurm-qpu status").out
        assert re.search(rf"^{AWAY}\s+ibm-quantum-system\s+unavailable \(held\)",
                         table, re.M), table
        job = cluster.sbatch(f"#!/bin/bash\n#SBATCH --qpu={AWAY} -p quantum\n"
                             f"echo GOT ${AWAY}_QRMI_JOB_ACQUISITION_TOKEN\n")
        wait_until("the job pending on the license", lambda: cluster.exec(
            "login", f"squeue -h -j {job} -o '%T %r'").out.strip() == "PENDING Licenses")
        why = cluster.as_user(f"slurm-qpu jobs --qpu {AWAY}").out
        assert re.search(rf"^{job}\s+alice\s+quantum\s+quantum\s+PENDING\s+{AWAY}\s+\S+\s+"
                         rf"waiting: QPU {AWAY} unavailable at the vendor", why, re.M), why
        assert cluster.job_state(job) == "PENDING"  # still waiting, not failed
    finally:
        admin.maintenance(AWAY, False)
    wait_until("the reservation gone", lambda: f"qpu_maint_{AWAY}" not in
               reservations(cluster), timeout=60)
    assert cluster.wait_job(job) == "COMPLETED"


def metrics(cluster: DockerCluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # each broker counts what it served: the cluster's counts are their sums (the
    # gauges read from the shared journal are the same on both; the test reads them as 0)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for broker in BROKERS:
        text = httpx.get(cluster.url(broker, BROKER_PORT, "/metrics"), timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = out.get(key, 0.0) + s.value
    return out


def test_metrics_count_a_known_sequence_of_jobs(cluster: DockerCluster,
                                                admin: EmulatorAdmin) -> None:
    before = metrics(cluster)
    for _ in range(2):
        assert run(cluster, f"#!/bin/bash\n#SBATCH --qpu={QPU}\nsrun python3 - <<'PY'\n"
                            f"{SAMPLER}\nPY\n").state == "COMPLETED"
    # one job the vendor refuses a session: acquisition fails, the job fails
    admin.inject(path=r"/sessions$", status=403, count=1)
    failed = run(cluster, f"#!/bin/bash\n#SBATCH --qpu={QPU}\ntrue\n")
    after = metrics(cluster)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert failed.state == "FAILED", failed.output
    assert delta("slurm_qpu_acquire_seconds_count", outcome="acquired") == 2
    assert delta("slurm_qpu_acquire_seconds_count", outcome="failed") == 1
    assert delta("slurm_qpu_release_seconds_count", outcome="released") == 2
    assert after[("slurm_qpu_leases_active", (("qpu", QPU),))] == 0
    assert delta("slurm_qpu_proxy_requests_total", qpu=QPU, status="200") >= 2
    errors = [k for k in after if k[0] == "slurm_qpu_vendor_errors_total" and
              ("qpu", QPU) in k[1] and ("op", "acquire") in k[1]]
    assert sum(after[k] - before.get(k, 0.0) for k in errors) == 1
