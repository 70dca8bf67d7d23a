"""``slurm-qpu jobs``: the jobs that hold or wait for a QPU, like squeue, and why the
pending ones wait (in QPU terms: the QPU's cap, a vendor maintenance hold)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from slurm_qpu.broker.availability import RESERVATION_PREFIX, Reservations
from slurm_qpu.cli.status import LICENSE_PREFIX, aligned


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    user: str
    account: str
    partition: str
    state: str
    reason: str
    qpus: tuple[str, ...]
    elapsed: str
    nodes: str


SQUEUE_FORMAT = "%i|%u|%a|%P|%T|%r|%W|%M|%N"


def parse_squeue(text: str) -> list[QueuedJob]:
    """Jobs of ``squeue -h -o SQUEUE_FORMAT`` that hold or wait for a QPU license."""
    jobs = []
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) != 9:
            continue
        qpus = tuple(item.split(":")[0][len(LICENSE_PREFIX):]
                     for item in cols[6].split(",") if item.startswith(LICENSE_PREFIX))
        if qpus:
            jobs.append(QueuedJob(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], qpus,
                                  cols[7], cols[8]))
    return jobs


def explain(job: QueuedJob, unavailable: set[str]) -> str:
    """Why a job is where it is, in QPU terms."""
    if job.state != "PENDING":
        return job.nodes
    away = [q for q in job.qpus if q in unavailable]
    if away:
        return (f"waiting: QPU {','.join(away)} unavailable at the vendor (held by "
                f"reservation {RESERVATION_PREFIX}{away[0]}); starts when it is back")
    if job.reason == "Licenses":
        return f"waiting: QPU {','.join(job.qpus)} in use by its maximum number of jobs"
    return f"waiting: {job.reason}"


def render_jobs(jobs: list[QueuedJob], unavailable: set[str]) -> str:
    table = [["JOBID", "USER", "ACCOUNT", "PARTITION", "STATE", "QPUS", "TIME",
              "NODES/REASON"]]
    for j in jobs:
        table.append([j.job_id, j.user, j.account, j.partition, j.state, ",".join(j.qpus),
                      j.elapsed, explain(j, unavailable)])
    return aligned(table)


def main(args: argparse.Namespace) -> int:
    argv = [args.squeue, "-h", "-o", SQUEUE_FORMAT]
    if args.user:
        argv += ["-u", args.user]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        print(f"slurm-qpu jobs: squeue failed: {(proc.stderr or proc.stdout).strip()}",
              file=sys.stderr)
        return 1
    jobs = parse_squeue(proc.stdout)
    if args.qpu:
        jobs = [j for j in jobs if args.qpu in j.qpus]
    try:
        unavailable = Reservations(args.scontrol).current()
    except (OSError, subprocess.SubprocessError):
        unavailable = set()
    if args.json:
        print(json.dumps([{**j.__dict__, "qpus": list(j.qpus),
                           "why": explain(j, unavailable)} for j in jobs], indent=2))
    else:
        print(render_jobs(jobs, unavailable), end="")
    return 0


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="running and pending jobs with their QPUs, and why "
                                       "pending ones wait")
    jobs.add_argument("--user", help="only this user's jobs")
    jobs.add_argument("--qpu", help="only jobs for this QPU")
    jobs.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    jobs.add_argument("--squeue", default="squeue", help=argparse.SUPPRESS)
    jobs.add_argument("--scontrol", default="scontrol", help=argparse.SUPPRESS)
    jobs.set_defaults(func=main)
