"""``slurm-qpu broker`` as its own process, started the way its systemd unit starts it (its
own command line, its own defaults, real MUNGE), so that what a client costs it can be
measured where it lands: in that process's memory and descriptors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from slurm_qpu import munge
from slurm_qpu.broker.client import BrokerClient


def munged_answers() -> bool:
    try:
        munge.decode(munge.encode(b"hostile tier", timeout=5))
    except munge.MungeError:
        return False
    return True


@contextmanager
def munged() -> Iterator[None]:
    """munged, started if none answers. It is the host's one munged, which the labs and
    other test runs on this machine use too: it is left running, as the munge service
    would be (stopping it under another run made that run's MUNGE calls fail)."""
    if not munged_answers():
        from slurm_qpu_lab.cluster import start_munged

        start_munged()
        for _ in range(100):
            if munged_answers():
                break
            time.sleep(0.1)
    yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BrokerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """Resident memory, bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def node(self, deadline: float = 10.0) -> BrokerClient:
        return BrokerClient(self.url, deadline=deadline)

    def acquire(self, job_id: int, qpus: str, deadline: float = 10.0) -> dict[str, Any]:
        return self.node(deadline).acquire(job_id, qpus=qpus, user="alice", uid=1000,
                                           time_limit=3600)


@contextmanager
def broker_process(resources: list[dict[str, Any]], directory: Path,
                   *args: str) -> Iterator[BrokerProcess]:
    config = directory / "qrmi_config.json"
    config.write_text(json.dumps({"resources": resources}))
    config.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / "broker.log"
    command = [str(Path(sys.executable).parent / "slurm-qpu"), "broker",
               "--config", str(config), "--journal", str(directory / "journal.sqlite"),
               "--journal-sync", "normal", "--host", "127.0.0.1", "--port", str(port),
               "--public-url", url, "--status-interval", "0", "--reap-interval", "3600",
               "--squeue", "/bin/false", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"the broker exited: {log.read_text()}")
            time.sleep(0.05)
        yield BrokerProcess(process, url, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
