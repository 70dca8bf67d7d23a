"""The plugin's side of broker mode, and the user overrides it passes on: the shim's
handlers with a fake ``_spank``, the broker answered by an httpx MockTransport."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_spank_handlers as handlers
from test_spank_handlers import FakeSpank, node_store, plugin_args

import slurm_qpu.spank as spank
from slurm_qpu.acquire.pipeline import acquire_all
from slurm_qpu.broker.client import BrokerClient
from slurm_qpu.config import ResourceDef
from slurm_qpu.lease.store import LeaseState
from slurm_qpu.request.overrides import CONTROL_NAME, PROLOG_ENV
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.spank import jobscript

# the handler tests' fixtures: a fake _spank, job 5 on node1, fake scontrol/squeue
fake, job, scontrol = handlers.fake, handlers.job, handlers.scontrol
BROKER = "http://broker.test:8291"
IBM = {"name": "ibm_x", "type": "ibm-quantum-compute-service",
       "environment": {"QRMI_IBM_QCS_ENDPOINT": "https://q.example/api/v1",
                       "QRMI_IBM_QCS_IAM_APIKEY": "admin-key"}}


class ControlSpank(FakeSpank):
    def __init__(self) -> None:
        super().__init__()
        self.control: dict[str, str] = {}

    def job_control_setenv(self, name: str, value: str, overwrite: bool = True) -> int:
        self.control[name] = value
        return 0


@pytest.fixture
def submit(monkeypatch: pytest.MonkeyPatch, write_json: Any) -> tuple[ControlSpank, Path]:
    import sys

    module = ControlSpank()
    module.ctx = "allocator"
    module.opt = "ibm_x"
    monkeypatch.setitem(sys.modules, "_spank", module)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    for var in ("ibm_x_QRMI_IBM_QCS_ENDPOINT", "ibm_x_QRMI_IBM_QCS_SESSION_MODE"):
        monkeypatch.delenv(var, raising=False)
    return module, write_json({"resources": [IBM]})


def test_sbatch_passes_allowed_overrides_to_the_prolog_and_warns_about_the_rest(
        submit: tuple[ControlSpank, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    module, config = submit
    monkeypatch.setenv("ibm_x_QRMI_IBM_QCS_SESSION_MODE", "batch")
    monkeypatch.setenv("ibm_x_QRMI_IBM_QCS_ENDPOINT", "http://evil.example")
    assert spank.submit_env([str(config)]) == 0
    assert json.loads(module.control[CONTROL_NAME]) == {
        "ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}
    assert module.logs == [(1, "warning: --qpu: ignoring ibm_x_QRMI_IBM_QCS_ENDPOINT from "
                               "your environment: endpoints, credentials and other site "
                               "settings come from the site's QPU configuration (only "
                               "QRMI_IBM_QCS_SESSION_MODE, QRMI_IBM_QCS_SESSION_MAX_TTL, "
                               "QRMI_IBM_QCS_TIMEOUT_SECONDS may be overridden for ibm_x)")]


def test_sbatch_warns_about_an_allowed_setting_with_a_bad_value(
        submit: tuple[ControlSpank, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    module, config = submit
    monkeypatch.setenv("ibm_x_QRMI_IBM_QCS_SESSION_MODE", "exclusive")
    assert spank.submit_env([str(config)]) == 0
    assert module.control == {}
    assert module.logs == [(1, "warning: --qpu: ignoring "
                               "ibm_x_QRMI_IBM_QCS_SESSION_MODE='exclusive': expected one "
                               "of dedicated, batch")]


def test_srun_inside_an_allocation_passes_no_overrides(
        submit: tuple[ControlSpank, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    module, config = submit
    module.ctx = "local"
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("ibm_x_QRMI_IBM_QCS_ENDPOINT", "http://evil.example")
    assert spank.submit_env([str(config)]) == 0
    assert module.control == {} and module.logs == []


# ---------------------------------------------------------------- prolog / epilog


def broker_answering(handler: Any) -> BrokerClient:
    return BrokerClient(BROKER, deadline=0.5, transport=httpx.MockTransport(handler),
                        encode=lambda payload: "MUNGE:fake", sleep=lambda s: None)


LEASE = {"job_id": 5, "state": "acquired", "qpus": ["sim_a"], "error": None,
         "resources": [{"name": "sim_a", "type": "local-simulator", "token": "tok-1"}],
         "env": {"QRMI_JOB_QPU_RESOURCES": "sim_a", "sim_a_QRMI_JOB_ACQUISITION_TOKEN": "tok-1"},
         "warnings": [], "release_errors": []}


def test_prolog_in_broker_mode_records_the_brokers_lease_and_tasks_get_its_env(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=LEASE)

    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(answer))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    assert spank.job_prolog(args) == 0
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/leases/5"
    assert seen[0].headers["Authorization"] == "MUNGE MUNGE:fake"
    assert json.loads(seen[0].content)["qpus"] == "sim_a,sim_b"
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.state is LeaseState.ACQUIRED
    assert spank.init_post_opt(args) == 0
    assert spank.task_init(args) == 0
    assert ("sim_a_QRMI_JOB_ACQUISITION_TOKEN", "tok-1", True) in job.setenvs


def test_prolog_when_the_broker_is_down_fails_the_job_with_the_reason(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(down))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    assert spank.job_prolog(args) == 0  # never fails the node
    spank.init_post_opt(args)
    assert spank.task_init(args) == 1
    assert job.errors()[-1] == (
        f"job 5: the slurm-qpu broker at {BROKER} does not answer (ConnectError: Connection "
        "refused) after 0.5 s; is it running (systemctl status slurm-qpu-broker)?")


def test_prolog_reports_the_brokers_failed_lease(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {**LEASE, "state": "failed", "resources": [], "env": {},
              "error": "cannot acquire QPU sim_a: vendor says no"}
    monkeypatch.setattr(jobscript, "_broker",
                        lambda s: broker_answering(lambda r: httpx.Response(200, json=failed)))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    spank.job_prolog(args)
    spank.init_post_opt(args)
    assert spank.task_init(args) == 1
    assert job.errors()[-1] == "job 5: cannot acquire QPU sim_a: vendor says no"


def test_epilog_in_broker_mode_asks_for_the_release(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(200, json={**LEASE, "state": "released" if
                                         request.method == "DELETE" else "acquired"})

    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(answer))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    spank.job_prolog(args)
    assert spank.job_epilog(args) == 0
    assert calls == ["POST", "DELETE"]
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.state is LeaseState.RELEASED


USAGE = [{"qpu": "sim_a", "type": "local-simulator", "start": 1764057108.0,
          "end": 1764057130.5, "vendor_jobs": 3, "shots": 3000, "qpu_seconds": 1.25,
          "session_seconds": 22.5}]


def test_epilog_in_broker_mode_writes_the_brokers_usage_record_on_the_first_node(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**LEASE, "usage": USAGE})

    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(answer))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    spank.job_prolog(args)
    spank.job_epilog(args)
    assert handlers.sacctmgr_calls(tmp_path) == [
        "-i modify job jobid=5 set AdminComment=slurm-qpu-usage:v1;qpu=sim_a,"
        "type=local-simulator,start=2025-11-25T07:51:48Z,end=2025-11-25T07:52:10Z,"
        "session_s=22.5,vendor_jobs=3,shots=3000,qpu_s=1.250"]


def test_epilog_in_broker_mode_on_another_node_leaves_the_record_to_the_first(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_NODELIST", "node0,node1")
    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(
        lambda r: httpx.Response(200, json={**LEASE, "usage": USAGE})))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    spank.job_prolog(args)
    spank.job_epilog(args)
    assert handlers.sacctmgr_calls(tmp_path) == []


def test_epilog_with_the_broker_down_records_that_its_reaper_will_release(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    up = {"ok": True}

    def answer(request: httpx.Request) -> httpx.Response:
        if not up["ok"]:
            return httpx.Response(503, text="down")
        return httpx.Response(200, json=LEASE)

    monkeypatch.setattr(jobscript, "_broker", lambda settings: broker_answering(answer))
    args = plugin_args(sim_config(), tmp_path, scontrol, f"broker={BROKER}")
    spank.job_prolog(args)
    up["ok"] = False
    assert spank.job_epilog(args) == 0
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.state is LeaseState.RELEASED
    assert lease.release_errors[0].endswith("the broker releases the QPUs itself once it "
                                            "sees the job has ended")


def test_prolog_in_direct_mode_warns_that_credentials_reach_the_job(
        job: FakeSpank, sim_config: Any, tmp_path: Path, scontrol: Path) -> None:
    config = sim_config()
    assert spank.job_prolog(plugin_args(config, tmp_path, scontrol)) == 0
    assert (1, f"warning: job 5: direct mode: the QPU credentials in {config} reach every "
               "task of this job (set broker= in plugstack.conf to keep them on the broker)"
            ) in job.logs


# ---------------------------------------------------------------- overrides at acquire


class Capture:
    def __init__(self) -> None:
        self.environments: list[dict[str, str]] = []

    def __call__(self, spec: Any) -> Any:
        self.environments.append(dict(spec.environment))
        outer = self

        class Resource:
            def is_accessible(self) -> bool:
                return True

            def acquire(self) -> str:
                return f"token-{len(outer.environments)}"

        return Resource()


def test_direct_mode_acquire_uses_allowed_overrides_and_never_an_endpoint(
        caplog: pytest.LogCaptureFixture) -> None:
    from slurm_qpu.request.overrides import decode

    rdef = ResourceDef.model_validate(IBM)
    checked = decode(json.dumps({"ibm_x": {"QRMI_IBM_QCS_SESSION_MODE": "batch",
                                           "QRMI_IBM_QCS_ENDPOINT": "http://evil"}}),
                     {"ibm_x": rdef.type})
    capture = Capture()
    acquire_all([rdef], JobFacts(5, "n1", ("n1",)), 60, capture, checked.accepted)
    assert capture.environments[0]["QRMI_IBM_QCS_SESSION_MODE"] == "batch"
    assert capture.environments[0]["QRMI_IBM_QCS_ENDPOINT"] == "https://q.example/api/v1"
    assert checked.refused[0].startswith("ignoring ibm_x_QRMI_IBM_QCS_ENDPOINT from your "
                                         "environment")


def test_overrides_from_sbatch_reach_the_direct_mode_prolog(
        job: FakeSpank, write_json: Any, tmp_path: Path, scontrol: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    config = write_json({"resources": [{"name": "sim_a", "type": "local-simulator"},
                                       {"name": "sim_b", "type": "local-simulator"}]})
    monkeypatch.setenv(PROLOG_ENV, json.dumps({"sim_a": {"QRMI_LOCAL_SIM_STATUS": "down"}}))
    with caplog.at_level(logging.WARNING):
        spank.job_prolog(plugin_args(config, tmp_path, scontrol))
    lease = node_store(tmp_path).load(5)
    assert lease is not None and lease.state is LeaseState.ACQUIRED  # override not applied
    assert any("ignoring sim_a_QRMI_LOCAL_SIM_STATUS from your environment" in m
               for _, m in job.logs)


def test_a_configured_secret_in_an_error_is_masked_in_slurms_log(
        job: FakeSpank, write_json: Any, tmp_path: Path, scontrol: Path) -> None:
    config = write_json({"resources": [
        {"name": "sim_a", "type": "local-simulator", "environment": {
            "QRMI_LOCAL_SIM_API_KEY": "s3cr3t-key-42",
            "QRMI_LOCAL_SIM_ACQUIRE_ERROR": "bad key s3cr3t-key-42 (Bearer abcdefgh12345678)"}},
        {"name": "sim_b", "type": "local-simulator"}]})
    spank.job_prolog(plugin_args(config, tmp_path, scontrol))
    text = "\n".join(m for _, m in job.logs)
    assert "bad key *** (Bearer ***)" in text
    assert "s3cr3t-key-42" not in text and "abcdefgh12345678" not in text


def test_in_direct_mode_plugstack_env_arguments_are_the_acquiring_processs_environment_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """spank_qrmi sets ``--env:NAME=VALUE`` on the daemon as well: a site's
    ``--env:https_proxy=...`` takes the prolog's own vendor calls through its proxy."""
    from slurm_qpu.settings import parse_args

    monkeypatch.setenv("https_proxy", "")  # (the test's own environment comes back after)
    jobscript.acquiring_environment(parse_args(["--env:https_proxy=http://proxy:3128"]))
    assert os.environ["https_proxy"] == "http://proxy:3128"
