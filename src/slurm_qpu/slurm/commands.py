"""Talking to slurmctld through its command-line clients (pyslurm needs Slurm 25.11's
headers, and no Debian suite reachable here ships that release: its API is not there to
build against). Only used by root-side handlers."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from slurm_qpu.request.selection import Placement

_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


class SlurmCommandError(RuntimeError):
    pass


def parse_oneliner(text: str) -> dict[str, str]:
    """Parse ``scontrol show job -o`` output (``Key=value Key=value ...``) for people and
    the lab; never for decisions, since user free text (Comment) can look like a key."""
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(text.strip()))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text.strip())
        fields.setdefault(m.group(1), text.strip()[m.end():end].strip())
    return fields


def json_number(value: Any) -> int | None:
    """A number from ``squeue --json``: a plain int (22.05) or
    ``{"set": .., "infinite": .., "number": ..}`` (23.02 and later); None if unset/infinite."""
    if isinstance(value, dict):
        if value.get("infinite") or not value.get("set", True):
            return None
        value = value.get("number")
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class JobRecord:
    """The fields of a job the plugin reads, from structured output only: free-text fields
    a user controls (Comment, JobName, WorkDir) can never shadow them."""

    time_limit_seconds: int | None
    admin_comment: str
    restart_count: int
    user: str | None = None
    states: tuple[str, ...] = ()
    placement: Placement = field(default_factory=Placement)
    het_job_id: int | None = None  # a heterogeneous job's component: its leader's id


def parse_squeue_json(text: str, job_id: int) -> JobRecord:
    try:
        jobs = json.loads(text).get("jobs", [])
    except (ValueError, AttributeError):
        raise SlurmCommandError("squeue --json: output is not JSON") from None
    job = next((j for j in jobs if json_number(j.get("job_id")) == job_id), None)
    if job is None:
        raise SlurmCommandError(f"squeue --json: job {job_id} not found")
    minutes = json_number(job.get("time_limit"))
    # 22.05 reports an unlimited limit as a huge number of minutes (or 0 when unset)
    limit = minutes * 60 if minutes and minutes < 0xFFFFFFFE else None
    return JobRecord(limit, str(job.get("admin_comment") or ""),
                     json_number(job.get("restart_cnt")) or 0,
                     str(job["user_name"]) if job.get("user_name") else None,
                     _states(job.get("job_state")),
                     Placement(_text(job, "partition"), _text(job, "account"),
                               _text(job, "qos"), _licenses(job)),
                     json_number(job.get("het_job_id")) or None)


def _text(job: dict[str, Any], key: str) -> str | None:
    return str(job[key]) if job.get(key) else None


def license_names(text: str) -> frozenset[str]:
    """The license names in a Slurm license list: ``a:1,b*2,c`` (counts, and the ``|`` of
    either-or requests, dropped)."""
    parts = re.split(r"[,|]", text)
    return frozenset(name for p in parts if (name := re.split(r"[:*]", p)[0].strip()))


def _licenses(job: dict[str, Any]) -> frozenset[str] | None:
    """The names of the licenses a job holds: a field that is there but empty or null
    means none; None when the record has no such field or a shape not known here (then
    nothing is held against the job)."""
    value = job.get("licenses", ...)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return license_names(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return license_names(",".join(value))
    return None


# What squeue may still list for a while after a job ended (MinJobAge).
FINISHED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED",
                             "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})


def _states(value: Any) -> tuple[str, ...]:
    """``job_state``: a string (22.05) or a list of flags (23.02 and later)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def live_job_ids(text: str) -> set[int]:
    """Ids of the jobs in ``squeue --json`` output that have not finished (a COMPLETING job
    is still live: its epilogs are running)."""
    try:
        jobs = json.loads(text).get("jobs", [])
    except (ValueError, AttributeError):
        raise SlurmCommandError("squeue --json: output is not JSON") from None
    live = set()
    for job in jobs:
        job_id = json_number(job.get("job_id"))
        states = set(_states(job.get("job_state")))
        if job_id is not None and not (states and states <= FINISHED_STATES):
            live.add(job_id)
    return live


@dataclass
class Squeue:
    path: str = "squeue"
    timeout: float = 15.0

    def job(self, job_id: int) -> JobRecord:
        return parse_squeue_json(self._run("--states=all", "-j", str(job_id)), job_id)

    def live_jobs(self) -> set[int]:
        """Every job slurmctld still runs or queues."""
        return live_job_ids(self._run())

    def _run(self, *args: str) -> str:
        cmd = [self.path, "--json", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmCommandError(f"{' '.join(cmd)}: {exc}") from None
        if proc.returncode != 0:
            raise SlurmCommandError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout


@dataclass
class Scontrol:
    path: str = "scontrol"
    timeout: float = 15.0

    def _run(self, *args: str) -> str:
        try:
            proc = subprocess.run([self.path, *args], capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmCommandError(f"{self.path} {' '.join(args)}: {exc}") from None
        if proc.returncode != 0:
            raise SlurmCommandError(f"{self.path} {' '.join(args)}: "
                                    f"{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def licenses(self) -> set[str]:
        """The names of the licenses slurmctld has (``Licenses=`` in slurm.conf, and
        remote ones)."""
        out = self._run("show", "licenses", "-o")
        return set(re.findall(r"(?:^|\s)LicenseName=(\S+)", out))

    def set_admin_comment(self, job_id: int, text: str) -> None:
        if any(c.isspace() for c in text):
            raise ValueError("AdminComment text must not contain whitespace")
        self._run("update", f"JobId={job_id}", f"AdminComment={text}")
