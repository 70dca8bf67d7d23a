"""Running IBM primitive jobs (sampler, estimator) for the emulator.

Contract used by ibm_runtime.py and ibm_system.py:

    run_primitive(program_id, params, backend, config) -> PrimitiveOutcome

``params`` is the JSON ``params`` of a job in either form clients send: the SDK's
(RuntimeEncoder types, circuits as QPY) or qrmi's (circuits as OpenQASM 3 strings). Input the
real service would reject raises PrimitiveError(message); the job then ends Failed with it.

How circuits run:
- sampler with qiskit's reference ``StatevectorSampler``, estimator with
  ``StatevectorEstimator`` (ideal, noise-free; estimator values are exact, stds 0).
- Only the *active* qubits are simulated: a circuit transpiled for a 127-qubit backend usually
  touches a few. Idle qubits stay in |0>, so their measurements read 0 and their Pauli factors
  are known (I, Z -> 1; X, Y -> 0): dropping them changes no result.
- When the active qubits exceed ``config.max_qubits_simulated`` (or the reference simulator
  cannot run the circuit, e.g. mid-circuit measurements), the pub gets *synthetic* results of
  the right shape (same registers, shots and bit widths; uniformly random bits; expectation
  values 0). They are marked: pub metadata ``emulator.synthetic``, result metadata
  ``emulator.synthetic`` and a ``SYNTHETIC`` line in the job logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slurm_qpu_emulator.config import EmulatorConfig
from slurm_qpu_emulator.ibm_backends import HINT, Backend, EmulatorDependencyMissing

PROGRAMS = ("sampler", "estimator")
DEFAULT_SHOTS = 4096  # the service's default when neither pub nor options give shots
# instructions every IBM backend accepts besides its basis gates
STRUCTURAL = frozenset({"measure", "barrier", "delay", "reset", "if_else", "while_loop",
                        "for_loop", "switch_case", "break_loop", "continue_loop", "box",
                        "store"})
NOT_SIMULATED = frozenset({"barrier", "delay"})
VALIDATION = "Error in the validation process of the job."  # IBM error code 1002


class PrimitiveError(Exception):
    pass


@dataclass(frozen=True)
class PrimitiveOutcome:
    result: str  # RuntimeEncoder JSON of a PrimitiveResult, served as text/plain
    logs: str
    synthetic: bool  # True when circuits were too wide to simulate
    quantum_seconds: float


@dataclass(frozen=True)
class _Ran:
    result: Any  # SamplerPubResult | PubResult
    log: str
    synthetic: bool
    shots: int


def run_primitive(program_id: str, params: Any, backend: Backend,
                  config: EmulatorConfig) -> PrimitiveOutcome:
    if program_id not in PROGRAMS:
        raise PrimitiveError(f"Program {program_id} is not supported by this backend.")
    q = _Qiskit()
    decoded = q.decode(params)
    if not isinstance(decoded, dict):
        raise PrimitiveError(f"{VALIDATION} The job params must be a JSON object.")
    if decoded.get("version", 1) != 2:
        raise PrimitiveError(f"{VALIDATION} Only version 2 of the {program_id} primitive is "
                             "supported; use SamplerV2 / EstimatorV2.")
    pubs = decoded.get("pubs")
    if not isinstance(pubs, list) or not pubs:
        raise PrimitiveError(f"{VALIDATION} 'pubs' must be a non-empty list.")
    options = decoded.get("options")
    options = options if isinstance(options, dict) else {}
    shots = decoded.get("shots") or options.get("default_shots") or DEFAULT_SHOTS
    runs: list[_Ran] = []
    for index, raw in enumerate(pubs):
        if program_id == "sampler":
            runs.append(_sample(q, index, raw, shots, backend, config))
        else:
            runs.append(_estimate(q, index, raw, backend, config))
    synthetic = any(r.synthetic for r in runs)
    result = q.PrimitiveResult(
        [r.result for r in runs],
        metadata={"version": 2, "emulator": {"synthetic": synthetic, "backend": backend.name}})
    logs = "".join(r.log for r in runs)
    if synthetic:
        logs += "SYNTHETIC results: at least one pub was not simulated (see above)\n"
    shots_total = sum(r.shots for r in runs)
    seconds = round(0.05 * len(runs) + shots_total * 2.5e-4, 3)  # ~4 kHz repetition rate
    return PrimitiveOutcome(json.dumps(result, cls=q.RuntimeEncoder), logs, synthetic, seconds)


class _Qiskit:
    """The qiskit pieces, imported on first use: the emulator's optional dependencies."""

    def __init__(self) -> None:
        try:
            import numpy
            from qiskit import QuantumCircuit, QuantumRegister, qasm3  # type: ignore[import-untyped]
            from qiskit.primitives import (  # type: ignore[import-untyped]
                BitArray,
                DataBin,
                PrimitiveResult,
                PubResult,
                SamplerPubResult,
                StatevectorEstimator,
                StatevectorSampler,
            )
            from qiskit.primitives.containers.estimator_pub import (  # type: ignore[import-untyped]
                EstimatorPub,
            )
            from qiskit.primitives.containers.sampler_pub import (  # type: ignore[import-untyped]
                SamplerPub,
            )
            from qiskit_ibm_runtime.json import (  # type: ignore[import-untyped]
                RuntimeDecoder,
                RuntimeEncoder,
            )
        except ImportError as exc:
            raise EmulatorDependencyMissing(f"IBM primitives need qiskit and "
                                            f"qiskit-ibm-runtime ({exc}); {HINT}") from None
        self.np = numpy
        self.QuantumCircuit = QuantumCircuit
        self.QuantumRegister = QuantumRegister
        self.qasm3 = qasm3
        self.BitArray = BitArray
        self.DataBin = DataBin
        self.PrimitiveResult = PrimitiveResult
        self.PubResult = PubResult
        self.SamplerPubResult = SamplerPubResult
        self.StatevectorEstimator = StatevectorEstimator
        self.StatevectorSampler = StatevectorSampler
        self.EstimatorPub = EstimatorPub
        self.SamplerPub = SamplerPub
        self.RuntimeDecoder = RuntimeDecoder
        self.RuntimeEncoder = RuntimeEncoder

    def decode(self, params: Any) -> Any:
        try:
            return json.loads(json.dumps(params), cls=self.RuntimeDecoder)
        except Exception as exc:  # QPY, numpy and zlib raise many types on bad data
            raise PrimitiveError(f"{VALIDATION} The params could not be decoded: "
                                 f"{type(exc).__name__}: {exc}") from None

    def circuit(self, index: int, value: Any) -> Any:
        if isinstance(value, self.QuantumCircuit):
            return value
        if isinstance(value, str):
            try:
                return self.qasm3.loads(value)
            except Exception as exc:  # the importer raises its own error types
                raise PrimitiveError(f"{VALIDATION} Pub {index}: the OpenQASM 3 circuit "
                                     f"could not be parsed: {exc}") from None
        raise PrimitiveError(f"{VALIDATION} Pub {index}: expected a circuit (QPY or "
                             f"OpenQASM 3), got {type(value).__name__}.")


