"""--qpu=any:FILTER: parsing, submit-time checks, and picking the least busy QPU at start."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_qpu.acquire.pipeline import default_factory
from slurm_qpu.acquire.resolve import resolve_request
from slurm_qpu.acquire.vendor_status import qubits_in_target
from slurm_qpu.config import load_config
from slurm_qpu.lease.coordination import JobBoard, JobView, PublicRecord
from slurm_qpu.lease.from_vendors import run_prolog
from slurm_qpu.lease.store import Lease, LeaseState, LeaseStore
from slurm_qpu.request.names import RequestError
from slurm_qpu.request.selection import (
    UNKNOWN_PLACEMENT,
    Candidate,
    Known,
    Placement,
    Selection,
    check_request,
    choose,
    is_selection,
    parse_selection,
)
from slurm_qpu.settings import PluginSettings
from slurm_qpu.slurm.commands import SlurmCommandError
from slurm_qpu.slurm.job import JobFacts

MakeSimConfig = Callable[..., Path]

KNOWN = [Known("ibm_a", "ibm-quantum-system", 127, False),
         Known("ibm_b", "ibm-quantum-system", None, False),
         Known("sim_a", "local-simulator", 5, True)]


# ---------------------------------------------------------------- parsing


def test_an_any_item_or_a_constraint_is_a_selection_a_name_is_not() -> None:
    assert is_selection("any:ibm_*")
    assert is_selection("min_qubits=100")
    assert not is_selection("ibm_a")


def test_selection_terms_follow_qrmi_filter_strings() -> None:
    sel = parse_selection("any:ibm_*&min_qubits=100&is_simulator=false&status=any")
    assert sel == Selection("any:ibm_*&min_qubits=100&is_simulator=false&status=any",
                            name="ibm_*", min_qubits=100, is_simulator=False, status="any")
    assert parse_selection("any:name=sim_?&type=local-simulator&num_qubits=5") == Selection(
        "any:name=sim_?&type=local-simulator&num_qubits=5", name="sim_?",
        type="local-simulator", num_qubits=5)


def test_bare_constraint_selects_among_all_qpus() -> None:
    assert parse_selection("min_qubits=20").name == "*"


@pytest.mark.parametrize(("item", "message"), [
    ("any:", "any:: say what to select, e.g. any:ibm_* or any:min_qubits=100"),
    ("any:colour=red", "any:colour=red: unknown filter key 'colour'; use name, type, "
                       "num_qubits, min_qubits, is_simulator, status"),
    ("any:min_qubits=lots", "any:min_qubits=lots: min_qubits must be a whole number, "
                            "not 'lots'"),
    ("any:num_qubits=-3", "any:num_qubits=-3: num_qubits must be a whole number, not '-3'"),
    ("any:type=", "any:type=: type has no value"),
    ("any:ibm_*&name=x", "any:ibm_*&name=x: name given twice"),
    ("any:is_simulator=maybe", "any:is_simulator=maybe: is_simulator must be true or false, "
                               "not 'maybe'"),
    ("any:status=busy", "any:status=busy: status must be online or any, not 'busy'"),
])
def test_malformed_selection_is_refused_with_what_is_wrong(item: str, message: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_selection(item)
    assert str(err.value) == message


# ---------------------------------------------------------------- submit time


def test_submit_accepts_a_selection_that_could_match() -> None:
    check_request(["any:ibm_*&min_qubits=100"], KNOWN)  # ibm_a (127), ibm_b (unknown)
    check_request(["sim_a", "any:is_simulator=false"], KNOWN)


def test_submit_refuses_a_selection_nothing_configured_can_match() -> None:
    with pytest.raises(RequestError) as err:
        check_request(["any:pasqal_*"], KNOWN)
    assert str(err.value) == "no configured QPU matches any:pasqal_*; known: ibm_a,ibm_b,sim_a"


def test_submit_refuses_too_many_declared_qubits_only_when_no_count_is_unknown() -> None:
    with pytest.raises(RequestError, match=r"no configured QPU matches any:sim_\?&min_qubits=6"):
        check_request(["any:sim_?&min_qubits=6"], KNOWN)
    check_request(["any:ibm_?&min_qubits=1000"], KNOWN)  # ibm_b's count is not declared


def test_submit_still_names_unknown_plain_names_next_to_a_selection() -> None:
    with pytest.raises(RequestError, match=r"unknown QPU name\(s\) typo; known"):
        check_request(["typo", "any:ibm_*"], KNOWN)


# ---------------------------------------------------------------- choosing


def cand(name: str, **kw: object) -> Candidate:
    base: dict[str, object] = {"type": "ibm-quantum-system", "state": "online",
                               "num_qubits": 127, "is_simulator": False}
    base.update(kw)
    return Candidate(name, **base)  # type: ignore[arg-type]


def test_least_busy_is_fewest_cluster_jobs_then_shortest_queue_then_config_order() -> None:
    sel = parse_selection("any:ibm_*")
    assert choose(sel, [cand("ibm_a", active_jobs=1), cand("ibm_b", queue_depth=50)]).name \
        == "ibm_b"
    assert choose(sel, [cand("ibm_a", queue_depth=9), cand("ibm_b", queue_depth=2)]).name \
        == "ibm_b"
    assert choose(sel, [cand("ibm_a"), cand("ibm_b")]).name == "ibm_a"


def test_unavailable_capped_and_too_small_qpus_are_passed_over_with_reasons() -> None:
    sel = parse_selection("any:ibm_*&min_qubits=100")
    with pytest.raises(RequestError) as err:
        choose(sel, [cand("ibm_a", state="unavailable", reason="maintenance"),
                     cand("ibm_b", active_jobs=1, max_jobs=1),
                     cand("ibm_c", num_qubits=27), cand("ibm_d", num_qubits=None),
                     cand("ibm_e")], taken=["ibm_e"])
    assert str(err.value) == (
        "no QPU matching any:ibm_*&min_qubits=100 is available now (ibm_a: unavailable "
        "(maintenance); ibm_b: held by 1 job(s), its limit; ibm_c: 27 qubits; ibm_d: qubit "
        "count unknown; ibm_e: already chosen)")


def test_status_any_accepts_a_qpu_the_vendor_reports_unavailable() -> None:
    sel = parse_selection("any:ibm_*&status=any")
    assert choose(sel, [cand("ibm_a", state="unavailable")]).name == "ibm_a"


@pytest.mark.parametrize(("type_name", "target", "qubits"), [
    ("ibm-quantum-compute-service", {"configuration": {"n_qubits": 156}, "properties": {}},
     156),
    ("ibm-quantum-system", {"configuration": {"n_qubits": 133}}, 133),
    ("local-simulator", {"num_qubits": 5}, 5),
    ("iqm-server", {"static_quantum_architecture": {"qubits": ["QB1", "QB2", "QB3"]}}, 3),
    ("pasqal-cloud", [{"device_type": "FRESNEL", "specs": json.dumps({"max_atom_num": 25})}],
     25),
    ("pasqal-local", [{"specs": {"max_atom_num": 61}}], 61),
    ("ibm-quantum-compute-service", {"something": "else"}, None),
    ("alice-bob-felis", {"num_qubits": 1}, 1),
])
def test_qubit_count_is_read_from_each_vendor_s_target(type_name: str, target: object,
                                                       qubits: int | None) -> None:
    assert qubits_in_target(type_name, json.dumps(target)) == qubits


# ---------------------------------------------------------------- resolving at start


def test_resolve_keeps_names_and_picks_the_least_busy_matching_qpu(
        sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config(sim_a={"QUEUE_DEPTH": "7"}, sim_b={"QUEUE_DEPTH": "2"},
                                    sim_c={"QUEUE_DEPTH": "0", "STATUS": "maintenance"}))
    names, selected = resolve_request(["any:sim_*"], config, default_factory)
    assert (names, selected) == (["sim_b"], {"sim_b": "any:sim_*"})


def test_resolve_asks_the_qpu_for_its_qubits_when_the_config_does_not_say(
        sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config())  # sim_a 5 qubits, sim_b 20
    assert resolve_request(["any:min_qubits=10"], config, default_factory)[0] == ["sim_b"]


def test_resolve_never_picks_a_qpu_the_request_names_itself(sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config())
    names, _ = resolve_request(["any:sim_*", "sim_a"], config, default_factory)
    assert names == ["sim_b", "sim_a"]


def test_resolve_counts_the_broker_s_leases_and_keeps_max_jobs(
        sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config())
    assert resolve_request(["any:sim_*"], config, default_factory,
                           active_jobs=lambda: {"sim_a": 1})[0] == ["sim_b"]
    with pytest.raises(RequestError, match="sim_a: held by 1 job"):
        resolve_request(["any:sim_*"], config, default_factory,
                        active_jobs=lambda: {"sim_a": 1, "sim_b": 1})


def test_a_selection_never_picks_a_qpu_the_site_s_policy_keeps_from_the_job(
        write_json: Callable[..., Path]) -> None:
    config = load_config(write_json({"resources": [
        {"name": "sim_a", "type": "local-simulator",
         "slurm": {"partitions": ["quantum"], "accounts": ["physics"]}},
        {"name": "sim_b", "type": "local-simulator", "environment": {
            "QRMI_LOCAL_SIM_QUEUE_DEPTH": "9"}}]}))
    debug = Placement(partition="debug", account="physics", qos="normal")
    assert resolve_request(["any:sim_*"], config, default_factory, placement=debug)[0] == \
        ["sim_b"]
    quantum = Placement(partition="quantum", account="physics", qos="normal")
    assert resolve_request(["any:sim_*"], config, default_factory, placement=quantum)[0] == \
        ["sim_a"]
    with pytest.raises(RequestError) as err:
        resolve_request(["any:sim_a"], config, default_factory,
                        placement=Placement("quantum", "chemistry", "normal"))
    assert str(err.value) == ("no QPU matching any:sim_a is available now (sim_a: not for "
                              "account chemistry (allowed: physics))")


# ---------------------------------------------------------------- where the job runs unknown


POLICY = {"partitions": ["quantum"]}


def policy_config(write_json: Callable[..., Path], **slurm: dict[str, object]) -> Path:
    """sim_a with a partition policy (and the shorter queue, so a selection would take it
    first), sim_b with none."""
    return write_json({"resources": [
        {"name": "sim_a", "type": "local-simulator", "slurm": slurm.get("sim_a", POLICY)},
        {"name": "sim_b", "type": "local-simulator", "slurm": slurm.get("sim_b", {}),
         "environment": {"QRMI_LOCAL_SIM_QUEUE_DEPTH": "9"}}]})


def test_without_placement_a_selection_passes_over_the_qpus_with_a_policy(
        write_json: Callable[..., Path]) -> None:
    # squeue failed (the broker passes None then): the policy of sim_a cannot be checked
    config = load_config(policy_config(write_json))
    assert resolve_request(["any:sim_*"], config, default_factory)[0] == ["sim_b"]
    assert resolve_request(["any:sim_*"], config, default_factory,
                           placement=UNKNOWN_PLACEMENT)[0] == ["sim_b"]
    with pytest.raises(RequestError) as err:
        resolve_request(["any:sim_a"], config, default_factory)
    assert str(err.value) == ("no QPU matching any:sim_a is available now (sim_a: its "
                              "partition/account/QOS policy cannot be checked: squeue failed)")


@pytest.mark.parametrize("policy", [{"partitions": ["quantum"]}, {"accounts": ["physics"]},
                                    {"qos": ["high"]}, {"accounts": []}])
def test_every_kind_of_policy_makes_a_qpu_unusable_when_placement_is_unknown(
        write_json: Callable[..., Path], policy: dict[str, object]) -> None:
    config = load_config(policy_config(write_json, sim_a=policy))
    assert resolve_request(["any:sim_*"], config, default_factory)[0] == ["sim_b"]


def test_a_qpu_without_policy_is_still_chosen_when_placement_is_unknown(
        write_json: Callable[..., Path]) -> None:
    config = load_config(policy_config(write_json, sim_a={"max_jobs": 2}))
    assert resolve_request(["any:sim_*"], config, default_factory)[0] == ["sim_a"]


class SqueueDown:
    """slurmctld as the prolog sees it when squeue fails."""

    def view(self, job_id: int) -> JobView:
        raise SlurmCommandError("squeue: slurm_load_jobs error: Unable to contact slurm "
                                "controller")

    def publish(self, job_id: int, record: PublicRecord) -> None:
        raise AssertionError("a single-node job publishes nothing")


class Squeue:
    """slurmctld's record of the job, as ``squeue --json`` gives it."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement

    def view(self, job_id: int) -> JobView:
        return JobView(600, None, 0, self.placement)

    def publish(self, job_id: int, record: PublicRecord) -> None:
        raise AssertionError("a single-node job publishes nothing")


