"""python -m slurm_qpu_lab up|down|demo [--lab DIR] [--source DIR] [--nodes N]"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from slurm_qpu_lab.cluster import Lab, LabError
from slurm_qpu_lab.docker_cluster import BROKERS, NODES, ClusterError, DockerCluster

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-job.sh"


def vendor_view(job_requests: list[dict[str, Any]]) -> list[str]:
    """The emulator's request log, reduced to what a vendor's dashboard would show."""
    interesting = ("/sessions", "/jobs")
    lines = []
    for r in job_requests:
        path = r["path"]
        if r["method"] in ("POST", "PATCH", "DELETE") and any(p in path for p in interesting):
            lines.append(f"{r['method']:<6} {path}  -> {r['status']}")
    return lines


def _emulator_log(lab: Lab) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{lab.emulator_url}/_emulator/requests", timeout=10) as resp:
        log: list[dict[str, Any]] = json.load(resp)
    return log


def print_audit_excerpt(audit: Path, job_id: int, where: str = "") -> None:
    """The broker's audit lines of one job: how many, the first and last two."""
    lines = [ln.split(": ", 1)[-1] for ln in audit.read_text().splitlines()
             if f"job={job_id} " in ln] if audit.exists() else []
    print(f"--- the broker's audit log{where}: {len(lines)} request(s) of job {job_id}, e.g.")
    for line in lines if len(lines) <= 4 else [*lines[:2], "...", *lines[-2:]]:
        print(line)


def demo(lab: Lab) -> int:
    lab.up()
    script = (lab.source / "examples" / "demo-job.sh") if lab.source else DEMO
    print(f"\n$ sbatch {script.name}   (as user {lab.user}; the script asks --qpu=ibm_manila)")
    seen = len(_emulator_log(lab))
    job_id = lab.sbatch("-o", f"{lab.jobs_dir}/demo-%j.out", script=script.read_text())
    state = lab.wait_job(job_id, timeout=300)
    print(f"job {job_id}: {state}\n--- output ({lab.jobs_dir}/demo-{job_id}.out)")
    print((lab.jobs_dir / f"demo-{job_id}.out").read_text().rstrip())
    print(f"--- what the vendor (the emulator at {lab.emulator_url}) saw")
    for line in vendor_view(_emulator_log(lab)[seen:]):
        print(line)
    if lab.broker:
        audit = lab.log("broker-audit.log")
        print_audit_excerpt(audit, job_id, f" ({audit})")
    print(textwrap.dedent(f"""
        The lab is still running. Try it:
          . ./lab.env          # or: . {lab.root}/lab.env
          slurm-qpu list --config {lab.qrmi_config}
          runuser -u {lab.user} -- env SLURM_CONF=$SLURM_CONF sbatch --qpu=typo --wrap true
          examples: examples/ibm-quantum-compute, examples/ibm-quantum-system,
            examples/pasqal-cloud, examples/qrmi (sbatch them as {lab.user})
        Stop it with: make lab-down"""))
    return 0 if state == "COMPLETED" else 1


def docker_demo(cluster: DockerCluster) -> int:
    cluster.up()
    print(f"cluster up: {cluster.timings_text()}")
    script = (cluster.source / "examples" / "demo-job.sh").read_text()
    print("\n$ sbatch demo-job.sh   (as alice on the login node; the script asks "
          "--qpu=ibm_manila)")
    seen = len(cluster.emulator_requests())
    job_id = cluster.sbatch(script, "-o", "demo-%j.out")
    state = cluster.wait_job(job_id)
    out = cluster.home / "alice" / f"demo-{job_id}.out"
    print(f"job {job_id}: {state}\n--- output (/home/alice/demo-{job_id}.out on the login "
          "node)")
    print(out.read_text().rstrip() if out.exists() else "(no output file)")
    print("--- what the vendor (the emulator container) saw")
    for line in vendor_view(cluster.emulator_requests()[seen:]):
        print(line)
    # two brokers on one MariaDB journal behind HAProxy: each logs what it served
    for broker in BROKERS:
        print_audit_excerpt(cluster.log_dir(broker) / "broker-audit.log", job_id,
                            f" of {broker}")
    if state == "COMPLETED":
        state = failover_demo(cluster, script)
    print(textwrap.dedent(f"""
        The cluster is still running (containers slurm-qpu-*). Log into the login node:
          docker exec -it -u alice -w /home/alice slurm-qpu-login bash -l
          sbatch --qpu=ibm_manila --wrap 'env | grep QRMI'; squeue; sacct
          examples: /home/alice is shared with the compute nodes; copy examples/ there
        Logs of every node: {cluster.root / 'log'}
        Stop it with: make cluster-down"""))
    if state != "COMPLETED":
        print(cluster.collect_logs(), file=sys.stderr)
    return 0 if state == "COMPLETED" else 1


