"""The unmodified qiskit-ibm-runtime SDK and the qrmi wheel against the emulated IBM Quantum
Compute API (pointed at it as in vendor-apis.md 1.6 and 4.2)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.iam import IamService
from slurm_qpu_emulator.ibm_runtime import ibm_runtime_services
from slurm_qpu_emulator.tokens import TokenIssuer
from slurm_qpu_emulator.web import Server

Serve = Callable[..., Server]
pytest.importorskip("qiskit_ibm_runtime")
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.transpiler import generate_preset_pass_manager  # noqa: E402
from qiskit_ibm_runtime import (  # noqa: E402
    Batch,
    EstimatorV2,
    QiskitRuntimeService,
    SamplerV2,
    Session,
)
from qiskit_ibm_runtime.exceptions import (  # noqa: E402
    IBMInputValueError,
    RuntimeInvalidStateError,
)

LONG = "emulator:seconds=60"


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # SamplerV2/EstimatorV2 are deprecated in 0.50+, but they are what users run today
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.fixture
def server(serve: Serve, fast_config: EmulatorConfig, issuer: TokenIssuer,
           monkeypatch: pytest.MonkeyPatch) -> Server:
    server = serve(IamService(fast_config, issuer), *ibm_runtime_services(fast_config, issuer))
    monkeypatch.setenv("IAM_URL", server.url)  # the SDK's IAM base (0.49+)
    monkeypatch.setenv("QISKIT_FUNCTIONS_EXPERIMENTAL", "1")  # no Global Search lookup
    return server


@pytest.fixture
def service(server: Server, fast_config: EmulatorConfig) -> Any:
    # a URL containing "experimental" is used verbatim by the SDK's URL resolver
    return QiskitRuntimeService(channel="ibm_quantum_platform", token=fast_config.api_key,
                                instance=fast_config.service_crn,
                                url=f"{server.url}/experimental/api/v1")


def bell(backend: Any, measure: bool = True) -> Any:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return generate_preset_pass_manager(optimization_level=1, backend=backend,
                                        seed_transpiler=7).run(circuit)


def test_the_sdk_lists_backends_and_builds_their_target(service: Any) -> None:
    assert sorted(b.name for b in service.backends()) == ["ibm_brisbane", "ibm_manila"]
    backend = service.backend("ibm_manila")
    assert backend.target.num_qubits == 5 and "cx" in backend.target.operation_names
    assert backend.status().status_msg == "active" and backend.status().operational


def test_the_url_resolver_form_reaches_api_v1(server: Server,
                                             fast_config: EmulatorConfig) -> None:
    service = QiskitRuntimeService(
        channel="ibm_quantum_platform", token=fast_config.api_key,
        instance=fast_config.service_crn, url=server.url,
        url_resolver=lambda url, instance, private=False, channel=None: f"{url}/api/v1")
    assert service.backend("ibm_manila").name == "ibm_manila"
    assert any(r.path == "/api/v1/backends" for r in server.log)


def test_sampler_counts_for_a_bell_circuit_are_half_00_half_11(service: Any) -> None:
    backend = service.backend("ibm_manila")
    job = SamplerV2(mode=backend).run([bell(backend)], shots=2000)
    counts = job.result()[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"}
    assert 800 < counts["00"] < 1200 and sum(counts.values()) == 2000


def test_estimator_gives_the_bell_states_zz_expectation(service: Any) -> None:
    from qiskit.quantum_info import SparsePauliOp

    backend = service.backend("ibm_manila")
    circuit = bell(backend, measure=False)
    observable = SparsePauliOp("ZZ").apply_layout(circuit.layout)
    evs = EstimatorV2(mode=backend).run([(circuit, observable)]).result()[0].data.evs
    assert evs == pytest.approx(1.0)


def test_session_jobs_carry_the_session_id_and_the_session_is_closed_after(
        service: Any) -> None:
    backend = service.backend("ibm_manila")
    with Session(backend=backend) as session:
        job = SamplerV2(mode=session).run([bell(backend)], shots=100)
        assert job.session_id == session.session_id
        job.result()
        assert session.details()["mode"] == "dedicated"
    assert session.status() == "Closed"
    assert service.job(job.job_id()).session_id == session.session_id


def test_batch_jobs_run_in_a_batch_mode_session(service: Any) -> None:
    backend = service.backend("ibm_manila")
    with Batch(backend=backend) as batch:
        jobs = [SamplerV2(mode=batch).run([bell(backend)], shots=50) for _ in range(2)]
        assert all(j.result()[0].data.meas.num_shots == 50 for j in jobs)
        assert batch.details()["mode"] == "batch"
    assert {j.session_id for j in jobs} == {batch.session_id}
    assert batch.status() == "Closed"


def test_session_from_id_resumes_a_session_and_checks_its_mode(service: Any) -> None:
    backend = service.backend("ibm_manila")
    session = Session(backend=backend)
    resumed = Session.from_id(session.session_id, service=service)
    assert resumed.backend() == "ibm_manila"
    job = SamplerV2(mode=resumed).run([bell(backend)], shots=10)
    assert job.session_id == session.session_id
    with pytest.raises(IBMInputValueError) as raised:
        Batch.from_id(session.session_id, service=service)
    assert "has execution mode dedicated instead of batch" in str(raised.value)
    session.cancel()


def test_a_cancelled_job_cannot_be_cancelled_again(service: Any) -> None:
    backend = service.backend("ibm_manila")
    sampler = SamplerV2(mode=backend)
    sampler.options.environment.job_tags = [LONG]
    job = sampler.run([bell(backend)])
    job.cancel()
    assert job.status() == "CANCELLED"
    with pytest.raises(RuntimeInvalidStateError) as raised:
        service.job(job.job_id()).cancel()
    assert "Job cannot be cancelled" in str(raised.value)


def test_job_logs_tell_what_ran(service: Any) -> None:
    backend = service.backend("ibm_manila")
    job = SamplerV2(mode=backend).run([bell(backend)], shots=10)
    job.result()
    assert "StatevectorSampler on 2 active of 5 qubits" in job.logs()


def test_a_127_qubit_efficient_su2_on_brisbane_gets_synthetic_results_of_the_right_shape(
        service: Any) -> None:
    import numpy as np
    from qiskit.circuit.library import efficient_su2

    backend = service.backend("ibm_brisbane")
    circuit = efficient_su2(127, reps=1, entanglement="linear")
    circuit.measure_all()
    isa = generate_preset_pass_manager(optimization_level=0, backend=backend,
                                       seed_transpiler=7).run(circuit)
    values = np.random.default_rng(7).random((2, isa.num_parameters))
    job = SamplerV2(mode=backend).run([(isa, values, 64)])
    result = job.result()
    bits = result[0].data.meas
    assert bits.shape == (2,) and bits.num_shots == 64 and bits.num_bits == 127
    assert result.metadata["emulator"]["synthetic"] is True
    assert result[0].metadata["emulator"]["reason"] == ("127 active qubits exceed "
                                                        "max_qubits_simulated=20")
    assert "SYNTHETIC" in job.logs()


# -- the qrmi wheel --------------------------------------------------------------------------

def test_qrmi_sees_the_acquired_resource_and_its_sampler_gets_counts(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    qrmi = pytest.importorskip("qrmi")
    from qrmi.primitives import QRMIService
    from qrmi.primitives.ibm import SamplerV2 as QrmiSampler
    from qrmi.primitives.ibm import get_backend

    v1 = next(s for s in server.services if s.prefix == "/api/v1")
    entry = v1.qrmi_resources(server.url)[0]
    name = entry["name"]
    # the environment contract the plugin sets up for one acquired resource
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", name)
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", entry["type"])
    for key, value in entry["environment"].items():
        monkeypatch.setenv(f"{name}_{key}", value)
    resource = qrmi.QuantumResource(name, qrmi.ResourceType.IBMQuantumComputeService)
    token = resource.acquire()
    monkeypatch.setenv(f"{name}_QRMI_JOB_ACQUISITION_TOKEN", token)
    try:
        resources = QRMIService().resources()
        assert [r.resource_id() for r in resources] == [name]
        backend = get_backend(resources[0])
        job = QrmiSampler(resources[0]).run([bell(backend)], shots=300)
        counts = job.result()[0].data.meas.get_counts()
        assert set(counts) == {"00", "11"} and sum(counts.values()) == 300
        posted = [r for r in server.log if r.method == "POST" and r.path == "/api/v1/jobs"]
        assert len(posted) == 1
    finally:
        resource.release(token)
    session = next(iter(v1.state.sessions.values()))  # type: ignore[attr-defined]
    assert session.id == token and session.closed is not None
