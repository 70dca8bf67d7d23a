"""The broker's journal: what survives a restart, generations, schema versions, the same
in SQLite (WAL, fsyncs) and in MariaDB (a server of the session's own)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from slurm_qpu.broker.journal import SCHEMA_VERSION, Held, Journal, JournalError, State


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


def test_the_journal_runs_in_wal_mode(path: Path) -> None:
    Journal(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_leases_held_qpus_and_vendor_jobs_survive_close_and_reopen(where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user="alice", uid=1000, names=["sim_a", "sim_b"],
                          overrides={"sim_a": {"QRMI_X": "1"}}, expires_at=5000.0, now=1000.0)
    journal.add_held(lease, Held("sim_a", "local-simulator", "tok-a", 1001.0))
    journal.add_held(lease, Held("sim_b", "local-simulator", "tok-b", 1002.0))
    journal.mark_held_released(lease, "sim_b", "vendor said no", now=1003.0)
    journal.set_state(lease, State.ACQUIRED)
    journal.add_vendor_job(lease, "sim_a", "vjob-1")
    journal.close()

    again = Journal(where)
    got = again.current(5)
    assert got is not None
    assert (got.job_id, got.gen, got.state, got.user, got.uid) == (5, 1, State.ACQUIRED,
                                                                   "alice", 1000)
    assert got.names == ["sim_a", "sim_b"]
    assert got.overrides == {"sim_a": {"QRMI_X": "1"}}
    assert (got.created_at, got.expires_at, got.salt) == (1000.0, 5000.0, lease.salt)
    assert [(h.name, h.token, h.acquired_at, h.released_at, h.error) for h in got.held] == [
        ("sim_a", "tok-a", 1001.0, None, None), ("sim_b", "tok-b", 1002.0, None,
                                                 "vendor said no")]
    assert again.active() == [got]
    assert again.owns_vendor_job(got, "sim_a", "vjob-1")
    assert again.vendor_jobs(got, "sim_a") == ["vjob-1"]
    again.close()


def test_a_vendor_job_belongs_to_one_qpu_of_one_generation(where: str) -> None:
    journal = Journal(where)
    first = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    journal.add_vendor_job(first, "a", "vjob-1")
    journal.set_state(first, State.RELEASED)
    second = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    assert journal.owns_vendor_job(first, "a", "vjob-1")
    assert not journal.owns_vendor_job(first, "b", "vjob-1")
    assert not journal.owns_vendor_job(second, "a", "vjob-1")


def test_each_lease_of_a_job_is_a_new_generation(where: str) -> None:
    journal = Journal(where)
    first = journal.begin(5, user="alice", uid=1000, names=["a"], overrides={},
                          expires_at=None)
    journal.set_state(first, State.RELEASED, now=2000.0)
    second = journal.begin(5, user="alice", uid=1000, names=["a"], overrides={},
                           expires_at=None)
    other = journal.begin(6, user="bob", uid=1001, names=["a"], overrides={},
                          expires_at=None)
    assert (first.gen, second.gen, other.gen) == (1, 2, 1)
    assert first.salt != second.salt
    current = journal.current(5)
    assert current is not None and current.gen == 2 and current.state is State.ACQUIRING
    old = journal.get(5, 1)
    assert old is not None and old.state is State.RELEASED and old.released_at == 2000.0
    assert journal.get(5, 3) is None and journal.current(7) is None
    assert [(lease.job_id, lease.gen) for lease in journal.active()] == [(5, 2), (6, 1)]


def test_state_changes_keep_the_error_and_the_release_errors(where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    journal.set_state(lease, State.FAILED, error="cannot acquire QPU a: no")
    journal.set_state(lease, State.RELEASED, release_errors=["cannot release QPU a: no"])
    journal.close()
    got = Journal(where).current(5)
    assert got is not None and got.state is State.RELEASED
    assert got.error == "cannot acquire QPU a: no"
    assert got.release_errors == ["cannot release QPU a: no"]
    assert got.released_at is not None


def test_a_journal_from_a_newer_slurm_qpu_is_refused_with_the_reason(path: Path) -> None:
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                   (str(SCHEMA_VERSION + 1),))
    with pytest.raises(JournalError) as raised:
        Journal(path)
    assert str(raised.value) == (
        f"the broker journal {path} has schema version {SCHEMA_VERSION + 1}, newer than "
        f"this slurm-qpu understands ({SCHEMA_VERSION}); upgrade slurm-qpu or move the file "
        "away")


def test_a_file_that_is_not_a_journal_is_refused_with_the_reason(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, it is a text file" * 100)
    with pytest.raises(JournalError) as raised:
        Journal(path)
    assert str(raised.value) == (f"cannot open the broker journal {path}: file is not a "
                                 "database")


def test_the_signing_key_is_made_once_and_kept_across_reopen(path: Path) -> None:
    journal = Journal(path)
    key = journal.signing_key()
    assert len(key) == 32 and journal.signing_key() == key
    journal.close()
    assert Journal(path).signing_key() == key
    assert Journal(path.with_name("other.sqlite")).signing_key() != key


def test_the_journal_is_readable_by_the_broker_only(path: Path) -> None:
    # it holds the key every job token derives from
    old = os.umask(0o022)
    try:
        journal = Journal(path)
        journal.signing_key()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    journal.close()


def test_a_journal_readable_by_others_is_made_private_on_open(path: Path) -> None:
    Journal(path).close()
    path.chmod(0o644)
    Journal(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_what_the_journal_says_and_what_the_lease_says_agree_on_release_errors(
        where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    journal.set_state(lease, State.ACQUIRED, release_errors=["old"])
    journal.set_state(lease, State.RELEASED, release_errors=[])
    stored = journal.current(5)
    assert stored is not None and stored.release_errors == lease.release_errors == []


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE leases (
    job_id INTEGER NOT NULL, gen INTEGER NOT NULL, state TEXT NOT NULL,
    user TEXT, uid INTEGER, names TEXT NOT NULL, overrides TEXT NOT NULL DEFAULT '{}',
    error TEXT, salt TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,
    released_at REAL, release_errors TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job_id, gen));
CREATE TABLE held (
    job_id INTEGER NOT NULL, gen INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    token TEXT NOT NULL, acquired_at REAL NOT NULL, released_at REAL, error TEXT,
    PRIMARY KEY (job_id, gen, name));
CREATE TABLE vendor_jobs (
    job_id INTEGER NOT NULL, gen INTEGER NOT NULL, name TEXT NOT NULL,
    vendor_job_id TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (name, vendor_job_id));
INSERT INTO meta VALUES ('schema_version', '1'), ('signing_key', 'ab');
INSERT INTO leases VALUES (9, 1, 'acquired', 'alice', 1000, '["sim_a"]', '{}', NULL, 's',
                           1000.0, 5000.0, NULL, '[]');
INSERT INTO held VALUES (9, 1, 'sim_a', 'local-simulator', 'tok-a', 1001.0, NULL, NULL);
INSERT INTO vendor_jobs VALUES (9, 1, 'sim_a', 'vj-1', 1002.0);
"""


