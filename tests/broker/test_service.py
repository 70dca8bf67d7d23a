"""LeaseService: acquire once per job, release once, reap what Slurm forgot, recover what a
killed broker left, and what a job's tasks get (no secret, endpoints at the proxy)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import LiveJobs, lease_service, read_ledger, sim_resources, wait_for, write_config

from slurm_qpu.acquire.pipeline import default_factory
from slurm_qpu.broker.journal import Held, Journal, State
from slurm_qpu.broker.service import EXPIRY_GRACE_SECONDS, AcquireRequest, LeaseService
from slurm_qpu.redact import is_secret_key
from slurm_qpu.vendors.common.base import ResourceSpec

PUBLIC = "http://broker.test:8291"


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


def sims(tmp_path: Path, ledger: Path, **extra: dict[str, str]) -> LeaseService:
    return lease_service(tmp_path, sim_resources(ledger, **extra), squeue=LiveJobs({5, 6}))


def ask(job_id: int = 5, qpus: str = "sim_a", **kw: Any) -> AcquireRequest:
    kw.setdefault("time_limit", 600)
    return AcquireRequest(job_id, user="alice", uid=1000, qpus=qpus, **kw)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- acquire

def test_acquire_is_idempotent_per_job(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    first = service.acquire(ask(5, "sim_a,sim_b")).lease
    second = service.acquire(ask(5, "sim_a,sim_b")).lease
    assert first.state is State.ACQUIRED and (second.job_id, second.gen) == (5, 1)
    assert service.job_token(first) == service.job_token(second)
    assert [h.token for h in first.held] == [h.token for h in second.held]
    assert [e for e, _, _ in read_ledger(ledger)] == ["acquire", "acquire"]


def test_two_nodes_asking_at_the_same_time_get_one_lease_acquired_once(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"ACQUIRE_DELAY": "0.2"})
    start = threading.Barrier(2)
    tokens: list[str] = []

    def node() -> None:
        start.wait()
        lease = service.acquire(ask()).lease
        tokens.append(f"{lease.gen}:{service.job_token(lease)}:{lease.held[0].token}")

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert [e for e, _, _ in read_ledger(ledger)] == ["acquire"]


def test_a_failed_acquisition_is_recorded_and_every_node_gets_the_same_answer(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"ACQUIRE_ERROR": "the vendor says no"})
    first = service.acquire(ask())
    again = service.acquire(ask())
    assert first.lease.state is State.FAILED
    assert first.lease.error == "cannot acquire QPU sim_a: the vendor says no"
    assert (again.lease.gen, again.lease.state, again.lease.error) == (
        1, State.FAILED, "cannot acquire QPU sim_a: the vendor says no")
    assert read_ledger(ledger) == []
    assert service.environment(again.lease) == {}


def test_acquisition_is_all_or_nothing(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_b={"ACQUIRE_ERROR": "sim_b is busy"})
    lease = service.acquire(ask(5, "sim_a,sim_b")).lease
    assert lease.state is State.FAILED and lease.error == "cannot acquire QPU sim_b: sim_b is busy"
    (acquired, released) = read_ledger(ledger)
    assert acquired[:2] == ("acquire", "sim_a") and released == ("release", "sim_a", acquired[2])
    stored = service.journal.current(5)
    assert stored is not None and [(h.name, h.released_at is not None) for h in stored.held] \
        == [("sim_a", True)]
    assert service.journal.active() == []


def test_a_request_for_an_unknown_qpu_fails_the_lease_with_the_reason(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    lease = service.acquire(ask(5, "sim_a,nope")).lease
    assert lease.state is State.FAILED and lease.names == []
    assert lease.error == "--qpu=sim_a,nope: unknown QPU name(s) nope; known: sim_a,sim_b"
    assert read_ledger(ledger) == []


def test_selections_spread_jobs_over_the_least_busy_qpus_within_their_limits(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    first = service.acquire(ask(5, "any:sim_*")).lease
    second = service.acquire(ask(6, "any:sim_*")).lease
    assert (first.names, second.names) == (["sim_a"], ["sim_b"])
    assert first.selected == {"sim_a": "any:sim_*"} and first.request == "any:sim_*"
    env = service.environment(first)
    assert (env["QRMI_JOB_QPU_RESOURCES"], env["SLURM_QPU_REQUEST"]) == ("sim_a", "any:sim_*")
    third = service.acquire(ask(7, "any:sim_*")).lease
    assert third.state is State.FAILED
    assert third.error == ("--qpu=any:sim_*: no QPU matching any:sim_* is available now "
                           "(sim_a: held by 1 job(s), its limit; sim_b: held by 1 job(s), "
                           "its limit)")
    service.release(5)
    [usage] = service.journal.usage(service.journal.current(5))  # type: ignore[arg-type]
    assert (usage.qpu, usage.selected_by) == ("sim_a", "any:sim_*")
    assert service.acquire(ask(8, "any:sim_*")).lease.names == ["sim_a"]


def test_a_selection_passes_over_a_qpu_its_vendor_reports_unavailable(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"STATUS": "maintenance"})
    assert service.acquire(ask(5, "any:sim_*")).lease.names == ["sim_b"]


def test_an_unreadable_config_fails_the_lease_with_the_reason(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    (tmp_path / "qrmi_config.json").write_text("{not json")
    lease = service.acquire(ask()).lease
    assert lease.state is State.FAILED
    assert lease.error == (f"--qpu=sim_a: {tmp_path / 'qrmi_config.json'}: invalid JSON at "
                           "line 1 column 2: Expecting property name enclosed in double quotes")


def test_a_new_qpu_in_the_config_is_seen_without_a_restart(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    write_config(tmp_path / "qrmi_config.json",
                 sim_resources(ledger, sim_c={"NUM_QUBITS": "7"}))
    assert service.acquire(ask(5, "sim_c")).lease.state is State.ACQUIRED


def test_the_config_source_knows_the_secrets_of_every_config_it_loaded(
        tmp_path: Path, ledger: Path) -> None:
    from slurm_qpu.broker.service import ConfigSource

    path = tmp_path / "qrmi_config.json"
    write_config(path, sim_resources(ledger, sim_a={"API_KEY": "first-key"}))
    source = ConfigSource(path)
    assert source.secrets == frozenset()  # nothing loaded yet
    source.get()
    known = source.secrets
    assert known == {"first-key"}
    source.get()
    write_config(path, sim_resources(ledger, sim_a={"API_KEY": "first-key", "NUM_QUBITS": "7"}))
    source.get()
    assert source.secrets is known  # reloaded, no new secret: the redactors rebuild nothing
    write_config(path, sim_resources(ledger, sim_b={"API_KEY": "added-key"}))
    source.get()
    # a replaced or removed QPU's key stays masked: it may still be valid at the vendor
    assert source.secrets == {"first-key", "added-key"}


def test_the_time_limit_comes_from_squeue_when_the_prolog_does_not_send_it(
        tmp_path: Path, ledger: Path) -> None:
    clock = Clock()
    service = lease_service(tmp_path, sim_resources(ledger), squeue=LiveJobs({5}), clock=clock)
    lease = service.acquire(AcquireRequest(5, uid=1000, qpus="sim_a")).lease
    # harness.LiveJobs.job() says: 3600 s, user alice
    assert lease.user == "alice"
    assert lease.expires_at == clock.now + 3600 + EXPIRY_GRACE_SECONDS
    assert service.environment(lease)["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "3600"


# ---------------------------------------------------------------------------- release

def test_release_is_idempotent_and_releases_exactly_once(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    acquired = service.acquire(ask(5, "sim_a,sim_b")).lease
    first = service.release(5)
    second = service.release(5)
    assert first is not None and first.state is State.RELEASED and first.release_errors == []
    assert second is not None and second.state is State.RELEASED
    assert [(e, r, t) for e, r, t in read_ledger(ledger) if e == "release"] == [
        ("release", h.name, h.token) for h in acquired.held]
    assert service.release(99) is None


def test_release_after_a_failed_acquisition_closes_the_lease_and_calls_no_vendor(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"ACQUIRE_ERROR": "no"})
    service.acquire(ask())
    released = service.release(5)
    assert released is not None and released.state is State.RELEASED
    assert released.error == "cannot acquire QPU sim_a: no" and released.release_errors == []
    assert read_ledger(ledger) == []


def test_a_release_the_vendor_refuses_is_retried_and_recorded(
        tmp_path: Path, ledger: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = sims(tmp_path, ledger)
    lease = service.acquire(ask()).lease
    token = lease.held[0].token
    write_config(tmp_path / "qrmi_config.json",
                 sim_resources(ledger, sim_a={"RELEASE_ERROR": "vendor down"}))
    with caplog.at_level(logging.ERROR, "slurm_qpu.broker"):
        released = service.release(5)
    message = f"cannot release QPU sim_a (token {token}): vendor down"
    assert released is not None and released.release_errors == [message]
    assert released.held[0].error == message and released.held[0].released_at is None
    assert caplog.messages.count(f"job 5: {message}") == 1
    stored = service.journal.current(5)
    assert stored is not None and stored.release_errors == [message]


def test_a_requeued_job_gets_a_new_generation(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    first = service.acquire(ask()).lease
    service.release(5)
    second = service.acquire(ask()).lease
    assert (first.gen, second.gen) == (1, 2) and second.state is State.ACQUIRED
    assert service.job_token(first) != service.job_token(second)


# ---------------------------------------------------------------------------- reaper

def test_reap_releases_jobs_slurm_no_longer_runs_and_leaves_live_ones(
        tmp_path: Path, ledger: Path) -> None:
    jobs = LiveJobs({5, 6})
    service = lease_service(tmp_path, sim_resources(ledger), squeue=jobs)
    service.acquire(ask(5))
    service.acquire(ask(6, "sim_b"))
    jobs.ids = {6}
    assert service.reap() == [5]
    assert [lease.job_id for lease in service.journal.active()] == [6]
    assert [(e, r) for e, r, _ in read_ledger(ledger)] == [
        ("acquire", "sim_a"), ("acquire", "sim_b"), ("release", "sim_a")]
    assert service.reap() == []


def test_reap_does_nothing_when_squeue_fails(
        tmp_path: Path, ledger: Path, caplog: pytest.LogCaptureFixture) -> None:
    jobs = LiveJobs({5})
    service = lease_service(tmp_path, sim_resources(ledger), squeue=jobs)
    service.acquire(ask(5))
    jobs.ids, jobs.fail = set(), True
    with caplog.at_level(logging.WARNING, "slurm_qpu.broker"):
        assert service.reap() == []
    assert len(service.journal.active()) == 1
    assert caplog.messages == ["reaper: cannot list jobs (squeue: slurm_load_jobs error: "
                               "Unable to contact slurm controller); trying again later"]


def test_reap_without_squeue_does_nothing(tmp_path: Path, ledger: Path) -> None:
    service = lease_service(tmp_path, sim_resources(ledger))
    service.acquire(ask(5))
    assert service.reap() == [] and len(service.journal.active()) == 1


def test_reap_releases_expired_leases_of_live_jobs(tmp_path: Path, ledger: Path) -> None:
    clock = Clock()
    service = lease_service(tmp_path, sim_resources(ledger), squeue=LiveJobs({5, 6}),
                            clock=clock)
    service.acquire(ask(5, time_limit=60))
    service.acquire(ask(6, "sim_b", time_limit=3600))
    clock.now += 60 + EXPIRY_GRACE_SECONDS + 1
    assert service.reap() == [5]
    assert [lease.job_id for lease in service.journal.active()] == [6]


def test_reap_ignores_leases_created_after_the_squeue_snapshot(
        tmp_path: Path, ledger: Path) -> None:
    clock = Clock()

    @dataclass
    class SlowSqueue(LiveJobs):
        during: list[Callable[[], None]] = field(default_factory=list)

        def live_jobs(self) -> set[int]:
            snapshot = super().live_jobs()  # job 9 is not in it yet
            clock.now += 1
            for hook in self.during:
                hook()
            return snapshot

    jobs = SlowSqueue({5})
    service = lease_service(tmp_path, sim_resources(ledger), squeue=jobs, clock=clock)
    jobs.during.append(lambda: service.acquire(ask(9)) and None)
    assert service.reap() == []
    current = service.journal.current(9)
    assert current is not None and current.state is State.ACQUIRED


def test_reap_never_releases_a_newer_generation_than_the_one_it_found_gone(
        tmp_path: Path, ledger: Path) -> None:
    # the reaper decided job 5 (gen 1) is gone; before it releases, the epilog released
    # gen 1 and the requeued job acquired gen 2: that lease is the new run's
    jobs = LiveJobs(set())
    service = lease_service(tmp_path, sim_resources(ledger), squeue=jobs)
    service.acquire(ask(5))
    listed = service.journal.active

    def active_then_requeue() -> list[Any]:
        leases = listed()
        service.release(5)
        service.acquire(ask(5))
        return leases

    service.journal.active = active_then_requeue  # type: ignore[method-assign]
    service.reap()
    current = service.journal.current(5)
    assert current is not None and (current.gen, current.state) == (2, State.ACQUIRED)


# ---------------------------------------------------------------------------- recovery

def crash_mid_acquire(tmp_path: Path, ledger: Path) -> tuple[Path, str]:
    """What a broker killed while acquiring sim_a,sim_b leaves: an ACQUIRING lease and a
    QPU the vendor granted (sim_a); returns the journal and the vendor's token."""
    write_config(tmp_path / "qrmi_config.json", sim_resources(ledger))
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    lease = journal.begin(5, user="alice", uid=1000, names=["sim_a", "sim_b"], overrides={},
                          expires_at=None)
    spec = ResourceSpec("sim_a", "local-simulator", {"QRMI_LOCAL_SIM_LEDGER": str(ledger)})
    token = default_factory(spec).acquire()
    journal.add_held(lease, Held("sim_a", "local-simulator", token, 1.0))
    journal.close()
    return path, token