def _pub_parts(index: int, raw: Any, size: int) -> list[Any]:
    """A pub as a list of at most ``size`` parts (a bare circuit is a 1-part pub)."""
    parts = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not 1 <= len(parts) <= size:
        raise PrimitiveError(f"{VALIDATION} Pub {index} must have 1 to {size} elements, "
                             f"not {len(parts)}.")
    return parts


def _values(circuit: Any, values: Any) -> Any:
    # qrmi sends [] for circuits without parameters; the pub classes want None then
    if circuit.num_parameters == 0 and (values is None or _empty(values)):
        return None
    return values


def _empty(values: Any) -> bool:
    try:
        return len(values) == 0
    except TypeError:
        return False


def _on_physical_qubits(q: _Qiskit, index: int, circuit: Any, backend: Backend) -> Any:
    """An OpenQASM 3 circuit on hardware qubits (``$n``) comes back with as many qubits as
    it names, numbered in the layout; put each on its physical index, as a transpiled QPY
    circuit is, so observables laid out for the backend match it."""
    layout = getattr(circuit, "layout", None)
    if layout is None or layout.initial_layout is None:
        return circuit
    physical = {q_: int(p) for p, q_ in layout.initial_layout.get_physical_bits().items()}
    if not physical or set(physical) != set(circuit.qubits):
        return circuit  # a transpiled circuit: its layout refers to the original qubits
    if max(physical.values()) >= backend.num_qubits:
        raise PrimitiveError(f"{VALIDATION} Pub {index}: the circuit uses qubit "
                             f"{max(physical.values())} but {backend.name} has "
                             f"{backend.num_qubits} qubits.")
    return _rebuild(q, circuit, backend.num_qubits, physical)


