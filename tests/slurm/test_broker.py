"""Broker mode on the real-Slurm lab: `slurm-qpu broker` holds the credentials, jobs hold a
token that dies with them, and their SDK calls go through the broker's proxy."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LabFixture
from test_vendor_jobs import SAMPLER, marker

from slurm_qpu.redact import is_secret_key
from slurm_qpu_emulator.admin import EmulatorAdmin

QPU = "ibm_manila"
MAX_BODY = 1024 * 1024

# Writes each task's whole environment, as the kernel holds it, to environ-<job>-<rank>.json
# in the job's directory (files, not output lines: two tasks' long lines can interleave).
PROC_ENVIRON = (
    "srun python3 -c 'import json,os; raw=open(\"/proc/self/environ\",\"rb\").read(); "
    "env=dict(kv.split(\"=\",1) for kv in raw.decode().split(\"\\0\") if \"=\" in kv); "
    "name=\"environ-%s-%s.json\" % (env[\"SLURM_JOB_ID\"], env[\"SLURM_PROCID\"]); "
    "open(name,\"w\").write(json.dumps(env))'\n")


def task_environs(lab: LabFixture, job_id: int) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(lab.jobs_dir.glob(f"environ-{job_id}-*"))]


@pytest.fixture(scope="module")
def blab(lab: LabFixture) -> Iterator[LabFixture]:
    """The session's lab, switched to broker mode for this module."""
    lab.use_broker(True, "--max-body", str(MAX_BODY))
    try:
        yield lab
    finally:
        lab.use_broker(False)


@pytest.fixture
def admin(blab: LabFixture) -> Iterator[EmulatorAdmin]:
    admin = EmulatorAdmin(blab.emulator_url)
    yield admin
    admin.clear_faults()
    admin.job_seconds(1.0)


def configured_secrets(lab: LabFixture) -> set[str]:
    config = json.loads(lab.qrmi_config.read_text())
    return {v for r in config["resources"] for k, v in r.get("environment", {}).items()
            if is_secret_key(k) and len(v) >= 4}


def lease_env(lab: LabFixture, job_id: int) -> dict[str, str]:
    """The environment the prolog recorded for a job (root can read the lease file)."""
    for node in lab.node_names:
        for where in ("jobs", "done"):
            path = lab.state_dir(node) / where / f"{job_id}.json"
            if path.exists():
                env: dict[str, str] = json.loads(path.read_text())["env"]
                return env
    raise AssertionError(f"no lease record for job {job_id} on any node")