def test_recover_releases_what_a_broker_killed_mid_acquire_held(
        tmp_path: Path, ledger: Path) -> None:
    path, token = crash_mid_acquire(tmp_path, ledger)
    service = lease_service(tmp_path, [], journal=path)
    service.recover()
    assert read_ledger(ledger) == [("acquire", "sim_a", token), ("release", "sim_a", token)]
    lease = service.journal.get(5, 1)
    assert lease is not None and lease.state is State.RELEASED
    assert lease.error == "the broker stopped while acquiring the QPUs"
    again = service.acquire(ask(5, "sim_a,sim_b")).lease
    assert (again.gen, again.state) == (2, State.ACQUIRED)


def test_a_prolog_retry_after_a_crash_mid_acquire_releases_first_then_acquires(
        tmp_path: Path, ledger: Path) -> None:
    path, token = crash_mid_acquire(tmp_path, ledger)
    service = lease_service(tmp_path, [], journal=path)
    lease = service.acquire(ask(5, "sim_a,sim_b")).lease
    assert (lease.gen, lease.state) == (2, State.ACQUIRED)
    assert read_ledger(ledger)[:2] == [("acquire", "sim_a", token), ("release", "sim_a", token)]


def test_recover_leaves_an_acquisition_in_progress_alone(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"ACQUIRE_DELAY": "0.3"})
    worker = threading.Thread(target=service.acquire, args=(ask(),))
    worker.start()
    assert wait_for(lambda: bool(service.journal.active()))
    service.recover()
    worker.join()
    lease = service.journal.current(5)
    assert lease is not None and (lease.gen, lease.state) == (1, State.ACQUIRED)
    assert [e for e, _, _ in read_ledger(ledger)] == ["acquire"]


