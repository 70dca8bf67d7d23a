"""The broker tier: a real broker (threads, HTTP, SQLite journal) in front of the real
emulator, with the real vendor SDKs inside a simulated job. MUNGE is faked here (the
real-Slurm tier uses munged): a fake credential says which uid made it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from slurm_qpu.broker.client import BrokerClient
from slurm_qpu.broker.journal import Journal
from slurm_qpu.broker.limits import Limits
from slurm_qpu.broker.server import Broker
from slurm_qpu.broker.service import ConfigSource, LeaseService
from slurm_qpu.broker.tls import ServerTLS
from slurm_qpu.munge import Decoded, MungeError

if TYPE_CHECKING:
    from slurm_qpu_emulator import Emulator


def fake_credential(payload: bytes, uid: int = 0) -> str:
    return "FAKE:" + base64.b64encode(json.dumps(
        {"uid": uid, "payload": payload.decode()}).encode()).decode()


def fake_decode(credential: str) -> Decoded:
    """As munge.decode: a credential, or MungeError for anything that is not one."""
    try:
        if not credential.startswith("FAKE:"):
            raise ValueError
        data = json.loads(base64.b64decode(credential[5:]))
        return Decoded(data["uid"], data["uid"], data["payload"].encode())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise MungeError("MUNGE credential refused: Invalid credential format") from None


@dataclass
class LiveJobs:
    """Stands in for squeue: the jobs Slurm still runs."""

    ids: set[int] = field(default_factory=set)
    fail: bool = False
    het: dict[int, int] = field(default_factory=dict)  # het job component -> its leader

    def live_jobs(self) -> set[int]:
        from slurm_qpu.slurm.commands import SlurmCommandError

        if self.fail:
            raise SlurmCommandError("squeue: slurm_load_jobs error: Unable to contact slurm "
                                    "controller")
        return set(self.ids)

    def job(self, job_id: int) -> Any:
        from slurm_qpu.slurm.commands import JobRecord

        return JobRecord(3600, "", 0, "alice", ("RUNNING",), het_job_id=self.het.get(job_id))


@dataclass
class BrokerUnderTest:
    broker: Broker
    service: LeaseService
    url: str
    config_path: Path
    journal_path: Path
    jobs: LiveJobs
    ca_file: str | None = None  # an https broker: the CA nodes verify it with

    def node(self, uid: int = 0) -> BrokerClient:
        return BrokerClient(self.url, deadline=2.0, ca_file=self.ca_file,
                            encode=lambda payload: fake_credential(payload, uid))

    def acquire(self, job_id: int, qpus: str, **kw: Any) -> dict[str, Any]:
        self.jobs.ids.add(job_id)
        return self.node().acquire(job_id, qpus=qpus, user=kw.pop("user", "alice"),
                                   uid=kw.pop("uid", 1000), time_limit=kw.pop("time_limit",
                                                                              3600), **kw)


StartBroker = Callable[..., BrokerUnderTest]


def running_emulator() -> Iterator[Emulator]:
    """The vendors behind the broker (for a module's fixture): jobs done in 0.2 s."""
    from slurm_qpu_emulator import Emulator, EmulatorConfig

    emulator = Emulator(EmulatorConfig(job_seconds=0.2))
    emulator.start()
    yield emulator
    emulator.stop()


def broker_starter(tmp_path: Path) -> Iterator[StartBroker]:
    started: list[BrokerUnderTest] = []

    def start(resources: list[dict[str, Any]], *, limits: Limits | None = None,
              journal: Path | None = None, jobs: LiveJobs | None = None,
              port: int = 0, tls: ServerTLS | None = None,
              ca_file: str | None = None) -> BrokerUnderTest:
        config_path = tmp_path / "qrmi_config.json"
        config_path.write_text(json.dumps({"resources": resources}))
        config_path.chmod(0o600)
        journal_path = journal or tmp_path / "journal.sqlite"
        jobs = jobs or LiveJobs()
        service = LeaseService(Journal(journal_path, synchronous="NORMAL"),
                               ConfigSource(config_path), public_url="http://unset",
                               squeue=jobs, release_backoff=0.01)  # type: ignore[arg-type]
        broker = Broker(service, limits or Limits(), decode=fake_decode)
        url = _start(broker, port, tls)
        service.public_url = url
        under = BrokerUnderTest(broker, service, url, config_path, journal_path, jobs,
                                ca_file)
        started.append(under)
        return under

    yield start
    for under in started:
        under.broker.stop()
        under.service.journal.close()


def _start(broker: Broker, port: int, tls: ServerTLS | None = None) -> str:
    """Broker.start, with a short poll interval: stopping then takes milliseconds, not the
    standard library's half second (many brokers start and stop in this tier)."""
    return broker.start("127.0.0.1", port, poll_interval=0.02, tls=tls)


def set_job_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


# ---------------------------------------------------------------------- local simulators

def sim_resources(ledger: Path, **extra: dict[str, str]) -> list[dict[str, Any]]:
    """Local simulators sim_a and sim_b writing to ``ledger`` (what the "vendor" saw);
    ``extra`` adds settings (without the QRMI_LOCAL_SIM_ prefix) to the named ones."""
    base: dict[str, dict[str, str]] = {"sim_a": {}, "sim_b": {}}
    for name, env in extra.items():
        base.setdefault(name, {}).update(env)
    return [{"name": name, "type": "local-simulator",
             "environment": {"QRMI_LOCAL_SIM_LEDGER": str(ledger),
                             **{f"QRMI_LOCAL_SIM_{k}": v for k, v in env.items()}}}
            for name, env in base.items()]


def read_ledger(ledger: Path) -> list[tuple[str, str, str]]:
    """The simulated vendor's view: [(event, resource, token), ...] in order."""
    if not ledger.exists():
        return []
    rows = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    return [(r["event"], r["resource"], r["token"]) for r in rows]


# ---------------------------------------------------------------------- raw HTTP

@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return str(self.json()["message"])


def raw(url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
        body: bytes | None = None, chunks: list[bytes] | None = None) -> Answer:
    """One request exactly as written (httpx would normalise ``..`` and ``//`` away);
    ``chunks`` sends a chunked body."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            if chunks is not None:
                for chunk in chunks:
                    conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the broker answered and closed before reading it all: read the answer
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (the server logs after it answered)."""
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def lease_service(tmp_path: Path, resources: list[dict[str, Any]], *,
                  journal: Path | None = None, **kw: Any) -> LeaseService:
    """A LeaseService (no HTTP) on a config of ``resources`` in tmp_path; ``kw`` goes to
    LeaseService (squeue=, clock=, factory=)."""
    config_path = tmp_path / "qrmi_config.json"
    if not config_path.exists() or journal is None:
        write_config(config_path, resources)
    kw.setdefault("release_backoff", 0.0)
    return LeaseService(Journal(journal or tmp_path / "journal.sqlite", synchronous="NORMAL"),
                        ConfigSource(config_path), public_url="http://broker.test:8291", **kw)


def write_config(path: Path, resources: list[dict[str, Any]]) -> None:
    """(Re)write a config; ConfigSource sees the change by mtime and size."""
    import os

    text = json.dumps({"resources": resources})
    old = path.stat() if path.exists() else None
    path.write_text(text)
    path.chmod(0o600)
    if old is not None:  # same second and size: make the change visible all the same
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000))


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (a broker's config or journal path, a
    benchmark's workdir): what a test started and should have stopped."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(proc.name))
    return found
