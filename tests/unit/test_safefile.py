"""Root's writes in places users can reach (profile=DIR, log_json=PATH) never go through
a link someone planted there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_qpu.safefile import UnsafeFile, create_new, open_append

SECRET = "root:*:19000:0:99999:7:::\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SECRET)
    return path


def append(path: Path, text: str) -> None:
    with os.fdopen(open_append(str(path)), "a") as out:
        out.write(text)


def test_open_append_creates_a_missing_file_and_appends_to_a_regular_one(
        tmp_path: Path) -> None:
    path = tmp_path / "plugin.json"
    append(path, "one\n")
    append(path, "two\n")
    assert path.read_text() == "one\ntwo\n"


def test_open_append_does_not_follow_a_symbolic_link(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "plugin.json"
    path.symlink_to(victim)
    with pytest.raises(UnsafeFile) as err:
        append(path, "owned\n")
    assert (err.value.filename, err.value.strerror) == \
        (str(path), "it is a symbolic link, which is not followed")
    assert victim.read_text() == SECRET


def test_open_append_does_not_create_the_target_of_a_dangling_link(tmp_path: Path) -> None:
    target = tmp_path / "cron.d" / "evil"
    target.parent.mkdir()
    path = tmp_path / "plugin.json"
    path.symlink_to(target)
    with pytest.raises(UnsafeFile):
        append(path, "* * * * * root sh -c ...\n")
    assert not target.exists()


def test_open_append_refuses_a_hard_link(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "plugin.json"
    os.link(victim, path)
    with pytest.raises(UnsafeFile, match="it has 2 hard links"):
        append(path, "owned\n")
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("reader", [False, True])
def test_open_append_refuses_a_fifo_without_blocking(tmp_path: Path, reader: bool) -> None:
    path = tmp_path / "plugin.json"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        with pytest.raises(UnsafeFile, match="it is not a regular file"):
            append(path, "hello\n")
    finally:
        if fd is not None:
            os.close(fd)


def test_create_new_makes_a_root_only_file(tmp_path: Path) -> None:
    with os.fdopen(create_new(str(tmp_path), "job_prolog-1.prof"), "wb") as out:
        out.write(b"stats")
    written = tmp_path / "job_prolog-1.prof"
    assert written.read_bytes() == b"stats" and written.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "file"])
def test_create_new_never_writes_to_a_name_someone_made_first(
        tmp_path: Path, victim: Path, plant: str) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir(mode=0o1777)
    profiles.chmod(0o1777)
    name = profiles / "job_prolog-1.prof"
    if plant == "symlink":
        name.symlink_to(victim)
    elif plant == "hardlink":
        os.link(victim, name)
    else:
        name.write_text("a user's file\n")
    with pytest.raises(UnsafeFile, match="it exists already"):
        create_new(str(profiles), name.name)
    assert victim.read_text() == SECRET


def test_create_new_refuses_a_directory_that_is_a_symbolic_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "cron.d"
    elsewhere.mkdir()
    (tmp_path / "profiles").symlink_to(elsewhere)
    with pytest.raises(UnsafeFile, match="it is a symbolic link"):
        create_new(str(tmp_path / "profiles"), "job_prolog-1.prof")
    assert list(elsewhere.iterdir()) == []


def test_create_new_wants_the_sticky_bit_on_a_directory_others_may_write(
        tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for mode in (0o777, 0o775):
        profiles.chmod(mode)
        with pytest.raises(UnsafeFile, match="no sticky bit"):
            create_new(str(profiles), "job_prolog-1.prof")
    for mode in (0o1777, 0o755, 0o700):
        profiles.chmod(mode)
        os.close(create_new(str(profiles), f"job_prolog-{mode}.prof"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away")
def test_create_new_refuses_another_user_s_directory(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    os.chown(profiles, 12345, 12345)
    with pytest.raises(UnsafeFile, match="belongs to uid 12345"):
        create_new(str(profiles), "job_prolog-1.prof")