def test_a_restarted_broker_keeps_the_jobs_token_and_releases_its_qpus(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    lease = service.acquire(ask()).lease
    token = service.job_token(lease)
    service.journal.close()

    restarted = lease_service(tmp_path, [], journal=tmp_path / "journal.sqlite")
    restarted.recover()
    found = restarted.authenticate(token)
    assert found is not None and (found.job_id, found.gen) == (5, 1)
    restarted.release(5)
    assert read_ledger(ledger) == [("acquire", "sim_a", lease.held[0].token),
                                   ("release", "sim_a", lease.held[0].token)]
    assert restarted.authenticate(token) is None


# ---------------------------------------------------------------------------- authenticate

def test_a_token_stops_working_when_the_lease_expires(tmp_path: Path, ledger: Path) -> None:
    clock = Clock()
    service = lease_service(tmp_path, sim_resources(ledger), clock=clock)
    lease = service.acquire(ask(time_limit=60)).lease
    token = service.job_token(lease)
    assert service.authenticate(token) is not None
    clock.now += 60 + EXPIRY_GRACE_SECONDS + 1
    assert service.authenticate(token) is None


def test_the_token_of_a_failed_lease_is_refused(tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger, sim_a={"ACQUIRE_ERROR": "no"})
    lease = service.acquire(ask()).lease
    assert service.authenticate(service.job_token(lease)) is None
    assert service.authenticate(None) is None and service.authenticate("garbage") is None


# ---------------------------------------------------------------------------- environment

SITE = [
    {"name": "ibm_x", "type": "ibm-quantum-compute-service", "environment": {
        "QRMI_IBM_QCS_ENDPOINT": "https://quantum.example/api/v1",
        "QRMI_IBM_QCS_IAM_ENDPOINT": "https://iam.example",
        "QRMI_IBM_QCS_IAM_APIKEY": "site-ibm-apikey-1",
        "QRMI_IBM_QCS_SERVICE_CRN": "crn:v1:site:instance-1::",
        "QRMI_IBM_QCS_SESSION_MODE": "dedicated"}},
    {"name": "ibm_old", "type": "qiskit-runtime-service", "environment": {
        "QRMI_IBM_QRS_ENDPOINT": "https://old-quantum.example/api/v1",
        "QRMI_IBM_QRS_IAM_ENDPOINT": "https://old-iam.example",
        "QRMI_IBM_QRS_IAM_APIKEY": "site-ibm-apikey-2",
        "QRMI_IBM_QRS_SERVICE_CRN": "crn:v1:site:instance-2::"}},
    {"name": "ibm_qs", "type": "ibm-quantum-system", "environment": {
        "QRMI_IBM_QS_ENDPOINT": "https://qs.example",
        "QRMI_IBM_QS_IAM_ENDPOINT": "https://qs-iam.example",
        "QRMI_IBM_QS_IAM_APIKEY": "site-qs-apikey",
        "QRMI_IBM_QS_SERVICE_CRN": "crn:v1:site:qs::",
        "QRMI_IBM_QS_AWS_ACCESS_KEY_ID": "site-s3-access-key",
        "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": "site-s3-secret-key",
        "QRMI_IBM_QS_S3_ENDPOINT": "https://s3.example",
        "QRMI_IBM_QS_S3_BUCKET": "site-bucket",
        "QRMI_IBM_QS_S3_REGION": "us-east-1"}},
    {"name": "EMU_FREE", "type": "pasqal-cloud", "environment": {
        "QRMI_PASQAL_CLOUD_BASE_URL": "https://pasqal.example",
        "QRMI_PASQAL_CLOUD_AUTH_ENDPOINT": "https://auth.pasqal.example/oauth/token",
        "QRMI_PASQAL_CLOUD_PROJECT_ID": "site-project",
        "QRMI_PASQAL_CLOUD_CLIENT_ID": "site-client",
        "QRMI_PASQAL_CLOUD_CLIENT_SECRET": "site-client-secret",
        "QRMI_PASQAL_CLOUD_USERNAME": "site-user",
        "QRMI_PASQAL_CLOUD_PASSWORD": "site-password"}},
    {"name": "iqm", "type": "iqm-server", "environment": {
        "QRMI_IQM_ISA_ENDPOINT": "https://iqm.example", "QRMI_IQM_ISA_TOKEN": "site-iqm-token"}},
    {"name": "felis", "type": "alice-bob-felis", "environment": {
        "QRMI_AB_FELIS_BASE_ENDPOINT": "https://felis.example",
        "QRMI_AB_FELIS_API_KEY": "site-felis-key"}},
]
ENDPOINT_KEYS = ("ENDPOINT", "BASE_URL", "_URL")


@dataclass
class FakeVendor:
    """A vendor for every type: records the settings each acquire was made with."""

    acquired: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, spec: ResourceSpec) -> Any:
        vendor = self

        class Qpu:
            def is_accessible(self) -> bool:
                return True

            def acquire(self) -> str:
                vendor.acquired.append((spec.name, dict(spec.environment)))
                return f"{spec.name}-session-{len(vendor.acquired)}"

            def release(self, token: str) -> None:
                vendor.released.append((spec.name, token))

        return Qpu()


