#!/bin/bash
#SBATCH --job-name=ibm-sampler
#SBATCH --ntasks=1
#SBATCH --qpu=ibm_manila
# IBM Quantum Compute (Qiskit Runtime): SamplerV2 and EstimatorV2 in the session the job's
# prolog opened. Needs the job SDK: pip install 'slurm-qpu[ibm]' (the lab has it).
python3 -W ignore::DeprecationWarning - <<'PY'
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import EstimatorV2, SamplerV2

from slurm_qpu import client

backend = client.ibm_backend("ibm_manila")
session = client.ibm_session("ibm_manila")
pm = generate_preset_pass_manager(backend=backend, optimization_level=1)

ghz = QuantumCircuit(3)
ghz.h(0)
ghz.cx(0, 1)
ghz.cx(1, 2)
measured = ghz.copy()
measured.measure_all()

sampler_job = SamplerV2(mode=session).run([pm.run(measured)], shots=2000)
print("sampler job", sampler_job.job_id(), "in session", sampler_job.session_id)
print("counts", dict(sorted(sampler_job.result()[0].data.meas.get_counts().items())))

isa = pm.run(ghz)
zzz = SparsePauliOp("ZZZ").apply_layout(isa.layout)
estimator_job = EstimatorV2(mode=session).run([(isa, zzz)])
print("estimator job", estimator_job.job_id(), "<ZZZ> =", float(estimator_job.result()[0].data.evs))
PY
