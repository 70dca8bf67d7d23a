"""The real emulator and the real broker, each in its own process, as a site runs them
(``slurm-qpu-emulator``, ``slurm-qpu broker``), for the proxy and reference benchmarks.

Separate processes, not threads of the benchmark: the broker's and the emulator's
interpreters must not share a GIL with the load generator, or the numbers would measure
the GIL. ``profile=`` runs the broker under ``benchmarks.profiled`` (cProfile of every
request thread, written when it stops)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_qpu import munge
from slurm_qpu_lab.cluster import start_munged

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slurm_qpu_command(name: str = "slurm-qpu") -> list[str]:
    """The installed ``slurm-qpu`` (or ``slurm-qpu-emulator``) script beside this Python,
    else ``python -m`` its package."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m",
                                                   name.replace("-", "_")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    """One server process, its log in ``workdir/<name>.log``; started by ``start`` (which
    waits until ``ready`` holds) and stopped with SIGTERM, as systemd stops it."""

    name: str
    workdir: Path
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True,
                                         env={**os.environ, **(self.env or {})})
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:"
                                   f"\n{self.log.read_text()[-2000:]}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:g} s:\n"
                           + self.log.read_text()[-2000:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; the exit status (None: never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                return bool(r.status == 200)
        except OSError:
            return False
    return check


def emulator(workdir: Path, *, job_seconds: float = 0.0) -> tuple[Process, str, Path]:
    """``slurm-qpu-emulator`` (not started): the process, its URL and the
    qrmi_config.json it writes for its QPUs (real credentials: the broker's config)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = workdir / "emulated_qpus.json"
    argv = [*slurm_qpu_command("slurm-qpu-emulator"), "--host", "127.0.0.1", "--port", str(port),
            "--job-seconds", str(job_seconds), "--write-config", str(config)]
    return Process("emulator", workdir, argv, _answers(f"{url}/_emulator/faults")), url, config


def broker(workdir: Path, resources: list[dict[str, Any]], *,
           profile: Path | None = None, journal: str | None = None, name: str = "broker",
           public_url: str | None = None, extra: tuple[str, ...] = ()) -> tuple[Process, str]:
    """``slurm-qpu broker`` with its production defaults (journal synchronous=FULL, audit
    log to a file) except: no per-job rate limit (the load generator is one job making
    hundreds of requests a second; the bucket itself costs a lock and two floats), and no
    Slurm (the reaper's squeue is /bin/false and runs once, at start-up; no vendor
    status watcher). ``journal``: a MariaDB journal URL instead of a fresh SQLite file;
    ``name``: its log's and audit log's name (several brokers in one directory)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = workdir / f"{name}-qrmi_config.json"
    config.write_text(json.dumps({"resources": resources}))
    config.chmod(0o600)  # the broker refuses a config others can read
    if journal is None:
        for old in workdir.glob("journal.sqlite*"):  # a fresh broker: no lease of a past run
            old.unlink()
        journal = str(workdir / "journal.sqlite")
    args = ["broker", "--config", str(config), "--journal", journal,
            "--host", "127.0.0.1", "--port", str(port), "--public-url", public_url or url,
            "--audit-log", str(workdir / f"{'audit' if name == 'broker' else name + '-audit'}"
                                         ".log"),
            "--rate-limit", "1000000", "--burst", "1000000",
            "--squeue", "/bin/false", "--reap-interval", "3600", "--status-interval", "0",
            *extra]
    if profile is None:
        argv, env = [*slurm_qpu_command(), *args], None
    else:
        argv = [sys.executable, "-m", "benchmarks.profiled", str(profile), *args]
        env = {"PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return Process(name, workdir, argv, _answers(f"{url}/v1/health"), env), url


def accepts(port: int) -> Callable[[], bool]:
    """Whether something accepts connections on the local ``port`` (a server's readiness)."""
    def check() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return True
        except OSError:
            return False
    return check


def relay(workdir: Path, upstream_url: str) -> tuple[Process, str]:
    """``benchmarks.relay`` (not started) in front of ``upstream_url``: its process and
    its URL."""
    port = free_port()
    upstream = urllib.parse.urlsplit(upstream_url).port
    argv = [sys.executable, "-m", "benchmarks.relay", str(port), str(upstream)]
    env = {"PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return Process("relay", workdir, argv, accepts(port), env), f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------- munged

def munge_answers() -> bool:
    """A credential made and decoded through the local munged's socket."""
    try:
        return munge.decode(munge.encode(b"ping")).payload == b"ping"
    except munge.MungeError:
        return False


@dataclass
class Munged:
    """The node's munged (the broker authenticates the prolog's acquire with it): used
    as found, or started as the lab starts it and stopped again afterwards."""

    started_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def __enter__(self) -> Munged:
        if munge_answers():
            return self
        start_munged()
        with contextlib.suppress(OSError, ValueError):
            self.started_pid = int(Path("/run/munge/munged.pid").read_text().strip())
        for _ in range(200):
            if munge_answers():
                return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("munged was started but does not answer")

    def __exit__(self, *exc: object) -> None:
        pid, self.started_pid = self.started_pid, None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            if "munged" not in Path(f"/proc/{pid}/comm").read_text():
                return  # the pid was reused: not ours to stop
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
            time.sleep(0.02)
