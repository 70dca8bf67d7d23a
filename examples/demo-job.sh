#!/bin/bash
#SBATCH --job-name=qpu-demo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --qpu=sim_a,sim_b
# Every task on every node sees the QRMI environment of the QPUs the prolog acquired.
echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST holds QPUs $SLURM_JOB_QPU_RESOURCES ($SLURM_JOB_QPU_TYPES)"
srun bash -c 'echo "[$(hostname) rank $SLURM_PROCID] QRMI_JOB_QPU_RESOURCES=$QRMI_JOB_QPU_RESOURCES sim_a token=$sim_a_QRMI_JOB_ACQUISITION_TOKEN timeout=${sim_a_QRMI_JOB_TIMEOUT_SECONDS}s qubits=$sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"'