def site_service(tmp_path: Path, vendor: FakeVendor) -> LeaseService:
    return lease_service(tmp_path, SITE, factory=vendor)


def configured_secrets() -> dict[str, str]:
    return {f"{r['name']}_{k}": v for r in SITE for k, v in r["environment"].items()
            if is_secret_key(k)}


def test_the_jobs_environment_holds_no_configured_secret(tmp_path: Path) -> None:
    service = site_service(tmp_path, FakeVendor())
    names = ",".join(r["name"] for r in SITE)
    lease = service.acquire(ask(5, names)).lease
    assert lease.state is State.ACQUIRED, lease.error
    env = service.environment(lease)
    secrets = configured_secrets()
    assert len(secrets) == 12  # every kind of credential of every type is in the test
    leaked = {k: v for k, v in env.items() for s in secrets.values() if s in v}
    assert leaked == {}
    assert service.job_token(lease) in env.values()


def test_the_jobs_endpoints_point_at_the_proxy(tmp_path: Path) -> None:
    service = site_service(tmp_path, FakeVendor())
    lease = service.acquire(ask(5, ",".join(r["name"] for r in SITE))).lease
    env = service.environment(lease)
    endpoints = {k: v for k, v in env.items() if k.endswith(ENDPOINT_KEYS)}
    wrong = {k: v for k, v in endpoints.items()
             if not v.startswith(f"{PUBLIC}/p/{k.split('_QRMI_')[0]}")}
    assert wrong == {}
    assert env["ibm_x_QRMI_IBM_QCS_ENDPOINT"] == f"{PUBLIC}/p/ibm_x/api/v1"
    assert env["ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT"] == f"{PUBLIC}/p/ibm_x"
    assert env["ibm_old_QRMI_IBM_QCS_ENDPOINT"] == f"{PUBLIC}/p/ibm_old/api/v1"
    assert env["ibm_qs_QRMI_IBM_QS_ENDPOINT"] == f"{PUBLIC}/p/ibm_qs"
    assert env["EMU_FREE_QRMI_PASQAL_CLOUD_BASE_URL"] == f"{PUBLIC}/p/EMU_FREE"
    assert env["iqm_QRMI_IQM_ISA_ENDPOINT"] == f"{PUBLIC}/p/iqm"
    assert env["felis_QRMI_AB_FELIS_BASE_ENDPOINT"] == f"{PUBLIC}/p/felis/"  # joined onto
    assert env["ibm_x_QRMI_JOB_ACQUISITION_TOKEN"] == "ibm_x-session-1"
    assert env["QRMI_JOB_QPU_RESOURCES"] == ",".join(r["name"] for r in SITE)
    assert env["ibm_x_QRMI_JOB_TIMEOUT_SECONDS"] == "600"