def failover_demo(cluster: DockerCluster, script: str) -> str:
    """The same job again, broker1 killed (SIGKILL) while it runs: its SDK calls after
    that go through HAProxy to broker2, and the epilog's release too. broker1 is started
    again afterwards. The job's final state."""
    victim = f"slurm-qpu-{BROKERS[0]}"
    flag = "/home/alice/demo-failover-go"
    cluster.exec("login", f"rm -f {flag}")
    lines = script.splitlines()
    last = max(k for k, line in enumerate(lines) if line.startswith("#SBATCH"))
    # the job waits for the demo to kill broker1 before its tasks and its QPU calls run
    lines.insert(last + 1, f'echo "job $SLURM_JOB_ID is running; the demo kills '
                           f'{BROKERS[0]} now"\nwhile [ ! -e {flag} ]; do sleep 0.5; done')
    print(f"\n$ sbatch --job-name=qpu-failover demo-job.sh   (the same job; {BROKERS[0]} is "
          "killed while it runs)")
    job_id = cluster.sbatch("\n".join(lines) + "\n", "--job-name=qpu-failover",
                            "-o", "failover-%j.out")
    out = cluster.home / "alice" / f"failover-{job_id}.out"
    deadline = time.monotonic() + 300
    while not (out.exists() and "is running" in out.read_text()):
        if time.monotonic() > deadline or cluster.job_state(job_id) not in (
                "PENDING", "CONFIGURING", "RUNNING", "UNKNOWN"):
            break
        time.sleep(0.5)
    container = cluster.client.containers.get(victim)
    container.kill()  # SIGKILL: what a crash or a lost host does
    print(f"$ docker kill {victim}   (SIGKILL, while job {job_id} holds its QPU)")
    cluster.exec("login", f"touch {flag}")
    try:
        state = cluster.wait_job(job_id)
    finally:
        container.start()
    print(f"job {job_id}: {state}\n--- output (/home/alice/failover-{job_id}.out)")
    print(out.read_text().rstrip() if out.exists() else "(no output file)")
    for broker in BROKERS:
        print_audit_excerpt(cluster.log_dir(broker) / "broker-audit.log", job_id,
                            f" of {broker}")
    lease = cluster.journal("SELECT state FROM leases WHERE job_id=?", job_id)
    drained = cluster.exec("login", "sinfo -h -t drain,down -o %N").out.strip()
    print(f"lease of job {job_id}: {', '.join(s for (s,) in lease) or '?'} (released by the "
          f"epilog through {BROKERS[1]}); drained nodes: {drained or 'none'}; "
          f"{BROKERS[0]} started again")
    return state


def docker_main(action: str) -> int:
    import docker

    cluster = DockerCluster()
    try:
        if action in ("up", "cluster-up"):
            cluster.up()
            print(f"cluster up: {', '.join(n.name for n in NODES)} "
                  f"({cluster.timings_text()})\n"
                  "log in: docker exec -it -u alice -w /home/alice slurm-qpu-login bash -l")
            return 0
        if action in ("down", "cluster-down"):
            cluster.down()
            return 0
        return docker_demo(cluster)
    except (ClusterError, docker.errors.DockerException) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slurm_qpu_lab",
                                     description="A real Slurm cluster on this machine with "
                                                 "slurm-qpu installed (root).")
    parser.add_argument("action", choices=["up", "down", "demo", "cluster-up", "cluster-down"],
                        help="up/down/demo: the lab on this machine; cluster-up/cluster-down: "
                             "the docker cluster (docker/)")
    parser.add_argument("--cluster", choices=["lab", "docker"], default="lab",
                        help="the lab on this machine (default) or the docker cluster "
                             "(up/down/demo --cluster docker = cluster-up/cluster-down/...)")
    parser.add_argument("--lab", default="/tmp/slurm-qpu-lab", help="lab directory")
    parser.add_argument("--source", help="slurm-qpu checkout to install from")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--slot", type=int, default=0, help="0-9; keeps two labs apart")
    parser.add_argument("--mode", choices=["broker", "direct"], default="broker",
                        help="broker: credentials stay with `slurm-qpu broker` (production "
                             "default); direct: QRMI's behaviour, secrets reach jobs")
    args = parser.parse_args(argv)
    if args.action.startswith("cluster-") or args.cluster == "docker":
        return docker_main(args.action)
    lab = Lab(Path(args.lab), Path(args.source) if args.source else None, args.nodes,
              args.slot, broker=args.mode == "broker")
    try:
        if args.action == "up":
            lab.up()
            mode = f"broker mode, broker at {lab.broker_url}" if lab.broker else "direct mode"
            print(f"lab up at {lab.root} ({mode}): {', '.join(lab.node_names)} idle; "
                  ". ./lab.env")
            return 0
        if args.action == "down":
            lab.down()
            return 0
        return demo(lab)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
