"""The functions the C shim calls (slurm_qpu.spank), with a fake ``_spank`` module."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import slurm_qpu.spank as spank
from slurm_qpu.lease.coordination import PublicRecord
from slurm_qpu.lease.store import LeaseState, LeaseStore
from slurm_qpu.spank import jobscript, task
from slurm_qpu.usage import decode

MakeSimConfig = Callable[..., Path]
ReadLedger = Callable[[], list[tuple[str, str, str]]]

ITEMS = {"job_id", "uid", "gid", "step_id", "nnodes", "nodeid", "local_task_count",
         "total_task_count", "task_global_id", "array_id", "array_task_id", "restart_count"}
SCONTROL_OUTPUT = "JobId=5 TimeLimit=00:10:00 AdminComment="


class FakeSpank:
    """Stands in for the shim's built-in module ``_spank`` and records what is asked of it."""

    step_opt: str | None = "same"  # what the step's option callback saw; "same": self.opt

    def __init__(self) -> None:
        self.ctx = "remote"
        self.items: dict[str, int | None] = {}
        self.job_env: dict[str, str] = {}
        self.opt: str | None = None
        self.logs: list[tuple[int, str]] = []
        self.setenvs: list[tuple[str, str, bool]] = []

    def context(self) -> str:
        return self.ctx

    def setenv(self, name: str, value: str, overwrite: bool = True) -> int:
        self.setenvs.append((name, value, bool(overwrite)))
        return 0

    def getenv(self, name: str) -> str | None:
        return self.job_env.get(name)

    def option_value(self) -> str | None:
        return self.step_opt if self.step_opt != "same" else self.opt

    def getopt(self) -> str | None:
        return self.opt

    def item(self, name: str) -> int | None:
        if name not in ITEMS:
            raise KeyError(f"unknown spank item {name}")
        return self.items.get(name)

    def log(self, level: int, message: str) -> None:
        self.logs.append((level, message))

    def errors(self) -> list[str]:
        return [m for level, m in self.logs if level == 0]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSpank:
    module = FakeSpank()
    monkeypatch.setitem(sys.modules, "_spank", module)
    monkeypatch.setattr(task, "_step", task.StepState())
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        ("Linux", "node1.cluster.example", "6.1", "#1", "x86_64")))
    for var in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_NODELIST",
                "SLURMD_NODENAME", "SLURM_JOB_UID", "SLURM_JOB_USER", "SRUN_DEBUG",
                "SPANK__SLURM_SPANK_OPTION_qpu_qpu"):
        monkeypatch.delenv(var, raising=False)
    return module


@pytest.fixture
def scontrol(tmp_path: Path) -> Path:
    """A fake scontrol: 'show job' prints SCONTROL_OUTPUT; every call is logged."""
    script = tmp_path / "bin" / "scontrol"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/scontrol.calls"\n'
                      f'[ "$1" = show ] && echo "{SCONTROL_OUTPUT}"\nexit 0\n')
    script.chmod(0o755)
    # and a fake squeue: the job as `squeue --json` shows it (10 minutes, no record yet)
    body = tmp_path / "bin" / "squeue.json"
    body.write_text('{"jobs": [{"job_id": 5, "time_limit": 10, "admin_comment": ""}]}')
    squeue = tmp_path / "bin" / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/squeue.calls"\ncat {body}\n')
    squeue.chmod(0o755)
    # and a fake sacctmgr that accepts the usage record
    sacctmgr = tmp_path / "bin" / "sacctmgr"
    sacctmgr.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/sacctmgr.calls"\n'
                        'echo " Modified jobs..."\n')
    sacctmgr.chmod(0o755)
    return script


def sacctmgr_calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "sacctmgr.calls"
    return path.read_text().splitlines() if path.exists() else []