ONE_NODE = JobFacts(job_id=42, node="n1", nodes=("n1",), uid=1000, user="alice")


def direct_prolog(tmp_path: Path, config: Path, request: str, board: JobBoard,
                  scontrol: str = "scontrol") -> Lease:
    settings = PluginSettings(config=config, state_dir="unused", scontrol=scontrol)
    return run_prolog(ONE_NODE, request, settings, LeaseStore(tmp_path / "state"), board)


def test_direct_mode_prolog_passes_over_qpus_with_a_policy_when_squeue_fails(
        tmp_path: Path, write_json: Callable[..., Path]) -> None:
    config = policy_config(write_json)
    lease = direct_prolog(tmp_path, config, "any:sim_*", SqueueDown())
    assert (lease.state, lease.names) == (LeaseState.ACQUIRED, ["sim_b"])
    failed = direct_prolog(tmp_path / "2", config, "any:sim_a", SqueueDown())
    assert failed.state is LeaseState.FAILED
    assert failed.error == ("--qpu=any:sim_a: no QPU matching any:sim_a is available now "
                            "(sim_a: its partition/account/QOS policy cannot be checked: "
                            "squeue failed)")


# ---------------------------------------------------------------- named QPUs at start


def test_a_named_qpu_is_acquired_only_where_its_policy_allows(
        write_json: Callable[..., Path]) -> None:
    # job_submit.lua checked some --qpu value; this is the one being acquired
    config = load_config(policy_config(write_json))
    quantum = Placement("quantum", "physics", "normal")
    assert resolve_request(["sim_a"], config, default_factory, placement=quantum) == \
        (["sim_a"], {})
    with pytest.raises(RequestError) as err:
        resolve_request(["sim_b", "sim_a"], config, default_factory,
                        placement=Placement("debug", "physics", "normal"))
    assert str(err.value) == "QPU sim_a: not for partition debug (allowed: quantum)"
    with pytest.raises(RequestError) as err:
        resolve_request(["sim_a"], config, default_factory)  # squeue failed
    assert str(err.value) == ("QPU sim_a: its partition/account/QOS policy cannot be "
                              "checked: squeue failed")
    assert resolve_request(["sim_b"], config, default_factory) == (["sim_b"], {})


