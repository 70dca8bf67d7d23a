"""Acquire exactly once per job in the prolog, release exactly once in the epilog."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurm_qpu.acquire.pipeline import default_factory
from slurm_qpu.lease.coordination import JobView, PublicRecord
from slurm_qpu.lease.from_vendors import run_epilog, run_prolog
from slurm_qpu.lease.store import Lease, LeaseState, LeaseStore
from slurm_qpu.settings import PluginSettings
from slurm_qpu.slurm.commands import SlurmCommandError
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.vendors.common.base import QuantumResource, ResourceSpec
from slurm_qpu.vendors.local_simulator.resource import LocalSimulator

MakeSimConfig = Callable[..., Path]
ReadLedger = Callable[[], list[tuple[str, str, str]]]
WriteJson = Callable[..., Path]

JOB = 42
ONE_NODE = JobFacts(job_id=JOB, node="n1", nodes=("n1",), uid=1000, user="alice")
FIRST = JobFacts(job_id=JOB, node="n1", nodes=("n1", "n2"), uid=1000, user="alice")
SECOND = JobFacts(job_id=JOB, node="n2", nodes=("n1", "n2"), uid=1000, user="alice")
TIMEOUT_MESSAGE = ("no word from the job's first node after 0 s (n1), which acquires the QPUs "
                   "for the whole job; multi-node jobs need PrologFlags=Alloc in slurm.conf")


class FakeBoard:
    """slurmctld as seen by one job: a time limit and the AdminComment record."""

    def __init__(self, time_limit: int | None = 600, record: PublicRecord | None = None,
                 view_error: Exception | None = None,
                 publish_error: Exception | None = None) -> None:
        self.time_limit = time_limit
        self.record = record
        self.view_error = view_error
        self.publish_error = publish_error
        self.published: list[tuple[int, PublicRecord]] = []
        self.views = 0
        self.restart_count = 0

    def view(self, job_id: int) -> JobView:
        self.views += 1
        if self.views > 5:
            raise AssertionError("polled slurmctld more than 5 times")
        if self.view_error:
            raise self.view_error
        return JobView(self.time_limit, self.record, self.restart_count)

    def publish(self, job_id: int, record: PublicRecord) -> None:
        if self.publish_error:
            raise self.publish_error
        self.published.append((job_id, record))
        self.record = record


class CountingFactory:
    """The real factory, counting what it builds and what is released."""

    def __init__(self) -> None:
        self.specs: list[ResourceSpec] = []
        self.releases: list[str] = []

    def __call__(self, spec: ResourceSpec) -> QuantumResource:
        self.specs.append(spec)
        resource = default_factory(spec)
        real_release = resource.release

        def release(token: str) -> None:
            self.releases.append(token)
            real_release(token)

        resource.release = release  # type: ignore[method-assign]
        return resource


def never_called(spec: ResourceSpec) -> QuantumResource:
    # lifecycle catches exceptions of resource code, so also fail through a global record
    UNEXPECTED.append(spec.name)
    raise AssertionError(f"no resource may be built here (asked for {spec.name})")


UNEXPECTED: list[str] = []


@pytest.fixture(autouse=True)
def _no_unexpected_resources() -> Iterator[None]:
    UNEXPECTED.clear()
    yield
    assert UNEXPECTED == [], f"resources built where none may be: {UNEXPECTED}"


def settings(config: Path, **kw: object) -> PluginSettings:
    return PluginSettings(config=config, state_dir="unused", peer_timeout=0.0, **kw)  # type: ignore[arg-type]


def store(tmp_path: Path, node: str = "n1") -> LeaseStore:
    return LeaseStore(tmp_path / "state" / node)


def owner_record(token: str = "tok-owner") -> PublicRecord:
    return PublicRecord("acquired", "n1",
                        [{"name": "sim_a", "type": "local-simulator", "token": token}])


# ---------------------------------------------------------------- --qpu=any: selections


def test_prolog_resolves_a_selection_to_the_least_busy_qpu_and_says_so(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config(sim_a={"QUEUE_DEPTH": "4"}, sim_b={"QUEUE_DEPTH": "1"})
    lease = run_prolog(ONE_NODE, "any:sim_*", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.ACQUIRED
    assert lease.names == ["sim_b"]
    assert [(r.name, r.selected_by) for r in lease.resources] == [("sim_b", "any:sim_*")]
    assert lease.env["QRMI_JOB_QPU_RESOURCES"] == "sim_b"
    assert lease.env["SLURM_QPU_REQUEST"] == "any:sim_*"
    assert [(e, r) for e, r, _ in read_ledger()] == [("acquire", "sim_b")]
    usage: list[object] = []
    run_epilog(ONE_NODE, settings(config), store(tmp_path), on_usage=usage.extend)
    assert [(u.qpu, u.selected_by) for u in usage] == [("sim_b", "any:sim_*")]  # type: ignore[attr-defined]


def test_prolog_fails_the_job_when_no_qpu_matching_the_selection_is_available(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config(sim_a={"STATUS": "maintenance"}, sim_b={"STATUS": "offline"})
    lease = run_prolog(ONE_NODE, "any:sim_*", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == ("--qpu=any:sim_*: no QPU matching any:sim_* is available now "
                           "(sim_a: unavailable (sim_a is maintenance); sim_b: unavailable "
                           "(sim_b is offline))")
    assert read_ledger() == []


def test_other_nodes_take_the_qpu_the_first_node_picked(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    config = sim_config()
    record = PublicRecord("acquired", "n1",
                          [{"name": "sim_b", "type": "local-simulator", "token": "tok-b"}])
    lease = run_prolog(SECOND, "any:sim_*", settings(config), store(tmp_path, "n2"),
                       FakeBoard(record=record), factory=never_called)
    assert lease.names == ["sim_b"]
    assert lease.env["QRMI_JOB_QPU_RESOURCES"] == "sim_b"
    assert lease.env["sim_b_QRMI_JOB_ACQUISITION_TOKEN"] == "tok-b"


# ---------------------------------------------------------------- JobFacts


def test_first_node_is_the_first_of_the_job_nodes() -> None:
    assert SECOND.first_node == "n1"
    assert SECOND.multi_node is True
    assert ONE_NODE.multi_node is False


def test_job_without_node_list_is_its_own_first_node() -> None:
    job = JobFacts(job_id=1, node="solo", nodes=())
    assert job.first_node == "solo"
    assert job.multi_node is False


# ---------------------------------------------------------------- single node prolog


def test_single_node_prolog_acquires_and_records_the_lease(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    board = FakeBoard(time_limit=600)
    lease = run_prolog(ONE_NODE, "sim_a", settings(sim_config()), store(tmp_path), board)
    [(event, resource, token)] = read_ledger()
    assert (event, resource) == ("acquire", "sim_a")
    assert lease.state is LeaseState.ACQUIRED
    assert lease.owner is True
    assert lease.names == ["sim_a"]
    assert [(r.name, r.type, r.token) for r in lease.resources] == [
        ("sim_a", "local-simulator", token)]
    assert (lease.uid, lease.user, lease.error) == (1000, "alice", None)
    assert lease.env["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == token
    assert lease.env["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "600"
    assert lease.env["QRMI_JOB_QPU_RESOURCES"] == "sim_a"
    assert lease.env["QRMI_JOB_UID"] == "1000"
    assert lease.env_defaults["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == "5"
    assert store(tmp_path).load(JOB) == lease
    assert board.published == []  # nobody else to tell


def test_second_prolog_on_the_same_node_is_a_no_op(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config()
    first = run_prolog(ONE_NODE, "sim_a,sim_b", settings(config), store(tmp_path), FakeBoard())
    again = run_prolog(ONE_NODE, "sim_a,sim_b", settings(config), store(tmp_path), FakeBoard(),
                       factory=never_called)
    assert [e for e, _, _ in read_ledger()] == ["acquire", "acquire"]
    assert again == first


def test_prolog_acquires_in_request_order_and_passes_job_context(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    factory = CountingFactory()
    lease = run_prolog(ONE_NODE, "sim_b, sim_a", settings(sim_config()), store(tmp_path),
                       FakeBoard(time_limit=300), factory=factory)
    assert [s.name for s in factory.specs] == ["sim_b", "sim_a"]
    assert lease.env["QRMI_JOB_QPU_RESOURCES"] == "sim_b,sim_a"
    assert factory.specs[0].job.job_id == JOB
    assert factory.specs[0].job.uid == 1000
    assert factory.specs[0].job.user == "alice"
    assert factory.specs[0].job.timeout_seconds == 300


def test_concurrent_prologs_on_one_node_acquire_once(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config()
    leases: list[Lease] = []

    def prolog() -> None:
        leases.append(run_prolog(ONE_NODE, "sim_a", settings(config), store(tmp_path),
                                 FakeBoard()))

    threads = [threading.Thread(target=prolog) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e for e, _, _ in read_ledger()] == ["acquire"]
    assert len({lease.resources[0].token for lease in leases}) == 1


def test_job_without_time_limit_gets_the_eight_hour_timeout(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    lease = run_prolog(ONE_NODE, "sim_a", settings(sim_config()), store(tmp_path),
                       FakeBoard(time_limit=None))
    assert lease.env["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "28800"


def test_owner_that_cannot_read_the_job_still_acquires_with_default_timeout(
    tmp_path: Path, sim_config: MakeSimConfig, caplog: pytest.LogCaptureFixture
) -> None:
    board = FakeBoard(view_error=SlurmCommandError("scontrol: slurmctld down"))
    with caplog.at_level(logging.WARNING, logger="slurm_qpu"):
        lease = run_prolog(ONE_NODE, "sim_a", settings(sim_config()), store(tmp_path), board)
    assert lease.state is LeaseState.ACQUIRED
    assert lease.env["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "28800"
    assert (f"job {JOB}: cannot read job details (scontrol: slurmctld down); using the "
            "default timeout") in caplog.messages


def test_plugstack_extra_env_reaches_the_lease(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    lease = run_prolog(ONE_NODE, "sim_a",
                       settings(sim_config(), extra_env={"https_proxy": "http://p:3128"}),
                       store(tmp_path), FakeBoard())
    assert lease.env["https_proxy"] == "http://p:3128"


def test_prolog_after_a_released_lease_acquires_again(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    s = settings(sim_config())
    run_prolog(ONE_NODE, "sim_a", s, store(tmp_path), FakeBoard())
    run_epilog(ONE_NODE, s, store(tmp_path), backoff=0)
    lease = run_prolog(ONE_NODE, "sim_a", s, store(tmp_path), FakeBoard())
    assert [e for e, _, _ in read_ledger()] == ["acquire", "release", "acquire"]
    assert lease.state is LeaseState.ACQUIRED
    assert lease.resources[0].token == read_ledger()[2][2]


# ---------------------------------------------------------------- failures at prolog


def test_unknown_name_gives_a_failed_lease_with_the_message(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    lease = run_prolog(ONE_NODE, "sim_a,typo", settings(sim_config()), store(tmp_path),
                       FakeBoard(), factory=never_called)
    assert lease.state is LeaseState.FAILED
    assert lease.error == "--qpu=sim_a,typo: unknown QPU name(s) typo; known: sim_a,sim_b"
    assert lease.resources == []
    assert read_ledger() == []
    assert store(tmp_path).load(JOB) == lease


def test_empty_request_gives_a_failed_lease(tmp_path: Path, sim_config: MakeSimConfig) -> None:
    lease = run_prolog(ONE_NODE, " , ", settings(sim_config()), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == ("--qpu= , : no QPU name given; use --qpu=NAME[,NAME...] "
                           "(names: slurm-qpu list)")


def test_missing_config_gives_a_failed_lease(tmp_path: Path) -> None:
    config = tmp_path / "none.json"
    lease = run_prolog(ONE_NODE, "sim_a", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == f"--qpu=sim_a: {config}: file not found"


def test_vendor_acquire_failure_gives_its_message_and_rolls_back_earlier_qpus(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config(sim_b={"ACQUIRE_ERROR": "quota exceeded for project"})
    lease = run_prolog(ONE_NODE, "sim_a,sim_b", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == "cannot acquire QPU sim_b: quota exceeded for project"
    assert lease.resources == []
    assert lease.env == {}
    [acquire, release] = read_ledger()
    assert acquire[:2] == ("acquire", "sim_a")
    assert release == ("release", "sim_a", acquire[2])


def test_qpu_in_maintenance_gives_not_accessible(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config(sim_a={"STATUS": "maintenance"})
    lease = run_prolog(ONE_NODE, "sim_a", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == ("cannot acquire QPU sim_a: not accessible now (offline or in "
                           "maintenance): sim_a is maintenance")
    assert read_ledger() == []


def test_not_accessible_qpu_gives_the_vendors_reason_when_known(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    def factory(spec: ResourceSpec) -> QuantumResource:
        resource = default_factory(spec)
        resource.is_accessible = lambda: False  # type: ignore[method-assign]
        resource.status_reason = "Scheduled QPU maintenance until 14:00"  # type: ignore[attr-defined]
        return resource

    lease = run_prolog(ONE_NODE, "sim_a", settings(sim_config()), store(tmp_path), FakeBoard(),
                       factory=factory)
    assert lease.error == ("cannot acquire QPU sim_a: not accessible now (offline or in "
                           "maintenance): Scheduled QPU maintenance until 14:00")


def test_unimplemented_type_gives_a_failed_lease(
        tmp_path: Path, write_json: WriteJson, monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_qpu.vendors import builtin

    monkeypatch.delitem(builtin.vendors(), "ibm-quantum-system")
    config = write_json({"resources": [{"name": "ibm_fez", "type": "ibm-quantum-system"}]})
    lease = run_prolog(ONE_NODE, "ibm_fez", settings(config), store(tmp_path), FakeBoard())
    assert lease.state is LeaseState.FAILED
    assert lease.error == ("cannot acquire QPU ibm_fez: resource type 'ibm-quantum-system' is "
                           "not implemented by this version of slurm-qpu")


def test_unexpected_exception_from_a_type_names_its_class(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    def buggy(spec: ResourceSpec) -> QuantumResource:
        raise KeyError("session_id")

    lease = run_prolog(ONE_NODE, "sim_a", settings(sim_config()), store(tmp_path), FakeBoard(),
                       factory=buggy)
    assert lease.error == "cannot acquire QPU sim_a: KeyError: 'session_id'"


def test_legacy_type_is_acquired_under_its_current_name(
    tmp_path: Path, write_json: WriteJson, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_json({"resources": [{"name": "da", "type": "direct-access",
                                        "environment": {"QRMI_IBM_DA_ENDPOINT": "http://d"}}]})
    specs: list[ResourceSpec] = []

    def factory(spec: ResourceSpec) -> QuantumResource:
        specs.append(spec)
        return LocalSimulator(spec)

    with caplog.at_level(logging.INFO, logger="slurm_qpu"):
        lease = run_prolog(ONE_NODE, "da", settings(config), store(tmp_path), FakeBoard(),
                           factory=factory)
    assert specs[0].type == "ibm-quantum-system"
    assert dict(specs[0].environment) == {"QRMI_IBM_DA_ENDPOINT": "http://d",
                                          "QRMI_IBM_QS_ENDPOINT": "http://d"}
    assert lease.env["QRMI_JOB_QPU_TYPES"] == "ibm-quantum-system"
    assert "QPU da: type 'direct-access' is deprecated; using 'ibm-quantum-system'" in \
        caplog.messages


# ---------------------------------------------------------------- multi-node


def test_multi_node_owner_acquires_and_publishes_a_public_record(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config(sim_a={"QRMI_SECRET_API_KEY": "hunter2"})
    board = FakeBoard()
    lease = run_prolog(FIRST, "sim_a", settings(config), store(tmp_path), board)
    [(_, _, token)] = read_ledger()
    assert lease.owner is True
    assert board.published == [(JOB, PublicRecord(
        "acquired", "n1", [{"name": "sim_a", "type": "local-simulator", "token": token}]))]
    encoded = board.published[0][1].encode()
    body = base64.urlsafe_b64decode(encoded.split(":", 2)[2] + "==").decode()
    assert "hunter2" not in body  # credentials never leave the node
    assert json.loads(body)["error"] is None


def test_multi_node_owner_publishes_its_failure(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    config = sim_config(sim_a={"ACQUIRE_ERROR": "device busy"})
    board = FakeBoard()
    run_prolog(FIRST, "sim_a", settings(config), store(tmp_path), board)
    assert board.published == [(JOB, PublicRecord("failed", "n1", [],
                                                  "cannot acquire QPU sim_a: device busy"))]


def test_multi_node_owner_publishes_a_bad_request(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    board = FakeBoard()
    run_prolog(FIRST, "typo", settings(sim_config()), store(tmp_path), board)
    assert board.published == [(JOB, PublicRecord(
        "failed", "n1", [], "--qpu=typo: unknown QPU name(s) typo; known: sim_a,sim_b"))]


def test_owner_keeps_its_lease_when_publishing_fails(
    tmp_path: Path, sim_config: MakeSimConfig, caplog: pytest.LogCaptureFixture
) -> None:
    board = FakeBoard(publish_error=SlurmCommandError("update denied"))
    with caplog.at_level(logging.ERROR, logger="slurm_qpu"):
        lease = run_prolog(FIRST, "sim_a", settings(sim_config()), store(tmp_path), board)
    assert lease.state is LeaseState.ACQUIRED
    assert (f"job {JOB}: cannot tell the job's other nodes about its QPUs: update denied"
            in caplog.messages)


def test_non_owner_joins_the_owner_record_without_acquiring(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    board = FakeBoard(record=owner_record("tok-owner"), time_limit=900)
    lease = run_prolog(SECOND, "sim_a", settings(sim_config()), store(tmp_path, "n2"), board,
                       factory=never_called)
    assert lease.state is LeaseState.ACQUIRED
    assert lease.owner is False
    assert (lease.node, lease.owner_node) == ("n2", "n1")
    assert [(r.name, r.token) for r in lease.resources] == [("sim_a", "tok-owner")]
    assert lease.env["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == "tok-owner"
    assert lease.env["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "900"
    assert lease.env_defaults["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == "5"
    assert board.published == []
    assert read_ledger() == []


def test_owner_and_member_end_with_the_same_tokens(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    config = sim_config()
    board = FakeBoard()
    first = run_prolog(FIRST, "sim_a,sim_b", settings(config), store(tmp_path, "n1"), board)
    second = run_prolog(SECOND, "sim_a,sim_b", settings(config), store(tmp_path, "n2"), board,
                        factory=never_called)
    assert first.env == second.env
    assert [e for e, _, _ in read_ledger()] == ["acquire", "acquire"]


def test_non_owner_gets_the_owner_failure_message(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    board = FakeBoard(record=PublicRecord("failed", "n1", [],
                                          "cannot acquire QPU sim_a: device busy"))
    lease = run_prolog(SECOND, "sim_a", settings(sim_config()), store(tmp_path, "n2"), board,
                       factory=never_called)
    assert lease.state is LeaseState.FAILED
    assert lease.error == "cannot acquire QPU sim_a: device busy"


def test_non_owner_times_out_with_a_hint_about_prolog_flags(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    lease = run_prolog(SECOND, "sim_a", settings(sim_config()), store(tmp_path, "n2"),
                       FakeBoard(record=None), factory=never_called)
    assert lease.state is LeaseState.FAILED
    assert lease.error == TIMEOUT_MESSAGE


def test_non_owner_that_cannot_reach_slurmctld_fails(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    board = FakeBoard(view_error=SlurmCommandError("scontrol show job -o 42: timed out"))
    lease = run_prolog(SECOND, "sim_a", settings(sim_config()), store(tmp_path, "n2"), board,
                       factory=never_called)
    assert lease.error == ("cannot learn the QPU lease from n1: scontrol show job -o 42: "
                           "timed out")


def test_non_owner_with_bad_request_does_not_wait_or_publish(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    board = FakeBoard()
    lease = run_prolog(SECOND, "typo", settings(sim_config()), store(tmp_path, "n2"), board)
    assert lease.error == "--qpu=typo: unknown QPU name(s) typo; known: sim_a,sim_b"
    assert (board.views, board.published) == (0, [])


# ---------------------------------------------------------------- epilog


def test_epilog_releases_exactly_once(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    s = settings(sim_config())
    run_prolog(ONE_NODE, "sim_a,sim_b", s, store(tmp_path), FakeBoard())
    lease = run_epilog(ONE_NODE, s, store(tmp_path), backoff=0)
    assert lease is not None
    assert lease.state is LeaseState.RELEASED
    assert lease.released_at is not None
    assert lease.release_errors == []
    again = run_epilog(ONE_NODE, s, store(tmp_path), factory=never_called, backoff=0)
    assert again is not None and again.state is LeaseState.RELEASED
    ledger = read_ledger()
    assert [(e, r) for e, r, _ in ledger] == [("acquire", "sim_a"), ("acquire", "sim_b"),
                                             ("release", "sim_a"), ("release", "sim_b")]
    assert ledger[0][2] == ledger[2][2]
    assert ledger[1][2] == ledger[3][2]
    stored = store(tmp_path).load(JOB)
    assert stored is not None and stored.state is LeaseState.RELEASED


def test_non_owner_epilog_never_releases(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    s = settings(sim_config())
    run_prolog(SECOND, "sim_a", s, store(tmp_path, "n2"), FakeBoard(record=owner_record()),
               factory=never_called)
    lease = run_epilog(SECOND, s, store(tmp_path, "n2"), factory=never_called, backoff=0)
    assert lease is not None and lease.state is LeaseState.RELEASED
    assert lease.release_errors == []


def test_epilog_of_failed_lease_releases_nothing(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    s = settings(sim_config())
    run_prolog(ONE_NODE, "typo", s, store(tmp_path), FakeBoard())
    lease = run_epilog(ONE_NODE, s, store(tmp_path), factory=never_called, backoff=0)
    assert lease is not None
    assert lease.state is LeaseState.RELEASED
    assert lease.release_errors == []
    assert lease.error == "--qpu=typo: unknown QPU name(s) typo; known: sim_a,sim_b"


def test_release_failure_is_recorded_after_all_retries(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger,
    caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(sim_config(sim_a={"RELEASE_ERROR": "session not found"}))
    run_prolog(ONE_NODE, "sim_a", s, store(tmp_path), FakeBoard())
    [(_, _, token)] = read_ledger()
    factory = CountingFactory()
    with caplog.at_level(logging.ERROR, logger="slurm_qpu"):
        lease = run_epilog(ONE_NODE, s, store(tmp_path), factory=factory, retries=3, backoff=0)
    message = f"cannot release QPU sim_a (token {token}) after 3 attempts: session not found"
    assert factory.releases == [token, token, token]
    assert lease is not None
    assert lease.state is LeaseState.RELEASED
    assert lease.release_errors == [message]
    assert f"job {JOB}: {message}" in caplog.messages
    stored = store(tmp_path).load(JOB)
    assert stored is not None and stored.release_errors == [message]


def test_release_succeeds_on_a_later_attempt(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    s = settings(sim_config())
    run_prolog(ONE_NODE, "sim_a", s, store(tmp_path), FakeBoard())
    attempts: list[str] = []

    class Flaky(LocalSimulator):
        def release(self, token: str) -> None:
            attempts.append(token)
            if len(attempts) < 2:
                raise OSError("connection reset")

    lease = run_epilog(ONE_NODE, s, store(tmp_path), factory=Flaky, retries=3, backoff=0)
    assert len(attempts) == 2
    assert lease is not None and lease.release_errors == []


def test_epilog_without_lease_returns_none(tmp_path: Path, sim_config: MakeSimConfig) -> None:
    assert run_epilog(ONE_NODE, settings(sim_config()), store(tmp_path),
                      factory=never_called, backoff=0) is None


def test_epilog_with_unreadable_config_releases_with_the_recorded_type(
    tmp_path: Path, sim_config: MakeSimConfig
) -> None:
    config = sim_config()
    s = settings(config)
    run_prolog(ONE_NODE, "sim_a", s, store(tmp_path), FakeBoard())
    config.unlink()
    factory = CountingFactory()
    lease = run_epilog(ONE_NODE, s, store(tmp_path), factory=factory, backoff=0)
    assert [(spec.name, spec.type, dict(spec.environment)) for spec in factory.specs] == [
        ("sim_a", "local-simulator", {})]
    assert lease is not None and lease.state is LeaseState.RELEASED
    assert factory.releases == [lease.resources[0].token]


def test_requeued_job_member_does_not_join_the_previous_runs_record(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    s = settings(sim_config())
    board = FakeBoard()  # slurmctld keeps the job's AdminComment across a requeue
    run_prolog(FIRST, "sim_a", s, store(tmp_path, "n1"), board)
    run_prolog(SECOND, "sim_a", s, store(tmp_path, "n2"), board, factory=never_called)
    run_epilog(FIRST, s, store(tmp_path, "n1"), backoff=0)
    run_epilog(SECOND, s, store(tmp_path, "n2"), factory=never_called, backoff=0)
    [(_, _, old_token), released] = read_ledger()
    assert released == ("release", "sim_a", old_token)
    # requeued: the second node's prolog happens to run before the first node's
    board.restart_count, board.views = 1, 0
    quick = dataclasses.replace(s, peer_timeout=0.3)
    lease = run_prolog(SECOND, "sim_a", quick, store(tmp_path, "n2"), board,
                       factory=never_called)
    assert old_token not in [r.token for r in lease.resources]
    assert lease.error is not None and "no word from the job's first node" in lease.error


def test_requeued_job_member_joins_the_new_runs_record(
    tmp_path: Path, sim_config: MakeSimConfig, read_ledger: ReadLedger
) -> None:
    s = settings(sim_config())
    board = FakeBoard()
    board.restart_count = 1
    run_prolog(FIRST, "sim_a", s, store(tmp_path, "n1"), board)
    assert board.published[-1][1].run == 1
    lease = run_prolog(SECOND, "sim_a", s, store(tmp_path, "n2"), board, factory=never_called)
    [(_, _, token)] = read_ledger()
    assert [r.token for r in lease.resources] == [token]
