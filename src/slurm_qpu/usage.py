"""QPU usage records: what a job did with each QPU, kept where admins already look.

The broker (or, in direct mode, the releasing node) knows per job and QPU when the
session opened and closed, and, through its proxy, how many vendor jobs ran, with how many
shots and how much QPU time the vendor reported. At the end of the job the epilog writes
that record into the job's AdminComment in Slurm accounting, so ``sacct -j ID -o
AdminComment`` shows it and ``slurm-qpu usage`` adds it up per user, account and QPU.

Why AdminComment and not only TRES: a license TRES (``license/qpu_<name>``, which
``slurm-qpu slurm-conf`` configures too) gives Slurm-native TRES-minutes per user and
account in ``sreport``, but only the job's wall time; shots, vendor jobs and the vendor's
QPU seconds need a free-form field only administrators can write: AdminComment (users
cannot forge it; ``sacctmgr modify job`` sets it after the job ended).

The text is one line, no double quotes (sacctmgr turns them into backquotes):
``slurm-qpu-usage:v1;qpu=ibm_manila,type=...,start=2026-11-25T07:51:48Z,...;qpu=...``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MARK = "slurm-qpu-usage:v1"


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(text: str) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class QpuUsage:
    """One job's use of one QPU."""

    qpu: str
    type: str
    start: float | None  # the vendor session opened (acquired)
    end: float | None  # ... and closed (released); None while the job holds it
    vendor_jobs: int = 0
    shots: int | None = None  # None: no vendor job reported its shots
    qpu_seconds: float | None = None  # the vendor's billed QPU time, when it reports it
    selected_by: str | None = None  # the --qpu=any: selection that picked the QPU

    @property
    def session_seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    def fields(self) -> str:
        items = {"qpu": self.qpu, "type": self.type, "start": _iso(self.start),
                 "end": _iso(self.end),
                 "session_s": "" if self.session_seconds is None
                 else f"{self.session_seconds:.1f}",
                 "vendor_jobs": str(self.vendor_jobs),
                 "shots": "" if self.shots is None else str(self.shots),
                 "qpu_s": "" if self.qpu_seconds is None else f"{self.qpu_seconds:.3f}"}
        if self.selected_by:  # last: its filter holds '=' (split once) but never ',' or ';'
            items["via"] = self.selected_by
        return ",".join(f"{k}={v}" for k, v in items.items())


def encode(records: Sequence[QpuUsage]) -> str:
    """The AdminComment text for a job's usage records."""
    return ";".join([MARK, *(r.fields() for r in records)])


def decode(text: str) -> list[QpuUsage]:
    """The records in an AdminComment; [] for any other text (e.g. a site's own note)."""
    parts = (text or "").strip().split(";")
    if parts[0] != MARK:
        return []
    out = []
    for part in parts[1:]:
        try:
            item = dict(kv.split("=", 1) for kv in part.split(","))
            out.append(QpuUsage(
                item["qpu"], item.get("type", ""), _ts(item.get("start", "")),
                _ts(item.get("end", "")), int(item.get("vendor_jobs") or 0),
                int(item["shots"]) if item.get("shots") else None,
                float(item["qpu_s"]) if item.get("qpu_s") else None,
                item.get("via") or None))
        except (KeyError, ValueError):
            continue  # a damaged record is skipped, the others still count
    return out


# ----------------------------------------------------------------- writing to Slurm