def test_a_legacy_type_gets_proxy_values_under_its_legacy_names_too(tmp_path: Path) -> None:
    service = site_service(tmp_path, FakeVendor())
    env = service.environment(service.acquire(ask(5, "ibm_old")).lease)
    assert env["ibm_old_QRMI_IBM_QRS_ENDPOINT"] == f"{PUBLIC}/p/ibm_old/api/v1"
    assert env["ibm_old_QRMI_IBM_QRS_IAM_ENDPOINT"] == f"{PUBLIC}/p/ibm_old"
    assert env["ibm_old_QRMI_IBM_QRS_IAM_APIKEY"] == env["ibm_old_QRMI_IBM_QCS_IAM_APIKEY"]
    assert env["ibm_old_QRMI_IBM_QRS_IAM_APIKEY"].startswith("sqpu_5_1_")


def test_accepted_overrides_reach_the_vendor_acquire_and_the_jobs_environment(
        tmp_path: Path) -> None:
    vendor = FakeVendor()
    service = site_service(tmp_path, vendor)
    outcome = service.acquire(ask(5, "ibm_x", overrides=json.dumps(
        {"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}})))
    assert outcome.warnings == []
    assert outcome.lease.overrides == {"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}
    ((_, settings),) = vendor.acquired
    assert settings["QRMI_IBM_QCS_SESSION_MODE"] == "batch"
    env = service.environment(outcome.lease)
    assert env["ibm_x_QRMI_IBM_QCS_SESSION_MODE"] == "batch"


def test_refused_overrides_reach_neither_the_vendor_nor_the_job(tmp_path: Path) -> None:
    vendor = FakeVendor()
    service = site_service(tmp_path, vendor)
    outcome = service.acquire(ask(5, "ibm_x", overrides=json.dumps(
        {"ibm_x": {"QRMI_IBM_QCS_IAM_ENDPOINT": "https://evil.example",
                   "QRMI_IBM_QCS_SESSION_MODE": "forever"}})))
    assert outcome.warnings == [
        "ignoring ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT from your environment: endpoints, "
        "credentials and other site settings come from the site's QPU configuration (only "
        "QRMI_IBM_QCS_SESSION_MODE, QRMI_IBM_QCS_SESSION_MAX_TTL, QRMI_IBM_QCS_TIMEOUT_SECONDS "
        "may be overridden for ibm_x)",
        "ignoring ibm_x_QRMI_IBM_QCS_SESSION_MODE='forever': expected one of dedicated, batch"]
    assert outcome.lease.overrides == {}
    ((_, settings),) = vendor.acquired
    assert settings["QRMI_IBM_QCS_IAM_ENDPOINT"] == "https://iam.example"
    assert settings["QRMI_IBM_QCS_SESSION_MODE"] == "dedicated"
    env = service.environment(outcome.lease)
    assert env["ibm_x_QRMI_IBM_QCS_IAM_ENDPOINT"] == f"{PUBLIC}/p/ibm_x"
    assert "evil" not in json.dumps(env)


def test_the_proxy_uses_the_sites_settings_with_the_accepted_overrides(tmp_path: Path) -> None:
    service = site_service(tmp_path, FakeVendor())
    lease = service.acquire(ask(5, "ibm_x", overrides=json.dumps(
        {"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}))).lease
    settings = service.resource_settings(lease, "ibm_x")
    assert settings is not None
    assert settings["QRMI_IBM_QCS_IAM_APIKEY"] == "site-ibm-apikey-1"
    assert settings["QRMI_IBM_QCS_SESSION_MODE"] == "batch"
    assert service.resource_settings(lease, "iqm") is None  # not the job's QPU


def test_a_jobs_lock_is_kept_while_a_thread_holds_it_however_many_jobs_come_and_go(
        tmp_path: Path, ledger: Path) -> None:
    service = sims(tmp_path, ledger)
    held = service._local_lock(5)
    for job_id in range(100, 10_102):  # enough jobs for any clean-up of idle locks
        service._local_lock(job_id)
    assert service._local_lock(5) is held
