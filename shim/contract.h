/*
 * contract.h -- names the plugin shares with the Python package, generated
 * from src/slurm_qpu/shim_contract.py (make -C shim contract): do not edit.
 */
#ifndef SPANK_QPU_CONTRACT_H
#define SPANK_QPU_CONTRACT_H

#define QPU_OPTION_NAME "qpu"
#define QPU_PROLOG_OPTION_ENV "SPANK__SLURM_SPANK_OPTION_qpu_qpu"
#define QPU_JOB_OPTION_ENV "SLURM_SPANK__SLURM_SPANK_OPTION_qpu_qpu"
#define QPU_DEFAULT_STATE_DIR "/var/lib/slurm-qpu"
#define QPU_NODE_PLACEHOLDER "%n"
#define QPU_LEASE_DIR "jobs"
#define QPU_LEASE_SUFFIX ".json"
#define QPU_PYTHON_HALF "spank_qpu_python.so"
#define QPU_PYTHON_CALL_SYMBOL "spank_qpu_py_call"
#define QPU_HANDLER_MODULE "slurm_qpu.spank"

#endif
