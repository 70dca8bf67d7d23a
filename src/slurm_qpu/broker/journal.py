"""The broker's durable state: a versioned schema in SQLite (WAL mode, one file: the
default) or in MariaDB/MySQL (broker/database.py says where and how).

A lease is written *before* the broker asks a vendor for anything (state ``acquiring``)
and every QPU the vendor grants is recorded the moment it is granted, so a broker killed
half-way through still knows what to release when it starts again. A job that runs again
(requeue) gets a new generation of its lease; the job token names the generation.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from slurm_qpu.broker.database import DUPLICATE_COLUMN, DatabaseError, is_url, open_database
from slurm_qpu.usage import QpuUsage

log = logging.getLogger("slurm_qpu.broker")

SCHEMA_VERSION = 3
_MARIADB_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
# The tables, per database; the same columns in each. (`key` quoted: MariaDB reserves it.)
SCHEMA: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS meta (`key` TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS leases (
            job_id INTEGER NOT NULL, gen INTEGER NOT NULL, state TEXT NOT NULL,
            user TEXT, uid INTEGER, names TEXT NOT NULL, overrides TEXT NOT NULL DEFAULT '{}',
            error TEXT, salt TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,
            released_at REAL, release_errors TEXT NOT NULL DEFAULT '[]',
            request TEXT, selected TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (job_id, gen))""",
        "CREATE INDEX IF NOT EXISTS leases_state ON leases (state)",
        """CREATE TABLE IF NOT EXISTS held (
            job_id INTEGER NOT NULL, gen INTEGER NOT NULL, name TEXT NOT NULL,
            type TEXT NOT NULL, token TEXT NOT NULL, acquired_at REAL NOT NULL,
            released_at REAL, error TEXT,
            PRIMARY KEY (job_id, gen, name))""",
        """CREATE TABLE IF NOT EXISTS vendor_jobs (
            job_id INTEGER NOT NULL, gen INTEGER NOT NULL, name TEXT NOT NULL,
            vendor_job_id TEXT NOT NULL, created_at REAL NOT NULL,
            shots INTEGER, qpu_seconds REAL, counted INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (name, vendor_job_id))""",
        "CREATE INDEX IF NOT EXISTS vendor_jobs_job ON vendor_jobs (job_id, gen)",
    ),
    # InnoDB; names and ids as bounded VARCHARs (keys), compared byte for byte as SQLite
    # does (utf8mb4_bin: a vendor job id differing in case is another job); seq orders a
    # lease's held QPUs as SQLite's rowid does; no TEXT defaults (MySQL refuses them:
    # every INSERT names every column)
    "mariadb": (
        "CREATE TABLE IF NOT EXISTS meta (`key` VARCHAR(64) NOT NULL PRIMARY KEY, "
        f"value TEXT NOT NULL) {_MARIADB_TABLE}",
        f"""CREATE TABLE IF NOT EXISTS leases (
            job_id BIGINT NOT NULL, gen INT NOT NULL, state VARCHAR(16) NOT NULL,
            user VARCHAR(255), uid BIGINT, names TEXT NOT NULL,
            overrides TEXT NOT NULL, error TEXT, salt VARCHAR(64) NOT NULL,
            created_at DOUBLE NOT NULL, expires_at DOUBLE, released_at DOUBLE,
            release_errors TEXT NOT NULL, request TEXT, selected TEXT NOT NULL,
            PRIMARY KEY (job_id, gen), KEY leases_state (state)) {_MARIADB_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS held (
            job_id BIGINT NOT NULL, gen INT NOT NULL, name VARCHAR(255) NOT NULL,
            type VARCHAR(64) NOT NULL, token TEXT NOT NULL, acquired_at DOUBLE NOT NULL,
            released_at DOUBLE, error TEXT, seq BIGINT NOT NULL AUTO_INCREMENT,
            PRIMARY KEY (job_id, gen, name), UNIQUE KEY held_seq (seq)) {_MARIADB_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS vendor_jobs (
            job_id BIGINT NOT NULL, gen INT NOT NULL, name VARCHAR(255) NOT NULL,
            vendor_job_id VARCHAR(255) NOT NULL, created_at DOUBLE NOT NULL,
            shots BIGINT, qpu_seconds DOUBLE, counted INT NOT NULL DEFAULT 1,
            PRIMARY KEY (name, vendor_job_id), KEY vendor_jobs_job (job_id, gen))
            {_MARIADB_TABLE}""",
    ),
}
# Each step takes a journal of the version before it to the next, in each database's SQL;
# a broker upgraded while jobs hold leases opens the old journal, migrates it and carries
# on. SQLite migrates in one transaction. MariaDB cannot (its ALTER TABLE commits), so its
# brokers migrate one at a time (a named lock), each step recorded when done, and a column
# a broker stopped half-way already added is taken as added; a TEXT column gets its value
# by UPDATE, as MySQL allows TEXT no default.
MIGRATIONS: dict[int, dict[str, tuple[str, ...]]] = {
    2: {  # usage records (issue 7)
        "sqlite": ("ALTER TABLE vendor_jobs ADD COLUMN shots INTEGER",
                   "ALTER TABLE vendor_jobs ADD COLUMN qpu_seconds REAL",
                   "ALTER TABLE vendor_jobs ADD COLUMN counted INTEGER NOT NULL DEFAULT 1"),
        "mariadb": ("ALTER TABLE vendor_jobs ADD COLUMN shots BIGINT",
                    "ALTER TABLE vendor_jobs ADD COLUMN qpu_seconds DOUBLE",
                    "ALTER TABLE vendor_jobs ADD COLUMN counted INT NOT NULL DEFAULT 1"),
    },
    3: {  # --qpu=any: selections (issue 7)
        "sqlite": ("ALTER TABLE leases ADD COLUMN request TEXT",
                   "ALTER TABLE leases ADD COLUMN selected TEXT NOT NULL DEFAULT '{}'"),
        "mariadb": ("ALTER TABLE leases ADD COLUMN request TEXT",
                    "ALTER TABLE leases ADD COLUMN selected TEXT",
                    "UPDATE leases SET selected='{}' WHERE selected IS NULL",
                    "ALTER TABLE leases MODIFY selected TEXT NOT NULL"),
    },
}