def test_a_version_1_journal_with_a_lease_held_is_migrated_and_keeps_the_lease(
        path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    journal = Journal(path)
    assert journal._meta("schema_version") == str(SCHEMA_VERSION)
    [lease] = journal.active()
    assert (lease.job_id, lease.state, lease.holds("sim_a").token) == (9, State.ACQUIRED,
                                                                      "tok-a")
    assert journal.owns_vendor_job(lease, "sim_a", "vj-1")
    assert (lease.request, lease.selected) == (None, {})  # schema 3: no selection then
    journal.add_vendor_job(lease, "sim_a", "vj-2", shots=100)
    journal.set_vendor_job_usage(lease, "sim_a", "vj-2", qpu_seconds=1.5)
    [usage] = journal.usage(lease)
    assert (usage.vendor_jobs, usage.shots, usage.qpu_seconds) == (2, 100, 1.5)
    journal.close()
    Journal(path).close()  # and opens again as the current version


def test_a_lease_keeps_its_request_and_what_its_selections_picked(where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user="alice", uid=1000, names=["sim_b"], overrides={},
                          expires_at=None, request="any:sim_*", selected={"sim_b": "any:sim_*"})
    journal.add_held(lease, Held("sim_b", "local-simulator", "tok-b", 1001.0))
    again = journal.current(5)
    assert again is not None
    assert (again.request, again.selected) == ("any:sim_*", {"sim_b": "any:sim_*"})
    assert [u.selected_by for u in journal.usage(again)] == ["any:sim_*"]


def test_a_journal_that_cannot_be_migrated_says_so(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA.replace("vendor_job_id TEXT NOT NULL, created_at REAL "
                                           "NOT NULL,", "vendor_job_id TEXT NOT NULL, "
                                           "created_at REAL NOT NULL, shots INTEGER,").replace(
                                           "'vj-1', 1002.0)", "'vj-1', 1002.0, NULL)"))
    with pytest.raises(JournalError) as err:
        Journal(path)
    assert str(err.value) == (f"cannot migrate the broker journal {path} from schema version "
                              f"1 to {SCHEMA_VERSION}: duplicate column name: shots")
    with sqlite3.connect(path) as db:  # nothing half-done
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == \
            ("1",)


def test_usage_counts_jobs_shots_and_qpu_time_per_qpu_and_skips_containers(where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user="alice", uid=1000, names=["sim_a", "sim_b"], overrides={},
                          expires_at=None, now=1000.0)
    journal.add_held(lease, Held("sim_a", "local-simulator", "tok-a", 1001.0))
    journal.add_held(lease, Held("sim_b", "local-simulator", "tok-b", 1002.0))
    journal.add_vendor_job(lease, "sim_a", "batch", counted=False)
    journal.add_vendor_job(lease, "sim_a", "j1", shots=10)
    journal.add_vendor_job(lease, "sim_a", "j2")
    journal.set_vendor_job_usage(lease, "sim_a", "j1", qpu_seconds=0.25)
    journal.mark_held_released(lease, "sim_a", None, now=1010.0)
    a, b = journal.usage(lease)
    assert (a.qpu, a.start, a.end, a.session_seconds, a.vendor_jobs, a.shots,
            a.qpu_seconds) == ("sim_a", 1001.0, 1010.0, 9.0, 2, 10, 0.25)
    assert (b.qpu, b.end, b.session_seconds, b.vendor_jobs, b.shots, b.qpu_seconds) == \
        ("sim_b", None, None, 0, None, None)


# ---------------------------------------------------------------------- group commit

def _count_fsyncs(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[int]:
    """Every os.fsync the journal makes, slowed by ``delay`` (a slow disk)."""
    import time

    from slurm_qpu.broker import journal as journal_module

    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(delay)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    return calls


def test_every_write_is_on_disk_before_it_returns(path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(path)  # synchronous=FULL, the broker's default
    calls = _count_fsyncs(monkeypatch)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    assert len(calls) >= 1 and journal._synced == journal._committed
    journal.set_state(lease, State.ACQUIRED)
    assert journal._synced == journal._committed
    # SQLite itself no longer syncs in COMMIT: the journal does, outside its lock
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    journal.close()


def test_concurrent_writes_share_their_fsyncs(path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    journal = Journal(path)
    leases = [journal.begin(job, user=None, uid=None, names=["a"], overrides={},
                            expires_at=None) for job in range(1, 21)]
    calls = _count_fsyncs(monkeypatch, delay=0.02)
    go = threading.Barrier(len(leases))

    def write(lease: object) -> None:
        go.wait()
        journal.set_state(lease, State.ACQUIRED)  # type: ignore[arg-type]

    threads = [threading.Thread(target=write, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert journal._synced == journal._committed  # every one of them on disk...
    assert len(calls) < len(leases)  # ...with fewer fsyncs than transactions
    assert all(j.state is State.ACQUIRED for j in journal.active())
    journal.close()


def test_a_write_made_not_durable_is_synced_by_the_next(path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(path)
    journal.signing_key()
    calls = _count_fsyncs(monkeypatch)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None,
                          durable=False)
    assert calls == [] and journal._synced < journal._committed
    assert journal.current(5) == lease  # committed: visible to every reader at once
    journal.sync()
    assert len(calls) == 1 and journal._synced == journal._committed
    journal.sync()
    assert len(calls) == 1  # nothing new to sync
    journal.close()


def test_synchronous_normal_makes_no_fsync_of_its_own(path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(path, synchronous="NORMAL")
    calls = _count_fsyncs(monkeypatch)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    journal.set_state(lease, State.ACQUIRED)
    assert calls == []
    journal.close()


def test_a_transaction_writes_all_or_nothing(where: str) -> None:
    journal = Journal(where)
    lease = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None)
    with pytest.raises(RuntimeError), journal.transaction():
        journal.add_held(lease, Held("a", "local-simulator", "tok", 1.0))
        journal.set_state(lease, State.ACQUIRED)
        raise RuntimeError("the broker fell over here")
    got = journal.current(5)
    assert got is not None and got.state is State.ACQUIRING and got.held == []
    with journal.transaction():
        journal.add_held(lease, Held("a", "local-simulator", "tok", 1.0))
        journal.set_state(lease, State.ACQUIRED)
    journal.close()
    got = Journal(where).current(5)
    assert got is not None and got.state is State.ACQUIRED and [h.token for h in got.held] \
        == ["tok"]


def test_a_lease_can_be_begun_at_the_generation_the_caller_read(where: str) -> None:
    journal = Journal(where)
    first = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None,
                          gen=1)
    journal.set_state(first, State.RELEASED)
    second = journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None,
                           gen=2)
    assert (first.gen, second.gen) == (1, 2) and journal.current(5) == second
    with pytest.raises(journal.errors):  # never two leases of one generation (the driver's)
        journal.begin(5, user=None, uid=None, names=["a"], overrides={}, expires_at=None,
                      gen=2)
    journal.close()
