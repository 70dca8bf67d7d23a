"""Leases: which QPUs a job holds, kept on the node's local disk keyed by job id.

The prolog that acquires and the epilog that releases run in different processes (and
task_init in yet others), so the lease lives in a file: ``<state_dir>/jobs/<job_id>.json``,
mode 0600, written atomically, with a per-job lock so concurrent prologs/epilogs on one
node serialise. Once released it moves to ``<state_dir>/done/`` (kept a week for admins):
``jobs/`` holds live leases only, which is what the C shim checks with a bare stat(2) to
decide whether a step needs Python, so an old record of a reused job id never counts.
Each node of a job has its own file; only the node that acquired (``owner``) releases.
Nothing here touches Slurm or a vendor.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from slurm_qpu.shim_contract import LEASE_DIR, LEASE_SUFFIX

FORMAT_VERSION = 1
# How a lease file of format N becomes format N + 1, for every N below FORMAT_VERSION: a
# node upgraded while its jobs hold QPUs reads the files the old version wrote, and its
# epilog releases them. (Format 1 is the first; a change of format adds an entry here.)
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class LeaseFileError(Exception):
    """A lease record that cannot be read back; the message names the file."""


class LeaseFormatError(ValueError):
    """A lease file written by a newer slurm-qpu than this one (a ValueError, so whatever
    skips an unreadable file skips it too; ``load`` names it first)."""


class LeaseState(StrEnum):
    ACQUIRED = "acquired"
    FAILED = "failed"  # acquisition failed: the job must fail, nothing to release
    RELEASED = "released"


@dataclass
class LeasedResource:
    name: str
    type: str
    token: str
    acquired_at: float
    selected_by: str | None = None  # the --qpu=any: selection that picked this QPU


@dataclass
class Lease:
    job_id: int
    names: list[str]
    state: LeaseState
    node: str
    owner_node: str
    resources: list[LeasedResource] = field(default_factory=list)
    # environment for every task: forced values, and defaults a user's own export may override
    env: dict[str, str] = field(default_factory=dict)
    env_defaults: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    uid: int | None = None
    user: str | None = None
    created_at: float = field(default_factory=time.time)
    released_at: float | None = None
    release_errors: list[str] = field(default_factory=list)
    version: int = FORMAT_VERSION

    @property
    def owner(self) -> bool:
        """True on the node that acquired and therefore releases."""
        return self.node == self.owner_node

    def to_json(self) -> str:
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data: dict[str, Any] = json.loads(text)
        version = int(data.get("version", 1))
        if version > FORMAT_VERSION:
            raise LeaseFormatError(
                f"format {version} is newer than this slurm-qpu reads ({FORMAT_VERSION}): "
                "a newer slurm-qpu wrote it; install that version on this node again")
        while version < FORMAT_VERSION:
            data = MIGRATIONS[version](data)
            version += 1
        data["version"] = version
        data["state"] = LeaseState(data["state"])
        data["resources"] = [LeasedResource(**r) for r in data.get("resources", [])]
        return cls(**data)


class LeaseStore:
    """Lease files of one node."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs = self.root / LEASE_DIR  # the shim stats files here (shim_contract)
        self.done = self.root / "done"

    def _ensure(self) -> None:
        self.jobs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.done.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, job_id: int) -> Path:
        """Where a live (acquired or failed) lease is."""
        return self.jobs / f"{int(job_id)}{LEASE_SUFFIX}"

    def done_path(self, job_id: int) -> Path:
        """Where a released lease is kept."""
        return self.done / f"{int(job_id)}{LEASE_SUFFIX}"

    @contextlib.contextmanager
    def lock(self, job_id: int) -> Iterator[None]:
        """Exclusive per-job lock across processes on this node."""
        self._ensure()
        fd = os.open(self.jobs / f"{int(job_id)}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def claim(self, job_id: int, make: Callable[[], Lease]) -> tuple[Lease, bool]:
        """The job's live lease on this node, made by ``make`` (and saved) unless another
        prolog of the job made it already (prologs run several times per job and node):
        the lease, and whether this call made it."""
        with self.lock(job_id):
            existing = self.load(job_id)
            if existing is not None and existing.state is not LeaseState.RELEASED:
                return existing, False
            lease = make()
            self.save(lease)
            return lease, True

    def load(self, job_id: int) -> Lease | None:
        for path in (self.path(job_id), self.done_path(job_id)):
            try:
                return Lease.from_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except LeaseFormatError as exc:
                raise LeaseFileError(f"lease file {path}: {exc}") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LeaseFileError(f"lease file {path} is unreadable or corrupt "
                                     f"({type(exc).__name__}: {exc})") from exc
        return None

    def save(self, lease: Lease) -> None:
        self._ensure()
        fd, tmp = tempfile.mkstemp(prefix=f".{lease.job_id}.", dir=self.jobs)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(lease.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            if lease.state is LeaseState.RELEASED:
                os.replace(tmp, self.done_path(lease.job_id))
                self.path(lease.job_id).unlink(missing_ok=True)
            else:
                os.replace(tmp, self.path(lease.job_id))
                self.done_path(lease.job_id).unlink(missing_ok=True)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def all(self) -> list[Lease]:
        leases = []
        for path in sorted([*self.jobs.glob("*.json"), *self.done.glob("*.json")]):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                leases.append(Lease.from_json(path.read_text(encoding="utf-8")))
        return leases

    def prune(self, older_than_seconds: float, now: float | None = None) -> int:
        """Delete released/failed lease files older than the given age; return how many."""
        now = time.time() if now is None else now
        removed = 0
        for lease in self.all():
            done = lease.state is not LeaseState.ACQUIRED
            if done and now - (lease.released_at or lease.created_at) > older_than_seconds:
                self.path(lease.job_id).unlink(missing_ok=True)
                self.done_path(lease.job_id).unlink(missing_ok=True)
                (self.jobs / f"{lease.job_id}.lock").unlink(missing_ok=True)
                removed += 1
        return removed
