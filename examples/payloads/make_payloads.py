"""Regenerate the example payload files in this directory.

Needs qiskit (>= 1.0, with qiskit-qasm3-import not required) and pulser-core:
    pip install qiskit pulser-core
    python examples/payloads/make_payloads.py

The circuits are a Bell pair transpiled for physical qubits 0 and 1 with the native gates of
IBM Falcon processors such as ibm_manila, the emulator's default (cx, rz, sx, x); transpile for
your own backend's target before real use (Heron processors want cz, Eagle ecr).
"""

from __future__ import annotations

import json
from pathlib import Path

from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice
from pulser.waveforms import BlackmanWaveform
from qiskit import QuantumCircuit, qasm3
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import CouplingMap, generate_preset_pass_manager

HERE = Path(__file__).resolve().parent


def bell(measure: bool) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return circuit


def isa(circuit: QuantumCircuit) -> QuantumCircuit:
    pm = generate_preset_pass_manager(optimization_level=1, basis_gates=["cx", "rz", "sx", "x"],
                                      coupling_map=CouplingMap([[0, 1], [1, 0]]))
    return pm.run(circuit)


def sampler() -> dict[str, object]:
    # SamplerV2 input: pubs are [OpenQASM 3, parameter values?, shots?]
    return {"program_id": "sampler",
            "parameters": {"pubs": [[qasm3.dumps(isa(bell(True)))]], "shots": 1024,
                           "version": 2, "support_qiskit": False, "options": {}}}


def estimator() -> dict[str, object]:
    # EstimatorV2 input: pubs are [OpenQASM 3, observables, parameter values?, precision?]
    circuit = isa(bell(False))
    observables = [SparsePauliOp(p).apply_layout(circuit.layout) for p in ("ZZ", "XX")]
    return {"program_id": "estimator",
            "parameters": {"pubs": [[qasm3.dumps(circuit),
                                     [{o.paulis[0].to_label(): 1.0} for o in observables]]],
                           "version": 2, "support_qiskit": False, "options": {}}}


def pasqal() -> dict[str, object]:
    # Two atoms 8 um apart under a global resonant pi pulse (they block each other).
    register = Register.rectangle(1, 2, spacing=8, prefix="q")
    sequence = Sequence(register, AnalogDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantDetuning(BlackmanWaveform(1000, 3.14159), 0.0, 0.0), "rydberg")
    sequence.measure("ground-rydberg")
    return {"sequence": json.loads(sequence.to_abstract_repr()), "job_runs": 100}


def main() -> None:
    for name, payload in (("ibm_sampler.json", sampler()), ("ibm_estimator.json", estimator()),
                          ("pasqal_sequence.json", pasqal())):
        (HERE / name).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
