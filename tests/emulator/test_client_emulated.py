"""slurm_qpu.client inside a (simulated) job: the environment contract the plugin exports,
the real SDKs, the emulated vendors."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("qiskit_ibm_runtime")
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from slurm_qpu import client
from slurm_qpu.config import ResourceDef
from slurm_qpu.jobenv.contract import Acquired, build
from slurm_qpu.vendors.common.base import JobContext, ResourceSpec
from slurm_qpu.vendors.registry import create
from slurm_qpu_emulator import Emulator, EmulatorConfig


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(job_seconds=0.2))
    emulator.start()
    yield emulator
    emulator.stop()


def job_environment(emulator: Emulator, *names: str, monkeypatch: pytest.MonkeyPatch,
                    **settings: str) -> dict[str, str]:
    """What the plugin exports into a task: acquire as the prolog does, build the contract.
    ``settings`` are added to every QPU's config environment."""
    entries = {r["name"]: r for r in emulator.qrmi_config()["resources"]}
    for entry in entries.values():
        entry["environment"].update(settings)
    acquired = []
    for name in names:
        rdef = ResourceDef.model_validate(entries[name])
        qpu = create(ResourceSpec(name, rdef.current_type, rdef.effective_environment(),
                                  JobContext(42, 1000, "alice", 600)))
        acquired.append(Acquired(rdef, qpu.acquire()))  # type: ignore[attr-defined]
    env = build(acquired, job_id=42, uid=1000, time_limit_seconds=600).merged()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(autouse=True)
def _clean_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("IAM_URL", "QISKIT_FUNCTIONS_EXPERIMENTAL"):
        monkeypatch.delenv(var, raising=False)
    warnings.simplefilter("ignore", DeprecationWarning)


def test_sampler_on_the_clients_session_runs_in_the_prologs_session(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    env = job_environment(emulator, "ibm_manila", monkeypatch=monkeypatch)
    backend = client.ibm_backend()
    session = client.ibm_session()
    assert session.session_id == env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    job = SamplerV2(mode=session).run([isa], shots=200)
    counts = job.result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 200 and set(counts) <= {"00", "11"}
    assert job.session_id == session.session_id


def test_a_qpu_configured_for_batch_mode_gives_a_batch(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from qiskit_ibm_runtime import Batch

    env = job_environment(emulator, "ibm_manila", monkeypatch=monkeypatch,
                          QRMI_IBM_QCS_SESSION_MODE="batch")
    batch = client.ibm_session()
    assert isinstance(batch, Batch)
    assert batch.session_id == env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]


def test_pasqal_client_submits_a_batch_with_the_jobs_credentials(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pulser")
    from pulser import Pulse, Sequence
    from pulser.devices import AnalogDevice
    from pulser.register.special_layouts import TriangularLatticeLayout

    job_environment(emulator, "EMU_FREE", monkeypatch=monkeypatch)
    register = TriangularLatticeLayout(61, 5).define_register(0, 1, qubit_ids=["a", "b"])
    seq = Sequence(register, AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(100, 1.0, 0.0, 0.0), "rydberg")
    seq.measure("ground-rydberg")
    sdk: Any = client.pasqal_client()
    batch = sdk.create_batch(seq.to_abstract_repr(), jobs=[{"runs": 50}],
                             device_type="EMU_FREE")
    deadline = time.monotonic() + 30
    while batch.status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.2)
        batch = sdk.get_batch(batch.id)
    assert batch.status == "DONE"
    result = batch.ordered_jobs[0].result
    assert sum(result.values()) == 50 and all(len(bits) == 2 for bits in result)


def test_resource_gives_slurm_qpus_object_for_any_type(
        emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    job_environment(emulator, "ibm_kawasaki", "ibm_manila", monkeypatch=monkeypatch)
    assert client.resource("ibm_kawasaki").is_accessible()
    assert [q.name for q in client.qpus()] == ["ibm_kawasaki", "ibm_manila"]