LICENSE_REFUSAL = ("QPU sim_a: the job does not hold its license qpu_sim_a, which "
                   "job_submit.lua adds to every job that names the QPU: the --qpu value read "
                   "at the job's start is not the one slurmctld checked (more than one --qpu "
                   "value in the job's SPANK environment?)")


def test_a_named_qpu_whose_license_the_job_does_not_hold_is_refused(
        sim_config: MakeSimConfig) -> None:
    # slurmctld checked sim_b (and gave the job its license); the prolog read sim_a
    config = load_config(sim_config())
    held = Placement("normal", "physics", "normal", licenses=frozenset({"qpu_sim_b"}))
    asked: list[int] = []

    def licensed() -> set[str]:
        asked.append(1)
        return {"qpu_sim_a", "qpu_sim_b"}

    with pytest.raises(RequestError) as err:
        resolve_request(["sim_a"], config, default_factory, placement=held, licensed=licensed)
    assert str(err.value) == LICENSE_REFUSAL
    assert resolve_request(["sim_b"], config, default_factory, placement=held,
                           licensed=licensed) == (["sim_b"], {})
    assert len(asked) == 1  # slurmctld's licenses are asked only when one is missing
    # a selection brings no license: it is not asked for one
    assert resolve_request(["any:sim_a"], config, default_factory, placement=held,
                           licensed=licensed)[0] == ["sim_a"]


