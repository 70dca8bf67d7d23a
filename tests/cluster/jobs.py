"""Submitting jobs on the docker cluster and reading what they printed (a harness module:
the scenario tests import it; it holds no fixtures)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

QPU = "ibm_manila"

# A Bell pair transpiled for the job's QPU, its target read through slurm_qpu.client.
BELL_ISA = f"""
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from slurm_qpu import client

backend = client.ibm_backend("{QPU}")
bell = QuantumCircuit(2)
bell.h(0)
bell.cx(0, 1)
bell.measure_all()
isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell)
"""

# A Qiskit program as a user writes it: SamplerV2 in the session the prolog opened.
SAMPLER = BELL_ISA + f"""
import json, os, socket
from qiskit_ibm_runtime import SamplerV2

session = client.ibm_session("{QPU}")
job = SamplerV2(mode=session).run([isa], shots=400)
print("VENDOR_JOB " + job.job_id(), flush=True)
counts = job.result()[0].data.meas.get_counts()
print("RESULT " + json.dumps({{"counts": counts, "session": session.session_id,
      "job": job.job_id(), "host": socket.gethostname(),
      "token": os.environ["{QPU}_QRMI_JOB_ACQUISITION_TOKEN"]}}), flush=True)
"""

@dataclass
class JobRun:
    job_id: int
    state: str
    output: str


def output_of(cluster: DockerCluster, job_id: int, user: str = "alice",
              name: str = "slurm-{id}.out") -> str:
    path = cluster.home / user / name.format(id=job_id)
    return path.read_text(errors="replace") if path.exists() else f"(no {path})"


def run(cluster: DockerCluster, script: str, *args: str, user: str = "alice",
        timeout: float = 300) -> JobRun:
    """sbatch SCRIPT as USER on the login node, wait for the end, read slurm-<id>.out."""
    job_id = cluster.sbatch(script, *args, user=user)
    state = cluster.wait_job(job_id, timeout)
    return JobRun(job_id, state, output_of(cluster, job_id, user))


def marker(output: str, prefix: str) -> str:
    for line in output.splitlines():
        if line.startswith(prefix + " "):
            return line[len(prefix) + 1:]
    raise AssertionError(f"no {prefix} line in the job's output:\n{output}")


def markers(output: str, prefix: str) -> list[str]:
    return [line[len(prefix) + 1:] for line in output.splitlines()
            if line.startswith(prefix + " ")]


def wait_until(what: str, ok: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_output(cluster: DockerCluster, job_id: int, pattern: str,
                    timeout: float = 180) -> str:
    """The first group of ``pattern`` once the job's output shows it."""
    found: list[str] = []

    def seen() -> bool:
        m = re.search(pattern, output_of(cluster, job_id))
        if m:
            found.append(m.group(1))
        return bool(m)

    try:
        wait_until(f"{pattern!r} in job {job_id}'s output", seen, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{output_of(cluster, job_id)}") from None
    return found[0]


def sessions_opened(admin: EmulatorAdmin, since: int) -> list[dict[str, Any]]:
    """The vendor sessions created since request number ``since`` (the vendor's log)."""
    return [r for r in admin.requests()[since:]
            if r["method"] == "POST" and r["path"] == "/api/v1/sessions"]


def lease_states(cluster: DockerCluster, job_id: int) -> list[str]:
    return [s for (s,) in cluster.journal("SELECT state FROM leases WHERE job_id=?", job_id)]


def assert_session_closed(admin: EmulatorAdmin, session_id: str) -> None:
    session = admin.session(session_id)
    assert session["accepting_jobs"] is False, session
    assert session["state"] in ("inactive", "closed"), session


def result(output: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(marker(output, "RESULT"))
    return body