def _rebuild(q: _Qiskit, circuit: Any, width: int, where: dict[Any, int]) -> Any:
    """``circuit`` with qubit ``b`` moved to index ``where[b]`` of a ``width``-qubit register;
    same classical bits and registers. Barriers, delays and measurements of qubits not in
    ``where`` are dropped."""
    register = q.QuantumRegister(max(width, 1), "q")
    out = q.QuantumCircuit(register, name=circuit.name, global_phase=circuit.global_phase,
                           metadata=circuit.metadata)
    out.add_bits(circuit.clbits)
    for creg in circuit.cregs:
        out.add_register(creg)
    for inst in circuit.data:
        name = inst.operation.name
        if name in NOT_SIMULATED and not all(b in where for b in inst.qubits):
            continue
        if name == "measure" and inst.qubits[0] not in where:
            continue
        out.append(inst.replace(qubits=[register[where[b]] for b in inst.qubits]))
    return out


def _check_isa(index: int, circuit: Any, backend: Backend) -> None:
    """Reject circuits the backend cannot run, as the service does for non-ISA circuits."""
    conf = backend.configuration
    if circuit.num_qubits > backend.num_qubits:
        raise PrimitiveError(f"{VALIDATION} Pub {index}: the circuit has {circuit.num_qubits} "
                             f"qubits but {backend.name} has {backend.num_qubits}.")
    allowed = set(conf.get("basis_gates", [])) | set(conf.get("supported_instructions", []))
    allowed |= STRUCTURAL
    edges: dict[str, set[tuple[int, ...]]] = {}
    for gate in conf.get("gates", []):
        if isinstance(gate, dict) and gate.get("coupling_map"):
            edges.setdefault(str(gate["name"]), set()).update(
                tuple(int(x) for x in qargs) for qargs in gate["coupling_map"])
    for inst in circuit.data:
        name = inst.operation.name
        qargs = tuple(circuit.find_bit(b).index for b in inst.qubits)
        if name not in allowed or (name in edges and len(qargs) > 1
                                   and qargs not in edges[name]):
            raise PrimitiveError(f"The instruction {name} on qubits {qargs} is not supported "
                                 f"by the target system. Circuits that do not match the "
                                 f"target hardware definition are no longer supported.")


def _active(circuit: Any) -> list[int]:
    """Indices of qubits some operation acts on (measurement, barrier and delay aside)."""
    used: set[int] = set()
    for inst in circuit.data:
        if inst.operation.name not in NOT_SIMULATED and inst.operation.name != "measure":
            used.update(circuit.find_bit(b).index for b in inst.qubits)
    return sorted(used)


def _compact(q: _Qiskit, circuit: Any, active: list[int]) -> Any:
    """``circuit`` on its active qubits only. Idle qubits stay |0>: dropping their
    measurements leaves those bits 0, as they would read."""
    return _rebuild(q, circuit, len(active), {circuit.qubits[i]: j for j, i in enumerate(active)})


def _plan(circuit: Any, config: EmulatorConfig) -> tuple[list[int], str | None]:
    """The qubits to simulate, or the reason the pub gets synthetic results."""
    active = _active(circuit)
    if len(active) > config.max_qubits_simulated:
        return active, (f"{len(active)} active qubits exceed max_qubits_simulated="
                        f"{config.max_qubits_simulated}")
    return active, None