def test_a_site_without_qpu_licenses_needs_none(sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config())
    none = Placement("normal", "physics", "normal", licenses=frozenset())
    assert resolve_request(["sim_a"], config, default_factory, placement=none,
                           licensed=lambda: {"matlab"})[0] == ["sim_a"]
    # and a record without licenses (an older squeue) holds nothing against the job
    assert resolve_request(["sim_a"], config, default_factory,
                           placement=Placement("normal"), licensed=lambda: {"qpu_sim_a"}
                           )[0] == ["sim_a"]


def test_a_missing_license_is_refused_when_slurmctld_s_licenses_cannot_be_read(
        sim_config: MakeSimConfig) -> None:
    config = load_config(sim_config())

    def licensed() -> set[str]:
        raise SlurmCommandError("scontrol show licenses -o: Unable to contact slurm controller")

    with pytest.raises(RequestError) as err:
        resolve_request(["sim_a"], config, default_factory,
                        placement=Placement(licenses=frozenset()), licensed=licensed)
    assert str(err.value) == ("QPU sim_a: the job does not hold its license qpu_sim_a and "
                              "slurmctld's licenses cannot be read: scontrol show licenses "
                              "-o: Unable to contact slurm controller")


def test_direct_mode_prolog_refuses_a_named_qpu_slurmctld_did_not_count(
        tmp_path: Path, sim_config: MakeSimConfig, read_ledger: Callable[[], list[object]]
) -> None:
    # two --qpu values: job_submit.lua (of an earlier release) checked sim_b and added its
    # license; slurmd gave the prolog sim_a
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho 'LicenseName=qpu_sim_a Total=1 Used=0 Free=1'\n"
                        "echo 'LicenseName=qpu_sim_b Total=1 Used=1 Free=0'\n")
    scontrol.chmod(0o755)
    board = Squeue(Placement("normal", "physics", "normal", frozenset({"qpu_sim_b"})))
    lease = direct_prolog(tmp_path, sim_config(), "sim_a", board, str(scontrol))
    assert lease.state is LeaseState.FAILED
    assert lease.error == f"--qpu=sim_a: {LICENSE_REFUSAL}"
    assert read_ledger() == []  # the vendor was never asked
    assert direct_prolog(tmp_path / "2", sim_config(), "sim_b", board, str(scontrol)).state \
        is LeaseState.ACQUIRED
