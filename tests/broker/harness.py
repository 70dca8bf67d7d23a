"""The broker tier: a real broker (threads, HTTP, SQLite journal) in front of the real
emulator, with the real vendor SDKs inside a simulated job. MUNGE is faked here (the
real-Slurm tier uses munged): a fake credential says which uid made it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu.broker.client import BrokerClient
from slurm_qpu.broker.journal import Journal
from slurm_qpu.broker.server import Broker, Limits
from slurm_qpu.broker.service import ConfigSource, LeaseService
from slurm_qpu.vendor.munge import Decoded, MungeError


def fake_credential(payload: bytes, uid: int = 0) -> str:
    return "FAKE:" + base64.b64encode(json.dumps(
        {"uid": uid, "payload": payload.decode()}).encode()).decode()


def fake_decode(credential: str) -> Decoded:
    if not credential.startswith("FAKE:"):
        raise MungeError("MUNGE credential refused: Invalid credential format")
    data = json.loads(base64.b64decode(credential[5:]))
    return Decoded(data["uid"], data["uid"], data["payload"].encode())


@dataclass
class LiveJobs:
    """Stands in for squeue: the jobs Slurm still runs."""

    ids: set[int] = field(default_factory=set)
    fail: bool = False

    def live_jobs(self) -> set[int]:
        from slurm_qpu.slurmcli import SlurmCommandError

        if self.fail:
            raise SlurmCommandError("squeue: slurm_load_jobs error: Unable to contact slurm "
                                    "controller")
        return set(self.ids)

    def job(self, job_id: int) -> Any:
        from slurm_qpu.slurmcli import JobRecord

        return JobRecord(3600, "", 0, "alice", ("RUNNING",))


@dataclass
class BrokerUnderTest:
    broker: Broker
    service: LeaseService
    url: str
    config_path: Path
    journal_path: Path
    jobs: LiveJobs

    def node(self, uid: int = 0) -> BrokerClient:
        return BrokerClient(self.url, deadline=2.0,
                            encode=lambda payload: fake_credential(payload, uid))

    def acquire(self, job_id: int, qpus: str, **kw: Any) -> dict[str, Any]:
        self.jobs.ids.add(job_id)
        return self.node().acquire(job_id, qpus=qpus, user=kw.pop("user", "alice"),
                                   uid=kw.pop("uid", 1000), time_limit=kw.pop("time_limit",
                                                                              3600), **kw)


StartBroker = Callable[..., BrokerUnderTest]


def broker_starter(tmp_path: Path) -> Iterator[StartBroker]:
    started: list[BrokerUnderTest] = []

    def start(resources: list[dict[str, Any]], *, limits: Limits | None = None,
              journal: Path | None = None, jobs: LiveJobs | None = None,
              port: int = 0) -> BrokerUnderTest:
        config_path = tmp_path / "qrmi_config.json"
        config_path.write_text(json.dumps({"resources": resources}))
        config_path.chmod(0o600)
        journal_path = journal or tmp_path / "journal.sqlite"
        jobs = jobs or LiveJobs()
        service = LeaseService(Journal(journal_path, synchronous="NORMAL"),
                               ConfigSource(config_path), public_url="http://unset",
                               squeue=jobs, release_backoff=0.01)  # type: ignore[arg-type]
        broker = Broker(service, limits or Limits(), decode=fake_decode)
        url = broker.start("127.0.0.1", port)
        service.public_url = url
        under = BrokerUnderTest(broker, service, url, config_path, journal_path, jobs)
        started.append(under)
        return under

    yield start
    for under in started:
        under.broker.stop()
        under.service.journal.close()


def set_job_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
