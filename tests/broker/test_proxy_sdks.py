"""The vendor SDKs inside a job in broker mode: they hold only the job token and the
proxy URL, and they work."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest

pytest.importorskip("qiskit_ibm_runtime")
from harness import StartBroker, set_job_environment
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from slurm_qpu import client
from slurm_qpu.redact import is_secret_key
from slurm_qpu_emulator import Emulator


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


def test_the_release_answer_carries_the_jobs_usage_record(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    b = start_broker(emulator.qrmi_config()["resources"])
    lease = b.acquire(7, "ibm_manila")
    set_job_environment(monkeypatch, lease["env"])
    backend = client.ibm_backend()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell())
    sampler = SamplerV2(mode=client.ibm_session())
    first = sampler.run([isa, (isa, None, 50)], shots=100)
    first.result()
    second = sampler.run([isa])  # IBM's default: 4096 shots
    second.result()
    state = next(s for s in emulator.server.services if s.prefix == "/api/v1").state
    billed = sum(state.jobs[j.job_id()].quantum_seconds for j in (first, second))
    assert billed > 0
    answer = b.node().release(7)
    [usage] = answer["usage"]
    assert (usage["qpu"], usage["type"], usage["vendor_jobs"], usage["shots"]) == \
        ("ibm_manila", "ibm-quantum-compute-service", 2, 150 + 4096)
    assert usage["qpu_seconds"] == pytest.approx(billed)
    assert usage["start"] <= usage["end"] and usage["session_seconds"] >= 0


def session_mode(emulator: Emulator, session_id: str) -> str:
    state = next(s for s in emulator.server.services if s.prefix == "/api/v1").state
    return str(state.sessions[session_id].mode)


def test_estimator_runs_through_the_proxy_in_the_jobs_session(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_ibm_runtime import EstimatorV2

    b = start_broker(emulator.qrmi_config()["resources"])
    env = b.acquire(7, "ibm_manila")["env"]
    set_job_environment(monkeypatch, env)
    backend = client.ibm_backend()
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    observable = SparsePauliOp("ZZ").apply_layout(isa.layout)
    job = EstimatorV2(mode=client.ibm_session()).run([(isa, observable)])
    assert float(job.result()[0].data.evs) == pytest.approx(1.0, abs=0.1)
    assert job.session_id == env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]


def test_a_qpu_configured_for_batch_mode_gives_a_batch_bound_to_the_lease(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from qiskit_ibm_runtime import Batch

    resources = emulator.qrmi_config()["resources"]
    for r in resources:
        if r["name"] == "ibm_manila":
            r["environment"]["QRMI_IBM_QCS_SESSION_MODE"] = "batch"
    b = start_broker(resources)
    env = b.acquire(7, "ibm_manila")["env"]
    set_job_environment(monkeypatch, env)
    batch = client.ibm_session()
    session_id = env["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]
    assert isinstance(batch, Batch) and batch.session_id == session_id
    assert session_mode(emulator, session_id) == "batch"


def test_a_users_session_mode_override_gives_a_batch_bound_to_the_lease(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from qiskit_ibm_runtime import Batch

    b = start_broker(emulator.qrmi_config()["resources"])
    lease = b.acquire(7, "ibm_manila", overrides=json.dumps(
        {"ibm_manila": {"QRMI_IBM_QCS_SESSION_MODE": "batch"}}))
    assert lease["warnings"] == []
    set_job_environment(monkeypatch, lease["env"])
    batch = client.ibm_session()
    session_id = lease["env"]["ibm_manila_QRMI_JOB_ACQUISITION_TOKEN"]
    assert isinstance(batch, Batch) and batch.session_id == session_id
    assert session_mode(emulator, session_id) == "batch"
    isa = generate_preset_pass_manager(backend=client.ibm_backend(),
                                       optimization_level=1).run(bell())
    job = SamplerV2(mode=batch).run([isa], shots=20)
    assert sum(job.result()[0].data.meas.get_counts().values()) == 20
    assert job.session_id == session_id


def test_the_pasqal_sdk_runs_a_batch_through_the_proxy(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pasqal_cloud")
    pytest.importorskip("pulser")
    from pulser import Pulse, Sequence
    from pulser.devices import AnalogDevice
    from pulser.register.special_layouts import TriangularLatticeLayout

    b = start_broker(emulator.qrmi_config()["resources"])
    lease = b.acquire(7, "EMU_FREE")
    assert lease["state"] == "acquired", lease
    set_job_environment(monkeypatch, lease["env"])
    register = TriangularLatticeLayout(61, 5).define_register(0, 1, qubit_ids=["a", "b"])
    seq = Sequence(register, AnalogDevice)
    seq.declare_channel("rydberg", "rydberg_global")
    seq.add(Pulse.ConstantPulse(100, 1.0, 0.0, 0.0), "rydberg")
    seq.measure("ground-rydberg")
    sdk: Any = client.pasqal_client()
    batch = sdk.create_batch(seq.to_abstract_repr(), jobs=[{"runs": 30}],
                             device_type="EMU_FREE")
    deadline = time.monotonic() + 30
    while batch.status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.1)
        batch = sdk.get_batch(batch.id)
    assert batch.status == "DONE"
    result = batch.ordered_jobs[0].result
    assert sum(result.values()) == 30 and all(len(bits) == 2 for bits in result)
    usage = b.node().release(7)["usage"]
    # the usage record counts the batch's one job and its runs, not the batch itself
    assert [(u["qpu"], u["vendor_jobs"], u["shots"]) for u in usage] == [("EMU_FREE", 1, 30)]
    from pasqal_cloud.errors import BatchFetchingError  # a BaseException, not an Exception

    with pytest.raises(BatchFetchingError) as raised:
        sdk.get_batch(batch.id)
    assert "401: missing, unknown or expired job token" in str(raised.value)


def test_the_qrmi_wheel_works_with_only_the_jobs_environment(
        emulator: Emulator, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    from qrmi.primitives.ibm import SamplerV2 as QrmiSampler
    from qrmi.primitives.ibm import get_backend

    b = start_broker(emulator.qrmi_config()["resources"])
    env = b.acquire(7, "ibm_manila")["env"]
    set_job_environment(monkeypatch, env)
    resources = qrmi.QRMIService().resources()
    assert [r.resource_id() for r in resources] == ["ibm_manila"]
    resource = qrmi.QuantumResource("ibm_manila", qrmi.ResourceType.IBMQuantumComputeService)
    assert resource.is_accessible()
    backend = get_backend(resources[0])
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell())
    job = QrmiSampler(resources[0]).run([isa], shots=40)
    counts = job.result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 40


def test_no_value_a_job_gets_is_a_configured_secret(
        emulator: Emulator, start_broker: StartBroker) -> None:
    resources = emulator.qrmi_config()["resources"]
    b = start_broker(resources)
    lease = b.acquire(7, "ibm_manila,ibm_kawasaki,EMU_FREE")
    assert lease["state"] == "acquired", lease
    secrets = {v for r in resources for k, v in r["environment"].items() if is_secret_key(k)}
    assert {emulator.config.api_key, emulator.config.service_crn, emulator.config.s3_secret_key,
            emulator.config.s3_access_key, emulator.config.pasqal_client_secret} <= secrets
    leaked = {k: v for k, v in lease["env"].items() if any(s in v for s in secrets)}
    assert leaked == {}
