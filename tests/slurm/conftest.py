"""The real-Slurm tier: one lab cluster (munge, slurmctld, two slurmd in their own network
namespaces, the plugin installed from this checkout) for the whole session; jobs are
submitted as an unprivileged user. Needs root; ``make test-slurm`` runs it."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_qpu_lab import Lab

REPO = Path(__file__).resolve().parents[2]

# QPUs the tests add to the example config: failure injection on the simulated vendor.
BROKEN_MESSAGE = "device calibration in progress, retry after 14:00 UTC"
TEST_RESOURCES = [
    {"name": "sim_broken", "type": "local-simulator",
     "environment": {"QRMI_LOCAL_SIM_ACQUIRE_ERROR": BROKEN_MESSAGE}},
    {"name": "sim_maint", "type": "local-simulator",
     "environment": {"QRMI_LOCAL_SIM_STATUS": "maintenance"}},
    {"name": "sim_relfail", "type": "local-simulator",
     "environment": {"QRMI_LOCAL_SIM_RELEASE_ERROR": "session already closed by the vendor"}},
    {"name": "sim_secret", "type": "local-simulator",
     "environment": {"QRMI_LOCAL_SIM_NUM_QUBITS": "3", "QRMI_LOCAL_SIM_API_KEY": "s3cr3t-key"}},
]

# Prints one JSON line per task: rank, host and the QPU-related environment.
ENV_DUMP = (
    "/usr/bin/python3 -c 'import json,os,socket; print(json.dumps({"
    "\"rank\": int(os.environ[\"SLURM_PROCID\"]), \"host\": socket.gethostname(), "
    "\"env\": {k: v for k, v in os.environ.items() if k.startswith("
    "(\"QRMI_\", \"SLURM_JOB_QPU\", \"sim_\", \"RUST_LOG\"))}}))'"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/slurm" in str(item.fspath):
            item.add_marker(pytest.mark.slurm)


@dataclass
class JobRun:
    job_id: int
    state: str
    output: str

    def tasks(self) -> list[dict]:  # type: ignore[type-arg]
        return sorted((json.loads(line) for line in self.output.splitlines()
                       if line.startswith("{")), key=lambda t: t["rank"])


class LabFixture(Lab):
    def run_job(self, *args: str, script: str, timeout: float = 120) -> JobRun:
        out = self.jobs_dir / "job-%j.out"
        job_id = self.sbatch("-o", str(out), *args, script="#!/bin/bash\n" + script)
        state = self.wait_job(job_id, timeout=timeout)
        text = (self.jobs_dir / f"job-{job_id}.out").read_text(errors="replace")
        return JobRun(job_id, state, text)

    def pytrace_lines(self) -> list[str]:
        return self.pytrace.read_text().splitlines()

    def leases_on(self, node: str) -> dict[int, dict]:  # type: ignore[type-arg]
        """Every lease record on a node: live (jobs/) and released (done/)."""
        root = self.state_dir(node)
        paths = [*(root / "done").glob("*.json"), *(root / "jobs").glob("*.json")]
        return {int(p.stem): json.loads(p.read_text()) for p in paths}

    def undrained(self) -> bool:
        """No node drained, draining, down or failed (the plugin must never cause that)."""
        bad = ("drain", "down", "fail")
        return not any(b in s for s in self.node_states().values() for b in bad)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabFixture]:
    if os.geteuid() != 0:
        pytest.fail("the real-Slurm tier starts Slurm daemons: run it as root (make test)")
    root = Path(os.environ.get("LAB", "/tmp/slurm-qpu-lab-test"))
    fixture = LabFixture(root, REPO, nodes=2, slot=int(os.environ.get("LAB_SLOT", "1")))
    fixture.up()
    try:
        fixture.write_qrmi_config(extra=TEST_RESOURCES)
        # fail fast (one error, not a timeout per test) when jobs cannot run at all
        smoke = fixture.as_user(["srun", "-N2", "true"], timeout=60)
        if smoke.returncode != 0:
            pytest.fail(f"the lab cannot run a 2-node job: {smoke.stderr.strip()}\n"
                        + fixture.tail_logs())
        yield fixture
    finally:
        fixture.down(quiet=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:  # type: ignore[type-arg]
    outcome = yield
    report = outcome.get_result()
    lab_fixture = item.funcargs.get("lab") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(lab_fixture, Lab):
        report.sections.append(("slurm lab logs", lab_fixture.tail_logs(60)))


def shell(*words: str) -> str:
    return shlex.join(words)