def scontrol_calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "scontrol.calls"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def job(fake: FakeSpank, monkeypatch: pytest.MonkeyPatch) -> FakeSpank:
    """Job 5 of alice (uid 1000) on node1 alone, asking for sim_a,sim_b."""
    monkeypatch.setenv("SLURMD_NODENAME", "node1")
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    monkeypatch.setenv("SLURM_NODELIST", "node1")
    monkeypatch.setenv("SLURM_JOB_USER", "alice")
    fake.items.update({"job_id": 5, "uid": 1000})
    fake.opt = "sim_a,sim_b"
    return fake


def plugin_args(config: Path, tmp_path: Path, scontrol: Path, *extra: str) -> list[str]:
    return [str(config), f"state_dir={tmp_path}/state/%n", f"scontrol={scontrol}",
            f"squeue={scontrol.with_name('squeue')}", f"sacctmgr={scontrol.with_name('sacctmgr')}",
            "venv=/opt/venv", *extra]


def node_store(tmp_path: Path) -> LeaseStore:
    return LeaseStore(tmp_path / "state" / "node1")


# ---------------------------------------------------------------- option (submit time)


def test_option_with_unknown_name_rejects_the_submission(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config)], "sim_a,typo", 0) == 1
    assert fake.logs == [(0, "--qpu: unknown QPU name(s) typo; known: sim_a,sim_b")]


def test_option_with_known_names_is_accepted_silently(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config)], " sim_b , sim_a ", 0) == 0
    assert fake.logs == []


def test_option_with_a_selection_that_could_match_is_accepted(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config)], "any:sim_*", 0) == 0
    assert fake.logs == []


def test_option_with_a_selection_nothing_can_match_rejects_the_submission(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config)], "any:ibm_*", 0) == 1
    assert fake.logs == [(0, "--qpu: no configured QPU matches any:ibm_*; known: sim_a,sim_b")]


def test_option_with_a_malformed_selection_says_what_is_wrong(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config)], "any:qubits=5", 0) == 1
    assert fake.logs == [(0, "--qpu: any:qubits=5: unknown filter key 'qubits'; use name, "
                             "type, num_qubits, min_qubits, is_simulator, status")]


def test_option_with_empty_value_is_rejected(fake: FakeSpank, example_config: Path) -> None:
    fake.ctx = "local"
    assert spank.option([str(example_config)], "", 0) == 1
    assert fake.logs == [(0, "--qpu: no QPU name given; use --qpu=NAME[,NAME...] "
                             "(names: slurm-qpu list)")]


def test_option_reads_the_public_catalog_when_config_is_missing(
    fake: FakeSpank, tmp_path: Path
) -> None:
    names = tmp_path / "public.json"
    names.write_text(json.dumps({"resources": [{"name": "pub", "type": "local-simulator"}]}))
    args = [f"config={tmp_path / 'none.json'}", f"names={names}"]
    assert spank.option(args, "pub", 0) == 0
    assert spank.option(args, "sim_a", 0) == 1
    assert fake.errors() == ["--qpu: unknown QPU name(s) sim_a; known: pub"]


def test_option_without_any_name_list_tells_the_admin_to_publish(
    fake: FakeSpank, tmp_path: Path
) -> None:
    config = tmp_path / "none.json"
    assert spank.option([str(config)], "sim_a", 0) == 1
    assert fake.errors() == [
        f"--qpu: cannot check QPU names: {config} is not found and the public list "
        f"{tmp_path / 'qpu_names.json'} is missing or unreadable; an administrator must run "
        f"'slurm-qpu config publish {config}'"]


def test_bad_plugstack_argument_fails_with_its_message(
    fake: FakeSpank, example_config: Path
) -> None:
    assert spank.option([str(example_config), "log_level=loud"], "sim_a", 0) == 1
    assert fake.logs == [(0, "plugstack.conf: plugstack argument log_level=loud: use one of "
                             "error, warning, info, verbose, debug")]


def test_unknown_plugstack_argument_is_not_shown_on_users_terminals(
    fake: FakeSpank, example_config: Path
) -> None:
    fake.ctx = "allocator"
    assert spank.option([str(example_config), "colour=blue"], "sim_a", 0) == 0
    assert fake.logs == []


