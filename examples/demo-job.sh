#!/bin/bash
#SBATCH --job-name=qpu-demo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --qpu=ibm_manila
# The prolog opened a session on ibm_manila before this script started; every task on every
# node sees the QPU's QRMI environment, and the epilog closes the session when the job ends.
echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST holds QPU $QRMI_JOB_QPU_RESOURCES ($QRMI_JOB_QPU_TYPES)"
srun bash -c 'echo "[$(hostname) rank $SLURM_PROCID] session=$ibm_manila_QRMI_JOB_ACQUISITION_TOKEN timeout=${ibm_manila_QRMI_JOB_TIMEOUT_SECONDS}s"'
# In broker mode (the default) the job never holds the site's API key: its endpoint is the
# broker's proxy and its "API key" a token that stops working when the job ends.
echo "IBM endpoint: $ibm_manila_QRMI_IBM_QCS_ENDPOINT"
echo "API key as the job sees it: ${ibm_manila_QRMI_IBM_QCS_IAM_APIKEY:0:14}..."

# A hybrid step: an unmodified Qiskit program, reaching the QPU through slurm_qpu.client.
python3 -W ignore::DeprecationWarning - <<'PY'
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from slurm_qpu import client

backend = client.ibm_backend()            # the job's only QPU
session = client.ibm_session()            # the session the prolog opened
bell = QuantumCircuit(2)
bell.h(0)
bell.cx(0, 1)
bell.measure_all()
isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell)
job = SamplerV2(mode=session).run([isa], shots=1000)
counts = job.result()[0].data.meas.get_counts()
print(f"Bell state on {backend.name}, session {session.session_id}, job {job.job_id()}:")
print("counts:", dict(sorted(counts.items())))
PY
