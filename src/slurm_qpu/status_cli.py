"""``slurm-qpu status`` (the QPUs, like sinfo) and ``slurm-qpu jobs`` (jobs and their QPUs,
like squeue)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from slurm_qpu.broker.availability import RESERVATION_PREFIX, Reservations
from slurm_qpu.slurmconf import license_name

PLUGSTACK = "/etc/slurm/plugstack.conf"
LICENSE_PREFIX = license_name("")


def broker_url(plugstack: str = PLUGSTACK) -> str | None:
    """The broker= of the slurm-qpu line in plugstack.conf (or its plugstack.conf.d)."""
    if os.environ.get("SLURM_QPU_BROKER"):
        return os.environ["SLURM_QPU_BROKER"]
    files = [plugstack, *sorted(glob.glob(os.path.join(os.path.dirname(plugstack),
                                                       "plugstack.conf.d", "*.conf")))]
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and "spank_qpu" in words[1]:
                for word in words[2:]:
                    if word.startswith("broker="):
                        return word.split("=", 1)[1]
    return None


def _aligned(table: list[list[str]]) -> str:
    """Columns padded to their widest cell; the last one (free text) runs on."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                      + "  " + row[-1]).rstrip() for row in table) + "\n"


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0, int(time.time() - ts))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def render_status(rows: list[dict[str, Any]]) -> str:
    table = [["QPU", "TYPE", "STATUS", "QUEUE", "JOBS", "CHECKED", "NOTE"]]
    for r in rows:
        state = str(r.get("state") or "unchecked") + (" (held)" if r.get("held") else "")
        note = r.get("reason") or ""
        if r.get("last_error"):
            note = (note + "; " if note else "") + \
                f"last error {_ago(r.get('last_error_at'))}: {r['last_error']}"
        jobs = ",".join(map(str, r.get("jobs") or [])) or "-"
        depth = r.get("queue_depth")
        table.append([str(r["name"]), str(r["type"]), state,
                      "-" if depth is None else str(depth), jobs, _ago(r.get("checked_at")),
                      note])
    return _aligned(table)


def _status(args: argparse.Namespace) -> int:
    from slurm_qpu.broker.client import BrokerClient, BrokerError

    url = args.broker or broker_url()
    if not url:
        print("slurm-qpu status: no broker: give --broker URL (or set broker= on the "
              f"slurm-qpu line of {PLUGSTACK}); in direct mode the QPUs' status needs the "
              "credentials only the broker holds", file=sys.stderr)
        return 1
    try:
        rows = BrokerClient(url, deadline=10).call("GET", "/v1/status")
    except BrokerError as exc:
        print(f"slurm-qpu status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render_status(rows), end="\n"
          if args.json else "")
    return 0


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
    return _aligned(table)


def _jobs(args: argparse.Namespace) -> int:
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


def add_parsers(sub: Any) -> None:
    st = sub.add_parser("status", help="the QPUs: vendor status, queue, jobs holding them, "
                                       "last error (asks the broker, with your MUNGE "
                                       "credential)")
    st.add_argument("--broker", metavar="URL",
                    help="default: broker= of the slurm-qpu line in plugstack.conf")
    st.add_argument("--json", action="store_true",
                    help="the same as JSON, for scripts and monitoring")
    st.set_defaults(func=_status)
    jobs = sub.add_parser("jobs", help="running and pending jobs with their QPUs, and why "
                                       "pending ones wait")
    jobs.add_argument("--user", help="only this user's jobs")
    jobs.add_argument("--qpu", help="only jobs for this QPU")
    jobs.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    jobs.add_argument("--squeue", default="squeue", help=argparse.SUPPRESS)
    jobs.add_argument("--scontrol", default="scontrol", help=argparse.SUPPRESS)
    jobs.set_defaults(func=_jobs)
