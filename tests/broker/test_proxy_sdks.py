"""The vendor SDKs inside a job in broker mode: they hold only the job token and the
proxy URL, and they work."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

pytest.importorskip("qiskit_ibm_runtime")
from harness import StartBroker, set_job_environment
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from slurm_qpu import client
from slurm_qpu.emulator import Emulator, EmulatorConfig


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(job_seconds=0.2))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _clean_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("IAM_URL", "QISKIT_FUNCTIONS_EXPERIMENTAL"):
        monkeypatch.delenv(var, raising=False)
    warnings.simplefilter("ignore", DeprecationWarning)


def bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def test_sampler_runs_through_the_proxy_in_the_jobs_session(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    b = start_broker(emulator.qrmi_config()["resources"])
    lease = b.acquire(7, "ibm_manila")
    assert lease["state"] == "acquired", lease
    env = lease["env"]
    set_job_environment(monkeypatch, env)
    backend = client.ibm_backend()
    session = client.ibm_session()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell())
    job = SamplerV2(mode=session).run([isa], shots=100)
    counts = job.result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 100
    assert job.session_id == env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]
