"""Files the plugin writes as root in places other users can reach, opened so that a link
someone planted there cannot send root's writes into another file.

``profile=DIR`` is written by root's prolog and by every user's ``sbatch --qpu``, so DIR
is world-writable (mode 1777); ``log_json=PATH`` is root's, but nothing stops an admin
from pointing it into such a directory. A plain ``open()`` there follows whatever a user
put at the name: a symbolic link to ``/etc/shadow`` makes root overwrite or append to it.
So:

* a profile is a new file, ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600, made with
  ``openat()`` in its directory opened ``O_NOFOLLOW`` (the directory itself may not be a
  symbolic link); the directory must be root's (or the user's who runs the callback)
  and, when group or others may write to it, have the sticky bit (1777), or else other
  users could delete and replace the files in it;
* the JSON log is appended to with ``O_NOFOLLOW`` and kept only when ``fstat`` of what
  was opened is a regular file with one link: a hard link is a second name of another
  file, which ``O_NOFOLLOW`` cannot tell from a file of its own, but its link count can.
  ``O_NONBLOCK`` keeps a FIFO planted at the name from blocking the callback.

The shim applies the same rule to ``pytrace=FILE`` (shim/python.c). A refusal is an
``UnsafeFile`` with the reason; callers log it and go on without the file: a log or a
profile never fails a job. Standard library only.
"""

from __future__ import annotations

import errno
import os
import stat


class UnsafeFile(OSError):
    """A file or directory refused because writing there could reach another file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.EPERM, reason, path)


def _open_nofollow(path: str, flags: int, mode: int = 0o600, dir_fd: int | None = None,
                   shown: str | None = None) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        # what O_NOFOLLOW answers for a symbolic link: ELOOP (ENOTDIR with O_DIRECTORY)
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(path, dir_fd)):
            raise UnsafeFile(shown or path, "it is a symbolic link, which is not "
                                            "followed") from None
        if exc.errno == errno.ENXIO:  # O_NONBLOCK's answer for a FIFO nobody reads
            raise UnsafeFile(shown or path, "it is not a regular file") from None
        raise


def _is_link(path: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def open_append(path: str, mode: int = 0o640) -> int:
    """A descriptor to append to ``path`` (created with ``mode`` when missing); UnsafeFile
    unless it is a regular file with a single link."""
    fd = _open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK |
                        os.O_NOCTTY, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, "it is not a regular file")
        if st.st_nlink != 1:
            raise UnsafeFile(path, f"it has {st.st_nlink} hard links (a second name of "
                                   "another file?)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_directory(fd: int, path: str) -> None:
    """UnsafeFile unless the open directory ``fd`` is root's (or this process's user's)
    and, when group or others may write to it, has the sticky bit."""
    st = os.fstat(fd)
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafeFile(path, f"the directory belongs to uid {st.st_uid}, neither root nor "
                               "this process's user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise UnsafeFile(path, "others may write to the directory and it has no sticky bit "
                               "(chmod 1777, or make it root's only)")


def create_new(directory: str, name: str, mode: int = 0o600) -> int:
    """A descriptor to a file ``name`` created in ``directory``, which must not exist yet
    (a name someone else made first, link or not, is an error: EEXIST)."""
    dir_fd = _open_nofollow(directory, os.O_RDONLY | os.O_DIRECTORY)
    path = os.path.join(directory, name)
    try:
        check_directory(dir_fd, directory)
        return _open_nofollow(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode,
                              dir_fd=dir_fd, shown=path)
    except FileExistsError:
        raise UnsafeFile(path, "it exists already (an earlier profile, or made by someone "
                               "else); a profile is always a new file") from None
    finally:
        os.close(dir_fd)
