#!/bin/bash
#SBATCH --job-name=qrmi-compat
#SBATCH --ntasks=1
#SBATCH --qpu=ibm_manila
# Drop-in compatibility: a program written for spank_qrmi + QRMI runs unchanged under
# slurm-qpu. QRMIService() reads the same environment contract. Needs: pip install qrmi[ibm].
python3 - <<'PY'
import json

from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qrmi.primitives import QRMIService
from qrmi.primitives.ibm import SamplerV2, get_backend

service = QRMIService()
resources = service.resources()
print("QRMIService sees:", [r.resource_id() for r in resources])
qrmi = resources[0]
backend = get_backend(qrmi)
bell = QuantumCircuit(2)
bell.h(0)
bell.cx(0, 1)
bell.measure_all()
isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell)
job = SamplerV2(qrmi).run([isa], shots=500)
print("counts", json.dumps(job.result()[0].data.meas.get_counts(), sort_keys=True))
PY
