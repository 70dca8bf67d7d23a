"""How the nodes of one job agree on a single acquisition, without a shared filesystem.

The job's first node acquires; the others must learn the outcome. Production compute
nodes share nothing with each other, but they all reach slurmctld, so the first node
publishes a *public* record (QPU names, types, acquisition tokens or the error; never a
credential) in the job's AdminComment, which only Slurm administrators (root's prolog) can
write and which the other nodes' prologs read back with ``scontrol show job``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from slurm_qpu.slurmcli import Scontrol, parse_time_limit

MARK = "slurm-qpu:v1:"


@dataclass(frozen=True)
class PublicRecord:
    """What the first node tells the others. Visible to the job's user: no secrets."""

    state: str  # "acquired" | "failed"
    owner_node: str
    resources: list[dict[str, str]] = field(default_factory=list)  # name, type, token
    error: str | None = None

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return MARK + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PublicRecord | None:
        if not text or not text.startswith(MARK):
            return None
        body = text[len(MARK):]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return cls(**data)
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class JobView:
    time_limit_seconds: int | None
    record: PublicRecord | None


class JobBoard(Protocol):
    def view(self, job_id: int) -> JobView: ...

    def publish(self, job_id: int, record: PublicRecord) -> None: ...


@dataclass
class SlurmJobBoard:
    """JobBoard on slurmctld: reads ``scontrol show job``, writes AdminComment."""

    scontrol: Scontrol

    def view(self, job_id: int) -> JobView:
        fields = self.scontrol.show_job(job_id)
        return JobView(parse_time_limit(fields.get("TimeLimit")),
                       PublicRecord.decode(fields.get("AdminComment", "")))

    def publish(self, job_id: int, record: PublicRecord) -> None:
        self.scontrol.set_admin_comment(job_id, record.encode())


class PeerTimeout(Exception):
    pass


def wait_for_record(
    board: JobBoard,
    job_id: int,
    timeout: float,
    *,
    poll: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobView:
    """Poll until the first node's record appears; raise PeerTimeout after ``timeout`` s."""
    deadline = clock() + timeout
    while True:
        view = board.view(job_id)
        if view.record is not None:
            return view
        if clock() >= deadline:
            raise PeerTimeout(f"no word from the job's first node after {timeout:.0f} s")
        sleep(min(poll * 2, 2.0))
        poll = min(poll * 2, 2.0)
