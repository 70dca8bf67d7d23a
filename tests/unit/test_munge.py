"""MUNGE credentials through the ``munge`` CLI, with stand-in scripts instead of munged."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from fake_warden import URL, FakeWarden

from slurm_qpu.munge import MungeCli, MungeError
from slurm_qpu.vendors.common.base import JobContext, ResourceSpec
from slurm_qpu.vendors.common.http import RetryPolicy
from slurm_qpu.vendors.pasqal_local.resource import PasqalLocalType

MUNGED_DOWN = ('munge: Error: Failed to access "/run/munge/munge.socket.2": No such file or '
               'directory (Did you start munged?)')


def script(tmp_path: Path, body: str, name: str = "munge") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_credential_is_what_munge_n_prints(tmp_path: Path) -> None:
    cli = script(tmp_path, 'printf "%s\\n" "$*" > "$0.args"; echo "MUNGE:AwQDAAB:"')
    assert MungeCli(cli)() == "MUNGE:AwQDAAB:"
    assert Path(cli + ".args").read_text() == "-n\n"


def test_a_socket_is_passed_on(tmp_path: Path) -> None:
    cli = script(tmp_path, 'printf "%s\\n" "$*" > "$0.args"; echo "MUNGE:x:"')
    MungeCli(cli, socket="/run/munge/other.socket")()
    assert Path(cli + ".args").read_text() == "-n --socket /run/munge/other.socket\n"


def test_missing_munge_command_says_it_is_not_installed(tmp_path: Path) -> None:
    with pytest.raises(MungeError) as exc:
        MungeCli(str(tmp_path / "no-munge"))()
    assert str(exc.value) == (f"cannot create a MUNGE credential: the '{tmp_path / 'no-munge'}' "
                              "command is not installed (it comes with the munge package)")


def test_munged_down_shows_munges_own_words(tmp_path: Path) -> None:
    cli = script(tmp_path, f"echo '{MUNGED_DOWN}' >&2; exit 1")
    with pytest.raises(MungeError) as exc:
        MungeCli(cli)()
    assert str(exc.value) == f"cannot create a MUNGE credential: {MUNGED_DOWN}"


def test_other_failures_suggest_checking_munged(tmp_path: Path) -> None:
    cli = script(tmp_path, "echo 'munge: Error: Permission denied' >&2; exit 1")
    with pytest.raises(MungeError, match=r"^cannot create a MUNGE credential: munge: Error: "
                                         r"Permission denied \(is munged running\?\)$"):
        MungeCli(cli)()
    silent = script(tmp_path, "exit 3", name="silent")
    with pytest.raises(MungeError, match=r"exit status 3 \(is munged running\?\)$"):
        MungeCli(silent)()


def test_a_hanging_munge_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    cli = script(tmp_path, "exec sleep 30")
    with pytest.raises(MungeError) as exc:
        MungeCli(cli, timeout=0.2)()
    assert str(exc.value) == (f"cannot create a MUNGE credential: '{cli} -n' did not answer "
                              "within 0.2 s (is munged running?)")


def test_output_that_is_not_a_credential_is_refused(tmp_path: Path) -> None:
    cli = script(tmp_path, "echo hello")
    with pytest.raises(MungeError, match=f"'{cli} -n' printed no credential"):
        MungeCli(cli)()


def test_a_munge_that_cannot_be_run_says_why(tmp_path: Path) -> None:
    path = tmp_path / "munge"
    path.write_text("not a program")  # not executable
    with pytest.raises(MungeError, match=f"cannot run '{path}': Permission denied"):
        MungeCli(str(path))()


def test_pasqal_local_uses_the_munge_command_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script(tmp_path, 'echo "MUNGE:uid=0:$$:"')  # $$: a new pid, so a new credential each time
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    fake = FakeWarden()
    spec = ResourceSpec("PASQAL_LOCAL", "pasqal-local", {"QRMI_WARDEN_URL": URL},
                        JobContext(job_id=7, uid=1000))
    qpu = PasqalLocalType(fake.transport(), RetryPolicy(attempts=1, backoff=0.0)).create(spec)
    assert qpu.acquire() in fake.sessions
    assert fake.credentials[0] is not None and fake.credentials[0].startswith("MUNGE:uid=0:")


@pytest.mark.skipif(shutil.which("munge") is None, reason="munge is not installed")
def test_the_real_munge_gives_a_credential_or_a_clear_error() -> None:
    try:
        credential = MungeCli()()
    except MungeError as exc:
        assert str(exc).startswith("cannot create a MUNGE credential: ")
    else:
        assert credential.startswith("MUNGE:")


# ------------------------------------------------------------- encode within a deadline
# The broker client gives munge.encode what is left of its deadline: libmunge cannot be
# interrupted and retries a silent munged for longer than a short broker_timeout.

class SilentLibrary:
    """libmunge facing a munged that accepts and never answers (until released)."""

    def __init__(self) -> None:
        import threading

        self.released = threading.Event()

    def encode(self, payload: bytes) -> str:
        self.released.wait(30)
        return "MUNGE:late:"


@pytest.mark.timeout(10)
def test_a_silent_munged_is_given_up_at_the_callers_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu import munge

    library = SilentLibrary()
    monkeypatch.setattr(munge, "_library", lambda: library)
    try:
        with pytest.raises(MungeError) as exc:
            munge.encode(b"payload", timeout=0.2)
    finally:
        library.released.set()
    assert str(exc.value) == ("cannot create a MUNGE credential: munged did not answer "
                              "within 0.2 s (is munged running?)")


def test_a_timely_library_answer_and_its_errors_come_back_as_they_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu import munge

    class Library:
        def encode(self, payload: bytes) -> str:
            if payload == b"bad":
                raise MungeError("cannot create a MUNGE credential: Munged communication error")
            return "MUNGE:" + payload.decode() + ":"

    monkeypatch.setattr(munge, "_library", lambda: Library())
    assert munge.encode(b"ok", timeout=5.0) == munge.encode(b"ok") == "MUNGE:ok:"
    with pytest.raises(MungeError, match="Munged communication error"):
        munge.encode(b"bad", timeout=5.0)


def test_without_libmunge_the_munge_command_gets_the_time_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu import munge

    script(tmp_path, "exec sleep 30")
    monkeypatch.setattr(munge, "_library", lambda: None)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(MungeError, match=r"timed out after 0\.2 seconds"):
        munge.encode(b"payload", timeout=0.2)