class JournalError(Exception):
    """The journal cannot be opened, reached or written, or is from a newer slurm-qpu."""


class State(StrEnum):
    ACQUIRING = "acquiring"  # asked the vendors; a crash here leaves ``held`` rows to undo
    ACQUIRED = "acquired"
    FAILED = "failed"  # acquisition failed (nothing held); the job fails with ``error``
    RELEASED = "released"  # closed: released, or failed and acknowledged by the epilog

    @property
    def active(self) -> bool:
        return self in (State.ACQUIRING, State.ACQUIRED)


@dataclass
class Held:
    name: str
    type: str
    token: str
    acquired_at: float
    released_at: float | None = None
    error: str | None = None


@dataclass
class LeaseRecord:
    job_id: int
    gen: int
    state: State
    user: str | None
    uid: int | None
    names: list[str]
    overrides: dict[str, dict[str, str]]
    salt: str
    created_at: float
    expires_at: float | None
    error: str | None = None
    released_at: float | None = None
    release_errors: list[str] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    request: str | None = None  # the job's --qpu value as given
    selected: dict[str, str] = field(default_factory=dict)  # QPU -> the selection that picked it

    def holds(self, name: str) -> Held | None:
        return next((h for h in self.held if h.name == name), None)


def _private(path: str) -> None:
    """The journal holds the key every job token derives from: readable by the broker's
    user only, whatever the umask or directory (SQLite gives its -wal and -shm files the
    database file's mode)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


class Journal:
    """The leases, in one SQLite connection shared by the broker's threads.

    ``synchronous="FULL"`` (the broker's default): every transaction is on disk before the
    call that made it returns, so a lease the broker granted survives a crash or a power
    loss. SQLite's own FULL mode fsyncs the WAL inside every COMMIT, under the journal's
    lock: every other request waited for the disk, one fsync after the other. Here SQLite
    commits without it (its NORMAL mode, which still syncs at checkpoints) and the
    committing thread fsyncs the WAL itself after releasing the lock; one fsync covers
    every transaction committed before it, so concurrent requests share them (group
    commit). A transaction made with ``durable=False`` (``begin``) must be followed by a
    durable one or ``sync()`` before anything is answered or any vendor is asked."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        """``path``: a SQLite file, or a mysql:// URL (broker/database.py)."""
        self.path = str(path)
        self._thread = threading.local()  # whether this thread has a transaction open
        self._sync_lock = threading.Lock()  # one fsync at a time; the others wait for it
        self._committed = 0  # transactions committed (SQLite's group commit reads it)
        self._synced = 0  # how many of them an fsync has covered
        self._wal: int | None = None  # the WAL's file descriptor, for the group fsync
        self._group = False
        self._write_error: str | None = None  # the last fsync's failure, until one succeeds
        self._identity: tuple[int, int] | None = None  # the file opened (device, inode)
        try:
            if not is_url(self.path):
                _private(self.path)
            self._db = open_database(self.path)
        except DatabaseError as exc:
            raise JournalError(f"cannot open the broker journal: {exc}") from None
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the broker journal {self.path}: {exc}") from None
        self.path = self._db.where  # a URL without its secrets
        self.errors: tuple[type[Exception], ...] = (*self._db.errors, DatabaseError)
        try:
            if self._db.kind == "sqlite":
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                # group commit needs the WAL (a file of its own to fsync); without one (an
                # in-memory journal, a file system without shared memory) SQLite syncs
                self._group = synchronous.upper() == "FULL" and str(mode).lower() == "wal"
                self._db.execute(
                    f"PRAGMA synchronous={'NORMAL' if self._group else synchronous}")
            # (MariaDB: every COMMIT is durable with InnoDB's defaults; nothing to group)
            self._db.script(SCHEMA[self._db.kind])
            if self._db.kind == "sqlite" and self.path != ":memory:":
                opened = os.stat(self.path)
                self._identity = (opened.st_dev, opened.st_ino)
        except (*self.errors, OSError) as exc:  # type: ignore[misc]
            raise JournalError(f"cannot open the broker journal {self.path}: {exc}") from None
        version = self._meta("schema_version")
        if version is None:
            self._set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise JournalError(f"the broker journal {self.path} has schema version {version}, "
                               f"newer than this slurm-qpu understands ({SCHEMA_VERSION}); "
                               "upgrade slurm-qpu or move the file away")
        elif int(version) < SCHEMA_VERSION:
            self._migrate(int(version))

    @property
    def _lock(self) -> AbstractContextManager[Any]:
        """Held around every use of the database: SQLite's one connection to this thread
        alone, or a MariaDB connection of this thread's own (broker/database.py)."""
        return self._db.exclusive()

    @property
    def _open(self) -> bool:
        """This thread has a transaction() open."""
        return bool(getattr(self._thread, "open", False))

    @_open.setter
    def _open(self, value: bool) -> None:
        self._thread.open = value

    def _migrate(self, version: int) -> None:
        try:
            if self._db.kind == "sqlite":
                with self._tx() as db:
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in MIGRATIONS[step]["sqlite"]:
                            db.execute(statement)
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                               (str(SCHEMA_VERSION),))
                log.info("migrated the journal %s from schema version %d to %d", self.path,
                         version, SCHEMA_VERSION)
                return
            with self.named_lock("schema", pooled=False), self._lock:
                # another broker may have migrated it while this one waited
                version = int(self._meta("schema_version") or SCHEMA_VERSION)
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]["mariadb"]:
                        try:
                            self._db.execute(statement)
                        except self._db.errors as exc:
                            if not (exc.args and exc.args[0] == DUPLICATE_COLUMN):
                                raise
                    self._set_meta("schema_version", str(step))
                    log.info("migrated the journal %s from schema version %d to %d",
                             self.path, step - 1, step)
        except self.errors as exc:
            raise JournalError(f"cannot migrate the broker journal {self.path} from schema "
                               f"version {version} to {SCHEMA_VERSION}: {exc}") from None

    def named_lock(self, name: str, timeout: float = 120.0, pooled: bool = True) -> Any:
        """A lock every broker on this journal respects (broker/database.py; ``pooled``
        False for a lock this process takes one thread at a time); with SQLite, one
        broker per file, it costs nothing."""
        return self._db.named_lock(name, timeout, pooled)

    def leads(self, role: str) -> bool:
        """Whether this broker runs ``role`` (the reaper, the availability watcher) now:
        one broker at a time per journal, another taking over when it dies."""
        return self._db.leads(role)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._wal is not None:
                os.close(self._wal)
                self._wal = None

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One transaction (and one fsync) for every write this thread makes inside it:
        all of them or none. Never around a vendor call: it holds the journal."""
        with self._tx(durable):
            yield

    @contextmanager
    def _tx(self, durable: bool = True, *, single: bool = False
            ) -> Iterator[Any]:
        """A write transaction. ``single``: the caller runs one statement, which SQLite
        makes a transaction of its own (no BEGIN and COMMIT to run: fewer round trips
        through the journal's lock). Inside ``transaction()`` the writes join it."""
        with self._lock:
            if self._open:  # this thread's transaction() commits and syncs
                yield self._db
                return
            if single:
                yield self._db
            else:
                self._db.begin()
                self._open = True
                try:
                    yield self._db
                except BaseException:
                    self._db.rollback()
                    raise
                finally:
                    self._open = False
                self._db.commit()
            self._committed += 1
            seq = self._committed
        if durable:
            self._sync(seq)  # outside the lock: the others read and commit meanwhile

    def sync_all(self) -> None:
        """fsync what is committed, whether or not an fsync already covered it."""
        if self._group:
            with self._sync_lock:
                target = self._committed
                try:
                    os.fsync(self._wal_fd())
                except OSError as exc:
                    self._write_error = (f"cannot write the broker journal {self.path} to "
                                         f"disk: {exc}")
                    raise JournalError(self._write_error) from None
                self._write_error = None
                self._synced = max(self._synced, target)

    def sync(self) -> None:
        """Put every transaction committed so far on disk (after ``durable=False``)."""
        self._sync(self._committed)

    def _sync(self, seq: int) -> None:
        """Return once transaction number ``seq`` is on disk."""
        if not self._group:
            return  # SQLite synced it in COMMIT (or was told not to)
        with self._sync_lock:
            if self._synced >= seq:
                return  # an fsync that started after our commit covered it
            target = self._committed  # everything committed by now goes with this fsync
            try:
                os.fsync(self._wal_fd())
            except OSError as exc:
                self._write_error = f"cannot write the broker journal {self.path} to disk: {exc}"
                raise JournalError(self._write_error) from None
            self._write_error = None
            self._synced = target

    def check(self) -> None:
        """Raise JournalError, saying why, unless the journal answers a read, its last write
        reached the disk and its file is still the one the broker opened (a journal removed
        or replaced under a running broker takes none of its later writes). The broker's
        health check asks this, so that a load balancer stops sending it nodes and jobs."""
        if self._write_error:  # try again: once out of a load balancer, nothing else writes
            self.sync_all()
        if self._identity is not None:
            try:
                now = os.stat(self.path)
            except OSError as exc:
                raise JournalError(f"the broker journal {self.path} is gone ({exc.strerror}); "
                                   "restore it from a backup and restart the broker") from None
            if (now.st_dev, now.st_ino) != self._identity:
                raise JournalError(f"the broker journal {self.path} was replaced since the "
                                   "broker opened it; restart the broker to use the new file")
        try:
            with self._lock:
                self._db.execute("SELECT value FROM meta WHERE `key`='schema_version'"
                                 ).fetchone()
        except self.errors as exc:
            raise JournalError(f"cannot read the broker journal {self.path}: {exc}") from None

    def _wal_fd(self) -> int:
        if self._wal is None:
            # the connection keeps its WAL file as long as it is open (SQLite deletes it
            # when the last connection closes, and resets it in place after checkpoints)
            self._wal = os.open(self.path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
            # a WAL SQLite has just created needs its directory entry on disk too (in
            # FULL mode SQLite syncs the directory once, for the same reason)
            directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return self._wal

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE `key`=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._tx(single=True) as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def signing_key(self) -> bytes:
        """The key job tokens are derived from; made once, kept across restarts."""
        with self._lock:
            value = self._meta("signing_key")
            if value is None:
                # two brokers starting on a new database at once: the first key written
                # is the key of both
                with self._tx(single=True) as db:
                    db.execute("INSERT OR IGNORE INTO meta VALUES ('signing_key', ?)",
                               (secrets.token_hex(32),))
                value = self._meta("signing_key")
                assert value is not None
        return bytes.fromhex(value)

    # ------------------------------------------------------------------ leases

    def _record(self, row: sqlite3.Row | tuple[object, ...]) -> LeaseRecord:
        (job_id, gen, state, user, uid, names, overrides, error, salt, created, expires,
         released, release_errors, request, selected) = row
        held = [Held(*h) for h in self._db.execute(
            "SELECT name, type, token, acquired_at, released_at, error FROM held "
            "WHERE job_id=? AND gen=? ORDER BY rowid", (job_id, gen))]
        return LeaseRecord(int(job_id), int(gen), State(state), user, uid,  # type: ignore[arg-type]
                           json.loads(names), json.loads(overrides), salt,  # type: ignore[arg-type]
                           created, expires, error, released,  # type: ignore[arg-type]
                           json.loads(release_errors), held,  # type: ignore[arg-type]
                           request, json.loads(selected))  # type: ignore[arg-type]

    _COLUMNS = ("job_id, gen, state, user, uid, names, overrides, error, salt, created_at, "
                "expires_at, released_at, release_errors, request, selected")

    def current(self, job_id: int) -> LeaseRecord | None:
        """The job's latest lease (any state)."""
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM leases WHERE job_id=? "
                                   "ORDER BY gen DESC LIMIT 1", (job_id,)).fetchone()
            return self._record(row) if row else None

    def get(self, job_id: int, gen: int) -> LeaseRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM leases WHERE job_id=? "
                                   "AND gen=?", (job_id, gen)).fetchone()
            return self._record(row) if row else None

    def active(self) -> list[LeaseRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLUMNS} FROM leases WHERE state IN "
                                    "('acquiring', 'acquired') ORDER BY job_id").fetchall()
            return [self._record(r) for r in rows]

    def recent(self, limit: int = 200) -> list[LeaseRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLUMNS} FROM leases ORDER BY created_at "
                                    "DESC LIMIT ?", (limit,)).fetchall()
            return [self._record(r) for r in rows]

    def begin(self, job_id: int, *, user: str | None, uid: int | None, names: list[str],
              overrides: dict[str, dict[str, str]], expires_at: float | None,
              now: float | None = None, request: str | None = None,
              selected: dict[str, str] | None = None, durable: bool = True,
              gen: int | None = None) -> LeaseRecord:
        """A new lease (generation ``gen``: the caller read the job's latest under the
        job's lock and saves the journal a look; by default the next after the latest)."""
        now = time.time() if now is None else now
        salt = secrets.token_hex(16)
        with self._tx(durable, single=gen is not None) as db:
            if gen is None:
                row = db.execute("SELECT MAX(gen) FROM leases WHERE job_id=?",
                                 (job_id,)).fetchone()
                gen = (row[0] or 0) + 1
            db.execute(f"INSERT INTO leases ({self._COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, '[]', ?, ?)",
                       (job_id, gen, State.ACQUIRING.value, user, uid, json.dumps(names),
                        json.dumps(overrides), salt, now, expires_at, request,
                        json.dumps(selected or {})))
        return LeaseRecord(job_id, gen, State.ACQUIRING, user, uid, list(names), overrides,
                           salt, now, expires_at, request=request, selected=dict(selected or {}))

    def add_held(self, lease: LeaseRecord, held: Held) -> None:
        with self._tx(single=True) as db:
            db.execute("INSERT OR REPLACE INTO held (job_id, gen, name, type, token, "
                       "acquired_at, released_at, error) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                       (lease.job_id, lease.gen, held.name, held.type, held.token,
                        held.acquired_at))
        lease.held.append(held)

    def mark_held_released(self, lease: LeaseRecord, name: str, error: str | None,
                           now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx(single=True) as db:
            db.execute("UPDATE held SET released_at=?, error=? WHERE job_id=? AND gen=? "
                       "AND name=?", (None if error else now, error, lease.job_id, lease.gen,
                                      name))
        held = lease.holds(name)
        if held:
            held.released_at, held.error = (None if error else now), error

    def set_names(self, lease: LeaseRecord, names: list[str], selected: dict[str, str],
                  overrides: dict[str, dict[str, str]]) -> None:
        """The QPUs the lease holds, what selections picked and the users' overrides,
        after another component of a heterogeneous job added its own."""
        with self._tx(single=True) as db:
            db.execute("UPDATE leases SET names=?, selected=?, overrides=? WHERE job_id=? "
                       "AND gen=?", (json.dumps(names), json.dumps(selected),
                                     json.dumps(overrides), lease.job_id, lease.gen))
        lease.names, lease.selected, lease.overrides = list(names), dict(selected), \
            dict(overrides)

    def set_state(self, lease: LeaseRecord, state: State, *, error: str | None = None,
                  release_errors: list[str] | None = None, now: float | None = None,
                  expect: State | None = None) -> bool:
        """Move the lease to ``state``; with ``expect``, only from that state (another
        broker on the journal may have moved it meanwhile): whether it moved."""
        now = time.time() if now is None else now
        released_at = now if state is State.RELEASED else None
        with self._tx(single=True) as db:
            moved = db.execute(
                "UPDATE leases SET state=?, error=COALESCE(?, error), released_at=?, "
                "release_errors=? WHERE job_id=? AND gen=?"
                + (" AND state=?" if expect is not None else ""),
                (state.value, error, released_at,
                 json.dumps(lease.release_errors if release_errors is None
                            else release_errors), lease.job_id, lease.gen,
                 *((expect.value,) if expect is not None else ()))).rowcount
        if expect is not None and moved != 1:
            return False
        lease.state, lease.released_at = state, released_at
        if error:
            lease.error = error
        if release_errors is not None:
            lease.release_errors = release_errors
        return True

    # ------------------------------------------------------------------ vendor jobs

    def add_vendor_job(self, lease: LeaseRecord, name: str, vendor_job_id: str,
                       now: float | None = None, shots: int | None = None,
                       counted: bool = True) -> None:
        """Record a vendor job the lease created (``counted=False``: a container such as a
        Pasqal batch, owned by the job but not a job of its own in the usage record)."""
        with self._tx(single=True) as db:
            db.execute("INSERT OR IGNORE INTO vendor_jobs (job_id, gen, name, vendor_job_id, "
                       "created_at, shots, counted) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (lease.job_id, lease.gen, name, vendor_job_id,
                        time.time() if now is None else now, shots, int(counted)))

    def set_vendor_job_usage(self, lease: LeaseRecord, name: str, vendor_job_id: str, *,
                             qpu_seconds: float) -> None:
        """The QPU time the vendor reports for one of the lease's jobs (seen as the job's
        status passes through the proxy; the last report wins)."""
        with self._tx(single=True) as db:
            db.execute("UPDATE vendor_jobs SET qpu_seconds=? WHERE job_id=? AND gen=? AND "
                       "name=? AND vendor_job_id=?",
                       (qpu_seconds, lease.job_id, lease.gen, name, vendor_job_id))

    def usage(self, lease: LeaseRecord) -> list[QpuUsage]:
        """Per QPU the lease held: session start and end, vendor jobs, shots, QPU time
        (shots and QPU time None when no vendor job reported them)."""
        out = []
        with self._lock:
            for held in lease.held:
                count, shots, seconds = self._db.execute(
                    "SELECT COUNT(*), SUM(shots), SUM(qpu_seconds) FROM vendor_jobs WHERE "
                    "job_id=? AND gen=? AND name=? AND counted=1",
                    (lease.job_id, lease.gen, held.name)).fetchone()
                end = held.released_at or (lease.released_at if lease.state is State.RELEASED
                                           else None)
                out.append(QpuUsage(held.name, held.type, held.acquired_at, end, int(count),
                                    None if shots is None else int(shots),
                                    None if seconds is None else float(seconds),
                                    lease.selected.get(held.name)))
        return out

    def owns_vendor_job(self, lease: LeaseRecord, name: str, vendor_job_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM vendor_jobs WHERE job_id=? AND gen=? AND name=? AND "
                "vendor_job_id=?", (lease.job_id, lease.gen, name, vendor_job_id)).fetchone()
        return row is not None

    def vendor_jobs(self, lease: LeaseRecord, name: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT vendor_job_id FROM vendor_jobs WHERE job_id=? AND gen=? AND name=? "
                "ORDER BY created_at", (lease.job_id, lease.gen, name))]
