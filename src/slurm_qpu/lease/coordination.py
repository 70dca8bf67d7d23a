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

from slurm_qpu.request.selection import Placement
from slurm_qpu.slurm.commands import Scontrol, Squeue

MARK = "slurm-qpu:v1:"


@dataclass(frozen=True)
class PublicRecord:
    """What the first node tells the others. Visible to the job's user: no secrets."""

    state: str  # "acquired" | "failed"
    owner_node: str
    resources: list[dict[str, str]] = field(default_factory=list)  # name, type, token
    error: str | None = None
    run: int = 0  # the job's restart count: a requeued job's old record is not this run's

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
    restart_count: int = 0
    placement: Placement = field(default_factory=Placement)  # for any: selections


class JobBoard(Protocol):
    def view(self, job_id: int) -> JobView: ...

    def publish(self, job_id: int, record: PublicRecord) -> None: ...


@dataclass
class SlurmJobBoard:
    """JobBoard on slurmctld: reads ``squeue --json``, writes AdminComment."""

    scontrol: Scontrol
    squeue: Squeue = field(default_factory=Squeue)

    def view(self, job_id: int) -> JobView:
        job = self.squeue.job(job_id)
        return JobView(job.time_limit_seconds, PublicRecord.decode(job.admin_comment),
                       job.restart_count, job.placement)

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
    """Poll until the first node's record for this run appears (a requeued job still carries
    its previous run's record); raise PeerTimeout after ``timeout`` seconds."""
    deadline = clock() + timeout
    while True:
        view = board.view(job_id)
        if view.record is not None and view.record.run == view.restart_count:
            return view
        if clock() >= deadline:
            raise PeerTimeout(f"no word from the job's first node after {timeout:.0f} s")
        sleep(poll)
        poll = min(poll * 2, 2.0)
