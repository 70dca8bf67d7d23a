"""Lease files: round trip, permissions, atomic writes, the per-job lock, listing, pruning."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

import pytest

from slurm_qpu.lease import store as leases
from slurm_qpu.lease.store import Lease, LeasedResource, LeaseFileError, LeaseState, LeaseStore


def lease(job_id: int = 7, state: LeaseState = LeaseState.ACQUIRED, node: str = "n1",
          owner_node: str = "n1", **kw: object) -> Lease:
    return Lease(job_id, ["sim_a"], state, node, owner_node, **kw)  # type: ignore[arg-type]


def test_save_and_load_round_trip_every_field(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    original = Lease(
        42, ["sim_a", "sim_b"], LeaseState.ACQUIRED, "n2", "n1",
        [LeasedResource("sim_a", "local-simulator", "tok-a", 1.5),
         LeasedResource("sim_b", "local-simulator", "tok-b", 2.5)],
        env={"QRMI_JOB_ID": "42"}, env_defaults={"sim_a_X": "1"}, error=None, uid=1000,
        user="alice", created_at=10.0, released_at=None, release_errors=["e"])
    store.save(original)
    loaded = store.load(42)
    assert loaded == original
    assert loaded is not None and loaded.state is LeaseState.ACQUIRED
    assert isinstance(loaded.resources[0], LeasedResource)


def test_lease_file_is_keyed_by_job_id_under_jobs(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(42))
    assert store.path(42) == tmp_path / "jobs" / "42.json"
    assert store.path(42).is_file()


def test_load_of_unknown_job_is_none(tmp_path: Path) -> None:
    assert LeaseStore(tmp_path).load(1) is None


def test_lease_file_is_private_to_root(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "state")
    store.save(lease(1))
    assert stat.S_IMODE(store.path(1).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.jobs.stat().st_mode) == 0o700


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    for state in (LeaseState.ACQUIRED, LeaseState.RELEASED):
        store.save(lease(3, state))
    assert sorted(os.listdir(store.jobs)) == []
    assert sorted(os.listdir(store.done)) == ["3.json"]


def test_only_live_leases_stay_in_jobs_dir_which_the_shim_checks(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(3, LeaseState.ACQUIRED))
    store.save(lease(4, LeaseState.FAILED, error="boom"))
    assert store.path(3).is_file() and store.path(4).is_file()
    store.save(lease(3, LeaseState.RELEASED))
    assert not store.path(3).exists()
    assert store.done_path(3).is_file()
    loaded = store.load(3)
    assert loaded is not None and loaded.state is LeaseState.RELEASED
    store.save(lease(3, LeaseState.ACQUIRED))  # a requeued job acquires again
    assert store.path(3).is_file() and not store.done_path(3).exists()


def test_save_replaces_the_previous_record(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(3, LeaseState.ACQUIRED))
    store.save(lease(3, LeaseState.RELEASED, released_at=99.0))
    loaded = store.load(3)
    assert loaded is not None
    assert (loaded.state, loaded.released_at) == (LeaseState.RELEASED, 99.0)


def test_failed_save_leaves_old_record_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(3, LeaseState.ACQUIRED))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.save(lease(3, LeaseState.RELEASED))
    monkeypatch.undo()
    assert sorted(os.listdir(store.jobs)) == ["3.json"]
    loaded = store.load(3)
    assert loaded is not None and loaded.state is LeaseState.ACQUIRED


def test_state_is_stored_as_its_string_value(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(3, LeaseState.FAILED, error="boom"))
    assert '"state": "failed"' in store.path(3).read_text()


def test_owner_is_the_node_that_acquired() -> None:
    assert lease(node="n1", owner_node="n1").owner is True
    assert lease(node="n2", owner_node="n1").owner is False


def test_all_lists_every_lease_and_skips_unreadable_files(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(2))
    store.save(lease(10, LeaseState.FAILED))
    (store.jobs / "99.json").write_text("{not json")
    (store.jobs / "98.json").write_text('{"job_id": 98}')
    assert [(x.job_id, x.state) for x in store.all()] == [(10, LeaseState.FAILED),
                                                         (2, LeaseState.ACQUIRED)]


def test_all_of_a_store_never_written_is_empty(tmp_path: Path) -> None:
    assert LeaseStore(tmp_path / "nothing").all() == []


def test_prune_removes_only_old_released_and_failed_leases(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    now = 1_000_000.0
    store.save(lease(1, LeaseState.RELEASED, created_at=now - 500, released_at=now - 200))
    store.save(lease(2, LeaseState.FAILED, created_at=now - 200))
    store.save(lease(3, LeaseState.ACQUIRED, created_at=now - 10_000))  # still held: keep
    store.save(lease(4, LeaseState.RELEASED, created_at=now - 500, released_at=now - 50))
    store.save(lease(5, LeaseState.FAILED, created_at=now - 50))
    with store.lock(1):
        pass
    assert store.prune(100, now=now) == 2
    assert sorted(x.job_id for x in store.all()) == [3, 4, 5]
    assert not (store.jobs / "1.lock").exists()


def test_prune_with_nothing_old_removes_nothing(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(1, LeaseState.RELEASED, released_at=time.time()))
    assert store.prune(3600) == 0
    assert store.load(1) is not None


# ---------------------------------------------------------------- lock


def _child(body: object) -> int:
    """Run body() in a forked child; return its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = body()  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    lock_file = store.jobs / "5.lock"

    def try_lock() -> int:
        fd = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 11  # held by someone else
        return 0

    with store.lock(5):
        assert _child(try_lock) == 11
    assert _child(try_lock) == 0


