"""Talking to slurmctld through its command-line clients (pyslurm does not build against the
Slurm versions Debian ships; see DESIGN.md). Only used by root-side handlers."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")
UNLIMITED = {"UNLIMITED", "INFINITE", "Partition_Limit", "NONE"}


class SlurmCommandError(RuntimeError):
    pass


def parse_oneliner(text: str) -> dict[str, str]:
    """Parse ``scontrol show job -o`` output (``Key=value Key=value ...``)."""
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(text.strip()))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text.strip())
        fields.setdefault(m.group(1), text.strip()[m.end():end].strip())
    return fields


def parse_time_limit(value: str | None) -> int | None:
    """Seconds of a Slurm time limit (``[D-]HH:MM:SS``, ``MM:SS``, ``M``); None if unlimited."""
    if not value or value in UNLIMITED:
        return None
    days = 0
    if "-" in value:
        d, value = value.split("-", 1)
        days = int(d)
    parts = [int(p) for p in value.split(":")]
    if len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts[-3], parts[-2], parts[-1]
    return ((days * 24 + h) * 60 + m) * 60 + s


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

    def show_job(self, job_id: int) -> dict[str, str]:
        return parse_oneliner(self._run("show", "job", "-o", str(job_id)))

    def set_admin_comment(self, job_id: int, text: str) -> None:
        if any(c.isspace() for c in text):
            raise ValueError("AdminComment text must not contain whitespace")
        self._run("update", f"JobId={job_id}", f"AdminComment={text}")
