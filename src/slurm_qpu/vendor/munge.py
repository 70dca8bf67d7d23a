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

from slurm_qpu.resources.base import ResourceError

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