def test_unknown_plugstack_argument_is_a_warning_in_the_daemons(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    job.ctx = "remote"
    args = plugin_args(sim_config(), tmp_path, scontrol, "colour=blue")
    assert spank.init_post_opt(args) == 0
    assert (1, "warning: plugstack.conf: ignoring unknown plugstack argument 'colour=blue'") \
        in job.logs


# ---------------------------------------------------------------- a job's whole life


def test_prolog_then_task_init_exports_the_contract(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path,
    read_ledger: ReadLedger
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    job.ctx = "job_script"
    assert spank.job_prolog(args) == 0
    tokens = {resource: token for event, resource, token in read_ledger()
              if event == "acquire"}
    assert sorted(tokens) == ["sim_a", "sim_b"]
    assert scontrol_calls(tmp_path) == []  # a one-node job publishes nothing
    assert (tmp_path / "squeue.calls").read_text().split() == [
        "--json", "--states=all", "-j", "5"]

    job.ctx = "remote"
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 0
    exported = {name: (value, overwrite) for name, value, overwrite in job.setenvs}
    assert exported["QRMI_JOB_QPU_RESOURCES"] == ("sim_a,sim_b", True)
    assert exported["QRMI_JOB_QPU_TYPES"] == ("local-simulator,local-simulator", True)
    assert exported["SLURM_JOB_QPU_RESOURCES"] == ("sim_a,sim_b", True)
    assert exported["QRMI_JOB_ID"] == ("5", True)
    assert exported["QRMI_JOB_UID"] == ("1000", True)
    assert exported["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == (tokens["sim_a"], True)
    assert exported["sim_b_QRMI_JOB_ACQUISITION_TOKEN"] == (tokens["sim_b"], True)
    assert exported["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == ("600", True)
    assert exported["sim_b_QRMI_JOB_TIMEOUT_SECONDS"] == ("600", True)
    # config values are defaults: a user's own export wins
    assert exported["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == ("5", False)
    assert exported["sim_b_QRMI_LOCAL_SIM_NUM_QUBITS"] == ("20", False)
    assert exported["RUST_LOG"] == ("info", False)
    assert job.errors() == []

    job.ctx = "job_script"
    assert spank.job_epilog(args) == 0
    assert [(e, r) for e, r, _ in read_ledger()] == [
        ("acquire", "sim_a"), ("acquire", "sim_b"), ("release", "sim_a"), ("release", "sim_b")]
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.state is LeaseState.RELEASED


def test_prolog_logs_the_acquisition_in_the_slurmd_log(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    assert spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol)) == 0
    assert (1, "job 5: acquired sim_a,sim_b") in job.logs


def test_log_json_writes_every_callback_s_lines_with_the_job_id(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    path = tmp_path / "plugin.json"
    args = plugin_args(sim_config(), tmp_path, scontrol, f"log_json={path}")
    assert spank.job_prolog(args) == 0
    assert spank.job_epilog(args) == 0
    lines = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert {(line["job_id"], line["component"]) for line in lines} == \
        {(5, "job_prolog"), (5, "job_epilog")}
    assert "job 5: acquired sim_a,sim_b" in [line["message"] for line in lines]


def test_profile_writes_a_cprofile_of_each_callback(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    import pstats

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    args = plugin_args(sim_config(), tmp_path, scontrol, f"profile={profiles}")
    assert spank.job_prolog(args) == 0
    assert spank.job_epilog(args) == 0
    written = sorted(p.name.split("-")[0] for p in profiles.glob("*.prof"))
    assert written == ["job_epilog", "job_prolog"]
    stats = pstats.Stats(str(next(profiles.glob("job_prolog-*.prof"))))
    assert any(func[2] == "prolog" for func in stats.stats)  # type: ignore[attr-defined]


def test_a_profile_directory_that_cannot_be_written_does_not_fail_the_job(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    missing = tmp_path / "no-such-dir"
    args = plugin_args(sim_config(), tmp_path, scontrol, f"profile={missing}")
    assert spank.job_prolog(args) == 0
    assert any(f"profile={missing}: cannot write the profile" in text
               for _, text in job.logs)


VICTIM_TEXT = "root:*:19000:0:99999:7:::\n"


def test_a_symbolic_link_planted_at_a_profile_name_is_not_followed(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    # the profile directory is world-writable (users' sbatch writes there): a user plants
    # the name root's prolog will write next, pointing at a file of root's
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profiles.chmod(0o1777)
    victim = tmp_path / "shadow"
    victim.write_text(VICTIM_TEXT)
    planted = profiles / f"job_prolog-{os.getpid()}.prof"
    planted.symlink_to(victim)
    args = plugin_args(sim_config(), tmp_path, scontrol, f"profile={profiles}")
    assert spank.job_prolog(args) == 0  # the job goes on
    assert victim.read_text() == VICTIM_TEXT and planted.is_symlink()
    assert (0, f"profile={profiles}: not writing the profile {planted}: it exists already "
               "(an earlier profile, or made by someone else); a profile is always a new "
               "file") in job.logs
    assert node_store(tmp_path).load(5).state is LeaseState.ACQUIRED  # type: ignore[union-attr]


def test_a_profile_directory_that_is_a_symbolic_link_is_not_written(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    elsewhere = tmp_path / "cron.d"  # e.g. a user made /var/tmp/prof point at /etc/cron.d
    elsewhere.mkdir()
    profiles = tmp_path / "profiles"
    profiles.symlink_to(elsewhere)
    args = plugin_args(sim_config(), tmp_path, scontrol, f"profile={profiles}")
    assert spank.job_prolog(args) == 0
    assert list(elsewhere.iterdir()) == []
    assert (0, f"profile={profiles}: not writing the profile {profiles}: it is a symbolic "
               "link, which is not followed") in job.logs


def test_a_profile_directory_others_may_write_needs_the_sticky_bit(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profiles.chmod(0o777)
    args = plugin_args(sim_config(), tmp_path, scontrol, f"profile={profiles}")
    assert spank.job_prolog(args) == 0
    assert list(profiles.iterdir()) == []
    assert (0, f"profile={profiles}: not writing the profile {profiles}: others may write "
               "to the directory and it has no sticky bit (chmod 1777, or make it root's "
               "only)") in job.logs
    profiles.chmod(0o1777)
    assert spank.job_epilog(args) == 0
    [written] = profiles.iterdir()
    assert written.name.startswith("job_epilog-") and written.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_planted_at_the_log_json_name_is_not_written_through(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path, link: str
) -> None:
    victim = tmp_path / "shadow"
    victim.write_text(VICTIM_TEXT)
    path = tmp_path / "plugin.json"
    if link == "symbolic":
        path.symlink_to(victim)
        reason = "it is a symbolic link, which is not followed"
    else:
        os.link(victim, path)
        reason = "it has 2 hard links (a second name of another file?)"
    args = plugin_args(sim_config(), tmp_path, scontrol, f"log_json={path}")
    assert spank.job_prolog(args) == 0
    assert victim.read_text() == VICTIM_TEXT
    assert (0, f"plugstack.conf: not writing JSON log {path}: {reason}") in job.logs
    assert (1, "job 5: acquired sim_a,sim_b") in job.logs  # Slurm's log still has it all


def test_log_json_is_created_for_root_only_when_missing(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    path = tmp_path / "plugin.json"
    old = os.umask(0)
    try:
        assert spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol,
                                            f"log_json={path}")) == 0
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text()


def test_a_relative_profile_path_is_a_plugstack_error(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol, "profile=prof")
    assert spank.job_prolog(args) == 1
    assert job.logs == [(0, "plugstack.conf: plugstack argument profile=prof: expected "
                            "an absolute path, e.g. profile=/var/tmp/slurm-qpu-profile")]


def test_a_relative_log_json_path_is_a_plugstack_error(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol, "log_json=plugin.json")
    spank.job_prolog(args)
    assert job.logs == [(0, "plugstack.conf: plugstack argument log_json=plugin.json: expected "
                            "an absolute path, e.g. log_json=/var/log/slurm-qpu/plugin.json")]


def test_rust_log_follows_srun_debug_of_the_job(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    spank.job_prolog(args)
    job.job_env["SRUN_DEBUG"] = "5"
    spank.init_post_opt(args)
    assert spank.task_init(args) == 0
    assert ("RUST_LOG", "trace", False) in job.setenvs


def test_prolog_takes_the_request_from_the_environment_when_getopt_fails(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    job.opt = None
    monkeypatch.setenv("SPANK__SLURM_SPANK_OPTION_qpu_qpu", "sim_b")
    assert spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol)) == 0
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.names == ["sim_b"]


def test_prolog_refreshes_the_public_name_list(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    config = sim_config()
    assert spank.job_prolog(plugin_args(config, tmp_path, scontrol)) == 0
    published = json.loads(config.with_name("qpu_names.json").read_text())
    assert [r["name"] for r in published["resources"]] == ["sim_a", "sim_b"]


def test_multi_node_prolog_publishes_the_record_through_scontrol(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path,
    read_ledger: ReadLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-2]")
    job.opt = "sim_a"
    assert spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol)) == 0
    [(_, _, token)] = read_ledger()
    [update] = scontrol_calls(tmp_path)
    assert update.startswith("update JobId=5 AdminComment=slurm-qpu:v1:")
    record = PublicRecord.decode(update.split("AdminComment=", 1)[1])
    assert record == PublicRecord("acquired", "node1", [
        {"name": "sim_a", "type": "local-simulator", "token": token}])


def test_task_init_after_failed_prolog_fails_the_job_with_the_vendor_message(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(sim_b={"ACQUIRE_ERROR": "device busy"}), tmp_path, scontrol)
    assert spank.job_prolog(args) == 0  # the prolog never fails: the node would drain
    assert spank.init_post_opt(args) == 0
    job.logs.clear()
    assert spank.task_init(args) == 1
    assert job.errors() == ["job 5: cannot acquire QPU sim_b: device busy"]
    assert job.setenvs == []


def test_task_init_for_unknown_name_fails_with_the_request_error(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    job.opt = "typo"
    args = plugin_args(sim_config(), tmp_path, scontrol)
    spank.job_prolog(args)
    spank.init_post_opt(args)
    job.logs.clear()
    assert spank.task_init(args) == 1
    assert job.errors() == ["job 5: --qpu=typo: unknown QPU name(s) typo; known: sim_a,sim_b"]


def test_task_init_without_a_lease_fails_the_job(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 1
    assert job.errors() == ["job 5: no QPU lease for this job on node1: its prolog did not "
                            "record one (see the slurmd log there)"]


def test_task_init_after_release_fails_the_job(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    spank.job_prolog(args)
    spank.job_epilog(args)
    spank.init_post_opt(args)
    assert spank.task_init(args) == 1
    assert job.errors() == ["job 5: the job's QPUs were already released"]


def test_init_post_opt_without_job_id_fails(
    fake: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    assert spank.init_post_opt(args) == 1
    assert spank.task_init(args) == 1
    assert fake.errors() == ["no job id in this step"]


def test_epilog_writes_the_usage_record_into_slurm_accounting(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    spank.job_prolog(args)
    assert sacctmgr_calls(tmp_path) == []
    spank.job_epilog(args)
    spank.job_epilog(args)  # released once, recorded once
    [call] = sacctmgr_calls(tmp_path)
    assert call.startswith("-i modify job jobid=5 set AdminComment=slurm-qpu-usage:v1;"
                           "qpu=sim_a,type=local-simulator,start=")
    records = decode(call.split("AdminComment=", 1)[1])
    assert [(r.qpu, r.vendor_jobs, r.shots) for r in records] == [("sim_a", 0, None),
                                                                   ("sim_b", 0, None)]
    assert all(r.session_seconds is not None for r in records)


def test_sacctmgr_no_keeps_usage_records_out_of_accounting(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol, "sacctmgr=no")
    spank.job_prolog(args)
    spank.job_epilog(args)
    assert sacctmgr_calls(tmp_path) == []


def test_epilog_without_lease_does_nothing(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path,
    read_ledger: ReadLedger
) -> None:
    assert spank.job_epilog(plugin_args(sim_config(), tmp_path, scontrol)) == 0
    assert read_ledger() == []
    assert job.errors() == []
    assert sacctmgr_calls(tmp_path) == []


def test_exception_in_a_handler_is_logged_as_internal_error_not_raised(
    fake: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    # no job id anywhere: job_facts() raises RuntimeError
    assert spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol)) == 1
    assert fake.errors() == ["internal error in job_prolog: RuntimeError: no job id in the "
                             "prolog/epilog environment (please report this)"]


def test_unexpected_exception_is_caught_in_every_handler(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    import slurm_qpu.lease.from_vendors

    monkeypatch.setattr(slurm_qpu.lease.from_vendors, "run_epilog", explode)
    assert spank.job_epilog(plugin_args(sim_config(), tmp_path, scontrol)) == 1
    assert job.errors() == ["internal error in job_epilog: ZeroDivisionError: boom "
                            "(please report this)"]


def test_debug_log_level_adds_the_traceback_of_an_internal_error(
    fake: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    spank.job_prolog(plugin_args(sim_config(), tmp_path, scontrol, "log_level=debug"))
    [(level, text)] = [(lvl, m) for lvl, m in fake.logs if m.startswith("traceback")]
    assert level == 3
    assert "Traceback (most recent call last):" in text
    assert text.endswith("RuntimeError: no job id in the prolog/epilog environment")


# ---------------------------------------------------------------- job facts


def test_job_facts_come_from_spank_items_and_the_prolog_environment(
    job: FakeSpank, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-3]")
    facts = jobscript.job_facts()
    assert (facts.job_id, facts.node, facts.nodes, facts.uid, facts.user) == (
        5, "node1", ("node1", "node2", "node3"), 1000, "alice")


def test_job_facts_fall_back_to_environment_job_id_and_host_name(
    fake: FakeSpank, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOBID", "77")
    monkeypatch.setenv("SLURM_JOB_UID", "1001")
    facts = jobscript.job_facts()
    assert (facts.job_id, facts.node, facts.nodes, facts.uid) == (
        77, "node1", ("node1",), 1001)


def test_job_facts_keep_uid_zero(job: FakeSpank) -> None:
    job.items["uid"] = 0
    assert jobscript.job_facts().uid == 0


# ---------------------------------------------------------------- steps without --qpu


def test_step_without_qpu_ignores_a_released_lease_of_a_reused_job_id(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    job.ctx = "job_script"
    assert spank.job_prolog(args) == 0
    assert spank.job_epilog(args) == 0
    job.ctx, job.step_opt = "remote", None  # a later job with the same id, no --qpu
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 0
    assert job.setenvs == []
    assert job.errors() == []


def test_step_without_qpu_of_a_het_job_gets_its_components_lease(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    job.ctx = "job_script"
    assert spank.job_prolog(args) == 0
    job.ctx, job.step_opt = "remote", None  # srun --het-group=1 never saw --qpu
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 0
    assert ("QRMI_JOB_QPU_RESOURCES", "sim_a,sim_b", True) in job.setenvs


def test_step_without_qpu_ignores_another_users_lease(
    job: FakeSpank, tmp_path: Path, sim_config: MakeSimConfig, scontrol: Path
) -> None:
    args = plugin_args(sim_config(), tmp_path, scontrol)
    job.ctx = "job_script"
    assert spank.job_prolog(args) == 0
    job.ctx, job.step_opt = "remote", None
    job.items["uid"] = 2000
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 0
    assert job.setenvs == []