def test_lock_makes_another_process_wait_until_released(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    order = tmp_path / "order"
    go_read, go_write = os.pipe()
    # Fork before taking the lock: a child forked while the parent holds it would inherit
    # the locked open file description and keep the lock alive after the parent's close.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)  # wait until the parent holds the lock
            with store.lock(5), order.open("a") as fh:
                fh.write("child\n")
            code = 0
        finally:
            os._exit(code)
    os.close(go_read)
    with store.lock(5):
        os.write(go_write, b"x")
        time.sleep(0.05)  # the child is now blocked on the lock
        with order.open("a") as fh:
            fh.write("parent\n")
    os.close(go_write)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert order.read_text() == "parent\nchild\n"


def test_locks_of_different_jobs_are_independent(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)

    def lock_other_job() -> int:
        fd = os.open(store.jobs / "6.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 11
        return 0

    with store.lock(5):
        assert _child(lock_other_job) == 0


def test_a_lease_file_of_an_older_format_is_migrated_when_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an upgraded node's epilog does with a file its previous version wrote."""
    store = LeaseStore(tmp_path)
    store.save(lease(101))
    text = store.path(101).read_text().replace('"node": "n1"', '"host": "n1"')
    store.path(101).write_text(text)  # "format 1" named the node "host"

    def v1_to_v2(data: dict[str, object]) -> dict[str, object]:
        data["node"] = data.pop("host")
        return data

    monkeypatch.setattr(leases, "FORMAT_VERSION", 2)
    monkeypatch.setattr(leases, "MIGRATIONS", {1: v1_to_v2})
    got = store.load(101)
    assert got is not None and got.node == "n1" and got.version == 2


def test_a_lease_file_of_a_newer_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    store.save(lease(101))
    path = store.path(101)
    path.write_text(path.read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(LeaseFileError) as err:
        store.load(101)
    assert str(err.value) == (
        f"lease file {path}: format 99 is newer than this slurm-qpu reads (1): a newer "
        "slurm-qpu wrote it; install that version on this node again")
    assert store.all() == []  # `slurm-qpu leases` skips it instead of failing


def test_every_older_lease_format_has_a_migration() -> None:
    assert set(leases.MIGRATIONS) == set(range(1, leases.FORMAT_VERSION))