def journal(lab: LabFixture, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(lab.broker_journal) as db:
        return db.execute(sql, args).fetchall()


def wait_until(check: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached after {timeout:.0f} s")


def vendor_sessions_opened(admin: EmulatorAdmin, since: int) -> list[dict[str, Any]]:
    return [r for r in admin.requests()[since:]
            if r["method"] == "POST" and r["path"] == "/api/v1/sessions"]


def test_sampler_job_runs_through_the_broker_and_no_secret_reaches_the_job_or_any_log(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    run = blab.run_job(f"--qpu={QPU}", "-N2", "--ntasks-per-node=1",
                       script=PROC_ENVIRON + SAMPLER, timeout=300)
    assert run.state == "COMPLETED", run.output
    result = json.loads(marker(run.output, "RESULT"))
    assert sum(result["counts"].values()) == 400
    assert admin.job(result["job"])["session_id"] == result["token"]
    environs = task_environs(blab, run.job_id)
    assert len(environs) == 2  # both nodes
    for env in environs:
        assert env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"].startswith(blab.broker_url + "/p/")
        assert env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"].startswith("sqpu_")
    secrets = configured_secrets(blab)
    assert secrets, "the lab config should hold secrets to look for"
    places = {"job output": run.output, "task environments": json.dumps(environs),
              **{str(p): p.read_text(errors="replace") for p in (blab.root / "log").glob("*")}}
    for where, text in places.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{where} contains configured secret(s)"
    assert len(vendor_sessions_opened(admin, seen)) == 1  # one session for a 2-node job


def test_a_finished_jobs_token_is_refused(blab: LabFixture) -> None:
    run = blab.run_job(f"--qpu={QPU}", script="true\n", timeout=120)
    assert run.state == "COMPLETED", run.output
    env = lease_env(blab, run.job_id)
    token = env[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"]
    api = env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"]
    response = httpx.get(f"{api}/backends", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "job token" in response.json()["message"]
    iam = httpx.post(f"{env[f'{QPU}_QRMI_IBM_QCS_IAM_ENDPOINT']}/identity/token",
                     data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                           "apikey": token})
    assert iam.status_code == 401


HOLD = "touch {flag}.started; while [ ! -e {flag} ]; do sleep 0.5; done\n"


def _start_holding_job(lab: LabFixture, qpus: str, name: str) -> tuple[int, Path]:
    flag = lab.jobs_dir / f"{name}-release"
    flag.unlink(missing_ok=True)
    job_id = lab.sbatch("-o", str(lab.jobs_dir / f"{name}-%j.out"), f"--qpu={qpus}",
                        script="#!/bin/bash\n" + HOLD.format(flag=flag))
    wait_until(lambda: Path(f"{flag}.started").exists(), 120, f"job {job_id} start")
    return job_id, flag


def test_one_jobs_token_cannot_reach_another_jobs_session_or_an_unrequested_qpu(
        blab: LabFixture) -> None:
    job_a, flag_a = _start_holding_job(blab, QPU, "jobA")
    job_b, flag_b = _start_holding_job(blab, QPU, "jobB")
    try:
        env_a, env_b = lease_env(blab, job_a), lease_env(blab, job_b)
        token_a = env_a[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"]
        session_b = env_b[f"{QPU}_QRMI_JOB_ACQUISITION_TOKEN"]
        auth = {"Authorization": f"Bearer {token_a}"}
        api = env_a[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"]
        other = httpx.get(f"{api}/sessions/{session_b}", headers=auth)
        assert other.status_code == 403
        assert "not this job's session" in other.json()["message"]
        own = httpx.get(f"{api}/sessions/{env_a[f'{QPU}_QRMI_JOB_ACQUISITION_TOKEN']}",
                        headers=auth)
        assert own.status_code == 200
        unrequested = httpx.get(f"{blab.broker_url}/p/ibm_brisbane/api/v1/backends",
                                headers=auth)
        assert unrequested.status_code == 403
        assert f"job {job_a} did not request QPU ibm_brisbane" in unrequested.json()["message"]
    finally:
        flag_a.touch()
        flag_b.touch()
    assert blab.wait_job(job_a) == "COMPLETED"
    assert blab.wait_job(job_b) == "COMPLETED"


def test_user_override_of_an_endpoint_is_ignored_with_a_warning(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    evil = "http://attacker.invalid/api/v1"
    proc = blab.as_user(
        ["env", f"{QPU}_QRMI_IBM_QCS_ENDPOINT={evil}",
         f"{QPU}_QRMI_IBM_QCS_SESSION_MODE=batch",
         "sbatch", "--parsable", "-o", str(blab.jobs_dir / "override-%j.out"), f"--qpu={QPU}"],
        input="#!/bin/bash\n" + PROC_ENVIRON + SAMPLER)
    assert proc.returncode == 0, proc.stderr
    assert f"ignoring {QPU}_QRMI_IBM_QCS_ENDPOINT from your environment" in proc.stderr
    assert f"ignoring {QPU}_QRMI_IBM_QCS_SESSION_MODE" not in proc.stderr  # allowed
    job_id = int(proc.stdout.strip().split(";")[0])
    assert blab.wait_job(job_id, timeout=300) == "COMPLETED"
    output = (blab.jobs_dir / f"override-{job_id}.out").read_text()
    env = task_environs(blab, job_id)[0]
    assert env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"].startswith(blab.broker_url)
    session = admin.session(json.loads(marker(output, "RESULT"))["token"])
    assert session["mode"] == "batch"  # the allowed override reached the vendor


def test_broker_killed_mid_job_and_restarted_the_job_proceeds_and_nothing_leaks(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    flag = blab.jobs_dir / "restart-go"
    flag.unlink(missing_ok=True)
    out = blab.jobs_dir / "restart-%j.out"
    job_id = blab.sbatch("-o", str(out), f"--qpu={QPU}", script="#!/bin/bash\n"
                         + HOLD.format(flag=flag) + SAMPLER)
    wait_until(lambda: Path(f"{flag}.started").exists(), 120, "job start")
    blab.stop_broker(kill=True)
    blab.start_broker()
    flag.touch()
    assert blab.wait_job(job_id, timeout=300) == "COMPLETED"
    output = Path(str(out).replace("%j", str(job_id))).read_text()
    session = admin.session(json.loads(marker(output, "RESULT"))["token"])
    assert session["accepting_jobs"] is False
    assert journal(blab, "SELECT state FROM leases WHERE job_id=?", job_id) == [("released",)]


def test_broker_down_at_job_end_the_reaper_releases_the_session_after_restart(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    job_id, flag = _start_holding_job(blab, QPU, "reaped")
    session_id = lease_env(blab, job_id)[f"{QPU}_QRMI_JOB_ACQUISITION_TOKEN"]
    blab.stop_broker(kill=True)
    try:
        flag.touch()
        assert blab.wait_job(job_id, timeout=180) == "COMPLETED"
        assert admin.session(session_id)["accepting_jobs"] is True  # nobody released it yet
    finally:
        blab.start_broker()
    wait_until(lambda: journal(blab, "SELECT state FROM leases WHERE job_id=?", job_id)
               == [("released",)], 60, "the reaper's release")
    assert admin.session(session_id)["accepting_jobs"] is False
    assert blab.undrained()


def test_broker_refuses_bad_tokens_oversized_bodies_and_path_tricks(blab: LabFixture) -> None:
    job_id, flag = _start_holding_job(blab, QPU, "tricks")
    try:
        token = lease_env(blab, job_id)[f"{QPU}_QRMI_IBM_QCS_IAM_APIKEY"]
        base = f"{blab.broker_url}/p/{QPU}"
        auth = {"Authorization": f"Bearer {token}"}
        for bad in ("garbage", token[:-4] + "AAAA", f"sqpu_{job_id}_1_"):
            r = httpx.get(f"{base}/api/v1/backends", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, bad
        host, port = blab.broker_url.removeprefix("http://").split(":")
        for trick in ("/api/v1/../../v1/leases", "/api/v1/%2e%2e/x", "/api/v1%2Fbackends",
                      "/api//v1/backends", "/api/v1/backends\\..\\x"):
            # http.client sends the path as given (httpx would remove the dot segments)
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", f"/p/{QPU}{trick}", headers=auth)
            assert conn.getresponse().status == 400, trick
            conn.close()
        big = httpx.post(f"{base}/api/v1/jobs", headers=auth,
                         content=b"x" * (2 * MAX_BODY))
        assert big.status_code == 413
        assert httpx.get(f"{base}/api/v1/backends", headers=auth).status_code == 200
    finally:
        flag.touch()
    assert blab.wait_job(job_id) == "COMPLETED"


def test_audit_log_has_a_line_per_request_with_job_user_route_status(blab: LabFixture) -> None:
    text = blab.log("broker-audit.log").read_text()
    line = next(ln for ln in text.splitlines() if "route=\"GET /p/ibm_manila/api/v1/backends"
                in ln and "status=200" in ln)
    assert re.search(r"job=\d+ user=qpuuser qpu=ibm_manila route=\"GET \S+\" status=200 "
                     r"bytes_in=\d+ bytes_out=\d+ ms=[\d.]+", line), line


def test_direct_mode_warns_at_slurmd_start_up_that_it_exposes_secrets(lab: LabFixture) -> None:
    # the session's lab starts in direct mode (no broker= on the plugstack line)
    text = lab.log("slurmd-node1.log").read_text(errors="replace")
    assert ("qpu: warning: direct mode (no broker= in plugstack.conf): the QPU credentials "
            "in the config reach the environment of every task of a --qpu job") in text


def test_a_broker_list_whose_first_broker_is_down_runs_the_job_through_the_next_one(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    # broker=DEAD,LIVE on the plugstack line: every node's prolog and epilog pass over the
    # broker that refuses connections, within one broker_timeout
    host = blab.broker_url.removeprefix("http://").split(":")[0]
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind((host, 0))
        dead = f"http://{host}:{probe.getsockname()[1]}"
    seen = len(admin.requests())
    blab.brokers_before = (dead,)
    blab.write_plugstack()
    try:
        run = blab.run_job(f"--qpu={QPU}", "-N2", "--ntasks-per-node=1", script=SAMPLER,
                           timeout=300)
    finally:
        blab.brokers_before = ()
        blab.write_plugstack()
    assert run.state == "COMPLETED", run.output
    assert sum(json.loads(marker(run.output, "RESULT"))["counts"].values()) == 400
    assert len(vendor_sessions_opened(admin, seen)) == 1  # one session, one lease
    assert journal(blab, "SELECT state FROM leases WHERE job_id=?", run.job_id) == [
        ("released",)]
    assert blab.undrained()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_behind_haproxy_with_the_shipped_configuration_jobs_run_and_a_broker_that_cannot_keep_its_journal_is_taken_out(  # noqa: E501
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    assert blab.source is not None
    # Debian's HAProxy, not started by its installation: the lab runs its own, by PID
    subprocess.run([str(blab.source / "tools" / "install-deps.sh"), "--no-start", "haproxy"],
                   check=True)
    seen = len(admin.requests())
    blab.use_load_balancer(True)
    try:
        front = blab.load_balancer_url
        run = blab.run_job(f"--qpu={QPU}", "-N2", "--ntasks-per-node=1",
                           script=PROC_ENVIRON + SAMPLER, timeout=300)
        assert run.state == "COMPLETED", run.output
        assert sum(json.loads(marker(run.output, "RESULT"))["counts"].values()) == 400
        for env in task_environs(blab, run.job_id):  # the jobs' endpoints: HAProxy's address
            assert env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"].startswith(front + "/p/")
        assert len(vendor_sessions_opened(admin, seen)) == 1
        # each node counts as itself behind HAProxy: the audit log names the nodes
        lines = [ln for ln in blab.log("broker-audit.log").read_text().splitlines()
                 if f"job={run.job_id} " in ln]
        clients = {ln.rsplit(" client=", 1)[1] for ln in lines}
        assert lines and clients and blab.broker_url.split("//")[1].split(":")[0] not in clients
        # a broker whose journal is gone answers its health check 503: HAProxy takes it out
        journal = blab.broker_journal
        moved = journal.with_name("moved.sqlite")
        journal.rename(moved)
        try:
            wait_until(lambda: http_status(f"{front}/v1/health") == 503, 30,
                       "HAProxy taking the broker out")
            assert http_status(f"{blab.broker_url}/v1/health") == 503
        finally:
            moved.rename(journal)
        wait_until(lambda: http_status(f"{front}/v1/health") == 200, 30,
                   "HAProxy putting the broker back")
    finally:
        blab.use_load_balancer(False)
    assert blab.undrained()


def test_over_tls_nodes_and_jobs_verify_the_broker_with_the_sites_ca(
        blab: LabFixture, admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch) -> None:
    # jobs inherit the submitter's environment: a bundle set there would be the job's own
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    seen = len(admin.requests())
    blab.use_tls(True)
    try:
        assert blab.tls is not None and blab.broker_url.startswith("https://")
        ca = str(blab.tls.ca)
        assert f"broker={blab.broker_url} " in blab.plugstack_line()
        assert f"broker_ca={ca}" in blab.plugstack_line()
        run = blab.run_job(f"--qpu={QPU}", "-N2", "--ntasks-per-node=1",
                           script=PROC_ENVIRON + SAMPLER, timeout=300)
        assert run.state == "COMPLETED", run.output
        assert sum(json.loads(marker(run.output, "RESULT"))["counts"].values()) == 400
        envs = task_environs(blab, run.job_id)
        assert len(envs) == 2
        for env in envs:  # the SDK verified the broker with the CA the node gave it
            assert env[f"{QPU}_QRMI_IBM_QCS_ENDPOINT"].startswith(blab.broker_url + "/p/")
            assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == ca
        # defaults: a job's own bundle wins
        own = blab.run_job(f"--qpu={QPU}",
                           "--export=ALL,SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                           script='srun bash -c \'echo "SSL=$SSL_CERT_FILE '
                                  'REQ=$REQUESTS_CA_BUNDLE"\'\n')
        assert own.state == "COMPLETED", own.output
        assert f"SSL=/etc/ssl/certs/ca-certificates.crt REQ={ca}" in own.output
        assert len(vendor_sessions_opened(admin, seen)) == 2
    finally:
        blab.use_tls(False)
    assert blab.undrained()


def test_a_het_job_whose_components_name_the_same_qpu_opens_one_vendor_session(
        blab: LabFixture, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    token = "${" + QPU + "_QRMI_JOB_ACQUISITION_TOKEN}"
    run = blab.run_job(script=(
        f"#SBATCH -N1 --qpu={QPU}\n#SBATCH hetjob\n#SBATCH -N1 --qpu={QPU}\n"
        f"srun --het-group=0 bash -c 'echo G0 {token} $QRMI_JOB_QPU_RESOURCES'\n"
        f"srun --het-group=1 bash -c 'echo G1 {token} $QRMI_JOB_QPU_RESOURCES'\n"),
        timeout=300)
    assert run.state == "COMPLETED", run.output
    g0, g1 = marker(run.output, "G0").split(), marker(run.output, "G1").split()
    assert g0[0] == g1[0] != ""  # one vendor session for both components
    assert g0[1] == g1[1] == QPU
    assert len(vendor_sessions_opened(admin, seen)) == 1
    # one lease, under the het leader's id, released once the het job ended
    wait_until(lambda: journal(blab, "SELECT job_id, state FROM leases WHERE job_id IN "
                                     "(?, ?)", run.job_id, run.job_id + 1)
               == [(run.job_id, "released")], 60, "the het job's lease released")
    assert blab.undrained()


def test_plugstack_env_arguments_reach_every_task_as_with_spank_qrmi(
        blab: LabFixture) -> None:
    blab.plugstack_args = ("--env:QPU_SITE_NOTE=lab-three", "--env:RUST_LOG=debug")
    blab.write_plugstack()
    try:
        run = blab.run_job(f"--qpu={QPU}", "-N2", "--ntasks-per-node=1",
                           "--export=ALL,QPU_SITE_NOTE=mine", script=(
                               "srun bash -c 'echo ENV $(hostname) $QPU_SITE_NOTE "
                               "$RUST_LOG ${" + QPU + "_QRMI_IBM_QCS_ENDPOINT}'\n"))
    finally:
        blab.plugstack_args = ()
        blab.write_plugstack()
    assert run.state == "COMPLETED", run.output
    lines = sorted(line.split()[1:] for line in run.output.splitlines()
                   if line.startswith("ENV "))
    assert [line[0] for line in lines] == ["node1", "node2"]
    for _, note, rust_log, endpoint in lines:  # set over the job's own export, as spank_qrmi
        assert (note, rust_log) == ("lab-three", "debug")
        assert endpoint.startswith(blab.broker_url + "/p/")
