"""MUNGE credentials, for services that learn a Slurm user's uid from MUNGE (Pasqal's Warden).

A credential is made by running ``munge -n`` (the CLI that ships with MUNGE), so slurm-qpu
needs no C binding; munged must be running on the node. Each credential can be decoded only
once (the server rejects replays), so callers ask for a fresh one for every request.
Anything that returns a credential string can stand in (``MungeSource``), which lets tests
run without munged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from slurm_qpu.vendors.common.base import ResourceError

MungeSource = Callable[[], str]
DEFAULT_TIMEOUT = 5.0


class MungeError(ResourceError):
    """No credential could be made; the message says why and what to check."""


@dataclass(frozen=True)
class MungeCli:
    """Makes a credential with ``munge -n`` (empty payload), bounded by ``timeout``."""

    command: str = "munge"
    timeout: float = DEFAULT_TIMEOUT
    socket: str | None = None  # munged's socket, if not the compiled-in default

    def __call__(self) -> str:
        args = [self.command, "-n"]
        if self.socket:
            args += ["--socket", self.socket]
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise MungeError(f"cannot create a MUNGE credential: the '{self.command}' command "
                             "is not installed (it comes with the munge package)") from None
        except subprocess.TimeoutExpired:
            raise MungeError(f"cannot create a MUNGE credential: '{self.command} -n' did not "
                             f"answer within {self.timeout:g} s (is munged running?)") from None
        except OSError as exc:
            raise MungeError(f"cannot create a MUNGE credential: cannot run "
                             f"'{self.command}': {exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            detail = lines[-1] if lines else f"exit status {done.returncode}"
            # munge's own text already says "Did you start munged?" when the socket is absent
            if "munged" not in detail:
                detail += " (is munged running?)"
            raise MungeError(f"cannot create a MUNGE credential: {detail}")
        credential = done.stdout.strip()
        if not credential.startswith("MUNGE:"):
            raise MungeError(f"cannot create a MUNGE credential: '{self.command} -n' printed "
                             "no credential")
        return credential


def credential() -> str:
    """A fresh credential from the local munged, with the default command and timeout."""
    return MungeCli()()


# ---------------------------------------------------------------- credentials with a payload
# The broker authenticates node-side calls (prolog/epilog, root) with MUNGE: the caller puts
# a digest of its request in the credential's payload, the broker decodes it and learns the
# caller's uid from munged itself. libmunge through ctypes costs ~0.1 ms a call against
# ~3 ms for a process; the command-line tools are the fallback where the library is absent.

@dataclass(frozen=True)
class Decoded:
    uid: int
    gid: int
    payload: bytes


class _LibMunge:
    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        self.ctypes = ctypes
        name = ctypes.util.find_library("munge") or "libmunge.so.2"
        lib = ctypes.CDLL(name)
        lib.munge_encode.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_int]
        lib.munge_decode.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                     ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(ctypes.c_uint32),
                                     ctypes.POINTER(ctypes.c_uint32)]
        lib.munge_strerror.restype = ctypes.c_char_p
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        self.lib, self.libc = lib, libc

    def _error(self, code: int) -> str:
        text: bytes = self.lib.munge_strerror(code) or b"unknown error"
        return text.decode(errors="replace")

    def encode(self, payload: bytes) -> str:
        c = self.ctypes
        cred = c.c_char_p()
        buf = c.create_string_buffer(payload, len(payload))
        code = self.lib.munge_encode(c.byref(cred), None, buf, len(payload))
        if code != 0:
            raise MungeError(f"cannot create a MUNGE credential: {self._error(code)}")
        try:
            return (cred.value or b"").decode()
        finally:
            self.libc.free(cred)

    def decode(self, credential: str) -> Decoded:
        c = self.ctypes
        buf, length = c.c_void_p(), c.c_int()
        uid, gid = c.c_uint32(), c.c_uint32()
        code = self.lib.munge_decode(credential.encode(), None, c.byref(buf), c.byref(length),
                                     c.byref(uid), c.byref(gid))
        try:
            if code != 0:
                raise MungeError(f"MUNGE credential refused: {self._error(code)}")
            payload = c.string_at(buf, length.value) if buf.value else b""
        finally:
            if buf.value:
                self.libc.free(buf)
        return Decoded(uid.value, gid.value, payload)


_lib: _LibMunge | None = None
_lib_failed = False


def _library() -> _LibMunge | None:
    global _lib, _lib_failed
    if _lib is None and not _lib_failed:
        try:
            _lib = _LibMunge()
        except (OSError, AttributeError):
            _lib_failed = True
    return _lib


def encode(payload: bytes, timeout: float | None = None) -> str:
    """A credential carrying ``payload`` (libmunge, else ``munge --input``), within
    ``timeout`` seconds when given (the broker client's deadline): libmunge cannot be
    interrupted, and its own retries against a munged that does not answer take longer
    than a short deadline, so it is then asked from a thread that is waited for no
    longer."""
    lib = _library()
    if lib is not None:
        return lib.encode(payload) if timeout is None else \
            _within(timeout, lambda: lib.encode(payload))
    try:
        done = subprocess.run(["munge"], input=payload, capture_output=True,
                              timeout=DEFAULT_TIMEOUT if timeout is None
                              else min(timeout, DEFAULT_TIMEOUT), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MungeError(f"cannot create a MUNGE credential: {exc}") from None
    if done.returncode != 0:
        raise MungeError("cannot create a MUNGE credential: "
                         + done.stderr.decode(errors="replace").strip())
    return done.stdout.decode().strip()


def _within(timeout: float, make: Callable[[], str]) -> str:
    import threading

    done: list[str | BaseException] = []

    def run() -> None:
        try:
            done.append(make())
        except BaseException as exc:
            done.append(exc)

    # a daemon: one munged never answered is left behind, not waited for at exit
    worker = threading.Thread(target=run, name="munge-encode", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if not done:
        raise MungeError(f"cannot create a MUNGE credential: munged did not answer within "
                         f"{timeout:.3g} s (is munged running?)")
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]


def decode(credential: str) -> Decoded:
    """Who made ``credential`` and what it carries; MungeError if munged refuses it
    (bad, expired or replayed credential, other MUNGE key)."""
    lib = _library()
    if lib is not None:
        return lib.decode(credential)
    try:
        done = subprocess.run(["unmunge", "--metadata=/dev/stderr", "--keys=UID,GID",
                               "--numeric"], input=credential.encode(), capture_output=True,
                              timeout=DEFAULT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MungeError(f"cannot check a MUNGE credential: {exc}") from None
    if done.returncode != 0:
        raise MungeError("MUNGE credential refused: "
                         + done.stderr.decode(errors="replace").strip())
    meta = dict(line.split(":", 1) for line in done.stderr.decode().splitlines() if ":" in line)
    return Decoded(int(meta["UID"].strip()), int(meta["GID"].strip()), done.stdout)