def _sample(q: _Qiskit, index: int, raw: Any, default_shots: Any, backend: Backend,
            config: EmulatorConfig) -> _Ran:
    parts = _pub_parts(index, raw, 3)
    circuit = _on_physical_qubits(q, index, q.circuit(index, parts[0]), backend)
    _check_isa(index, circuit, backend)
    values = _values(circuit, parts[1] if len(parts) > 1 else None)
    shots = parts[2] if len(parts) > 2 and parts[2] is not None else default_shots
    try:
        pub = q.SamplerPub.coerce((circuit, values, shots))
    except Exception as exc:  # the pub classes raise ValueError/TypeError on bad shapes
        raise PrimitiveError(f"{VALIDATION} Pub {index}: {exc}") from None
    if not circuit.cregs:
        raise PrimitiveError(f"{VALIDATION} Pub {index}: the circuit has no output classical "
                             "registers, so the result would have no data.")
    active, why = _plan(circuit, config)
    if why is None:
        small = _compact(q, circuit, active)
        try:
            small_pub = q.SamplerPub(small, pub.parameter_values, pub.shots)
            result = q.StatevectorSampler().run([small_pub]).result()[0]
        except Exception as exc:  # e.g. mid-circuit measurement: the simulator's limits
            why = f"the reference simulator cannot run it: {exc}"
        else:
            meta = dict(result.metadata, emulator={"synthetic": False,
                                                   "simulated_qubits": len(active)})
            log = (f"pub {index}: sampled {pub.shots} shots x {pub.shape or 'scalar'} "
                   f"with StatevectorSampler on {len(active)} active of "
                   f"{circuit.num_qubits} qubits\n")
            return _Ran(q.SamplerPubResult(result.data, meta), log, False,
                        pub.shots * max(pub.size, 1))
    rng = q.np.random.default_rng()
    fields = {creg.name: q.BitArray.from_bool_array(
        rng.integers(0, 2, size=(*pub.shape, pub.shots, creg.size)).astype(bool))
        for creg in circuit.cregs}
    meta = {"shots": pub.shots, "circuit_metadata": circuit.metadata,
            "emulator": {"synthetic": True, "reason": why}}
    log = f"pub {index}: SYNTHETIC random bits ({why})\n"
    return _Ran(q.SamplerPubResult(q.DataBin(shape=pub.shape, **fields), meta), log, True,
                pub.shots * max(pub.size, 1))


def _estimate(q: _Qiskit, index: int, raw: Any, backend: Backend,
              config: EmulatorConfig) -> _Ran:
    parts = _pub_parts(index, raw, 4)
    if len(parts) < 2:
        raise PrimitiveError(f"{VALIDATION} Pub {index}: an estimator pub needs a circuit "
                             "and observables.")
    circuit = _on_physical_qubits(q, index, q.circuit(index, parts[0]), backend)
    _check_isa(index, circuit, backend)
    circuit = circuit.remove_final_measurements(inplace=False)
    values = _values(circuit, parts[2] if len(parts) > 2 else None)
    try:
        pub = q.EstimatorPub.coerce((circuit, parts[1], values))
    except Exception as exc:  # observables of the wrong width, bad shapes, ...
        raise PrimitiveError(f"{VALIDATION} Pub {index}: {exc}") from None
    active, why = _plan(circuit, config)
    if why is None:
        try:
            small = _compact(q, circuit, active)
            observables = _restrict(q, pub.observables.tolist(), active, circuit.num_qubits)
            small_pub = q.EstimatorPub.coerce((small, observables, pub.parameter_values))
            result = q.StatevectorEstimator().run([small_pub]).result()[0]
        except Exception as exc:  # e.g. control flow: the simulator's limits
            why = f"the reference simulator cannot run it: {exc}"
        else:
            meta = dict(result.metadata, emulator={"synthetic": False,
                                                   "simulated_qubits": len(active)})
            log = (f"pub {index}: exact expectation values {pub.shape or 'scalar'} with "
                   f"StatevectorEstimator on {len(active)} active of "
                   f"{circuit.num_qubits} qubits\n")
            return _Ran(q.PubResult(result.data, meta), log, False, 0)
    shape = pub.shape
    data = q.DataBin(evs=q.np.zeros(shape), stds=q.np.zeros(shape), shape=shape)
    meta = {"target_precision": 0.0, "circuit_metadata": circuit.metadata,
            "emulator": {"synthetic": True, "reason": why}}
    log = f"pub {index}: SYNTHETIC expectation values 0 ({why})\n"
    return _Ran(q.PubResult(data, meta), log, True, 0)


def _restrict(q: _Qiskit, observables: Any, active: list[int], width: int) -> Any:
    """Observables (nested lists of {pauli label: coeff}) rewritten on the active qubits.
    Idle qubits are in |0>: a term with X or Y there has expectation 0 and is dropped."""
    if isinstance(observables, list):
        return [_restrict(q, o, active, width) for o in observables]
    small: dict[str, float] = {}
    keep = set(active)
    idle = [i for i in range(width) if i not in keep]
    for label, coeff in observables.items():
        # labels are little-endian: the last character is qubit 0
        if any(label[width - 1 - i] in "XY" for i in idle):
            continue
        kept = "".join(label[width - 1 - i] for i in reversed(active)) or "I"
        small[kept] = small.get(kept, 0.0) + coeff
    if not small:
        small = {"I" * max(len(active), 1): 0.0}
    return small