def record_in_accounting(job_id: int, records: Sequence[QpuUsage], *,
                         sacctmgr: str = "sacctmgr", timeout: float = 15) -> bool:
    """Write the job's usage into its AdminComment in slurmdbd (the job has ended, so
    ``scontrol update`` no longer can). False, logged, when there is no accounting."""
    if not records:
        return True
    try:
        proc = subprocess.run([sacctmgr, "-i", "modify", "job", f"jobid={job_id}", "set",
                               f"AdminComment={encode(records)}"],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("job %s: QPU usage not written to Slurm accounting: %s", job_id, exc)
        return False
    if proc.returncode != 0 or "Modified jobs" not in proc.stdout:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        last = why[-1] if why else f"exit {proc.returncode}"
        if "accounting_storage" in last:
            # a cluster without slurmdbd: nothing is wrong, and a warning on every job's
            # epilog would say otherwise
            log.info("job %s: QPU usage not written to Slurm accounting: no slurmdbd "
                     "(sacctmgr: %s); sacctmgr=no on the spank_qpu.so line stops trying",
                     job_id, last)
        else:
            log.warning("job %s: QPU usage not written to Slurm accounting (sacctmgr: %s)",
                        job_id, last)
        return False
    return True


# ----------------------------------------------------------------- reading and reporting

SACCT_FIELDS = ("JobID", "User", "Account", "Partition", "State", "Start", "End",
                "AdminComment")


@dataclass(frozen=True)
class UsageRow:
    """One job's use of one QPU, with the job's owner from Slurm."""

    job_id: str
    user: str
    account: str
    qpu: str
    type: str
    start: str
    end: str
    session_seconds: float
    vendor_jobs: int
    shots: int | None
    qpu_seconds: float | None


def parse_sacct(text: str) -> list[UsageRow]:
    """Rows of ``sacct -P -n -X -o <SACCT_FIELDS>`` that carry a usage record."""
    rows = []
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) < len(SACCT_FIELDS):
            continue
        job_id, user, account, _part, _state, _start, _end = cols[:7]
        comment = "|".join(cols[7:])
        for r in decode(comment):
            rows.append(UsageRow(job_id, user, account, r.qpu, r.type, _iso(r.start),
                                 _iso(r.end), r.session_seconds or 0.0, r.vendor_jobs,
                                 r.shots, r.qpu_seconds))
    return rows


def from_sacct(since: str, until: str, *, users: str | None = None,
               accounts: str | None = None, sacct: str = "sacct") -> list[UsageRow]:
    argv = [sacct, "-a", "-X", "-n", "-P", "-S", since, "-E", until,
            "-o", ",".join(SACCT_FIELDS)]
    if users:
        argv += ["-u", users]
    if accounts:
        argv += ["-A", accounts]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise UsageError(f"sacct failed: {(proc.stderr or proc.stdout).strip()}")
    return parse_sacct(proc.stdout)


class UsageError(Exception):
    pass


GROUPS = ("user", "account", "qpu")


@dataclass
class Total:
    user: str
    account: str
    qpu: str
    jobs: int = 0
    session_hours: float = 0.0
    vendor_jobs: int = 0
    shots: int = 0
    qpu_seconds: float = 0.0


def totals(rows: Iterable[UsageRow], by: Sequence[str] = GROUPS) -> list[Total]:
    """Rows added up per distinct values of ``by`` (the others show as "*")."""
    out: dict[tuple[str, str, str], Total] = {}
    for row in rows:
        user, account, qpu = (str(getattr(row, g)) if g in by else "*" for g in GROUPS)
        total = out.setdefault((user, account, qpu), Total(user, account, qpu))
        total.jobs += 1
        total.session_hours += row.session_seconds / 3600
        total.vendor_jobs += row.vendor_jobs
        total.shots += row.shots or 0
        total.qpu_seconds += row.qpu_seconds or 0.0
    return [out[k] for k in sorted(out)]


COLUMNS = ("user", "account", "qpu", "jobs", "session_hours", "vendor_jobs", "shots",
           "qpu_seconds")


def _cells(t: Total) -> list[str]:
    return [t.user, t.account, t.qpu, str(t.jobs), f"{t.session_hours:.3f}",
            str(t.vendor_jobs), str(t.shots), f"{t.qpu_seconds:.3f}"]


def render(rows: Sequence[Total], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([asdict(t) for t in rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(_cells(t) for t in rows)
        return buf.getvalue()
    header = [c.upper() for c in COLUMNS]
    table = [header, *(_cells(t) for t in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in table]
    if not rows:
        lines.append("(no QPU usage in this window)")
    return "\n".join(lines) + "\n"
