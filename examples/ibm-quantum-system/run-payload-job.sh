#!/bin/bash
#SBATCH --job-name=qs-payload
#SBATCH --ntasks=1
#SBATCH --qpu=ibm_lagos
# IBM Quantum System (on-prem, jobs through S3-compatible storage): run a QRMI payload file
# with `slurm-qpu run`. Usage: sbatch run-payload-job.sh [PAYLOAD.json]
# (default: ibm_sampler.json in the submit directory; see examples/payloads/). scancel or
# the time limit cancels the vendor job before the step ends.
payload=${1:-ibm_sampler.json}
slurm-qpu run ibm_lagos "$payload" "result-$SLURM_JOB_ID.json" || exit
python3 -c '
import json, sys
result = json.load(open(sys.argv[1]))
print("result", result["__type__"], "with", len(result["__value__"]["pub_results"]), "pub(s)")
' "result-$SLURM_JOB_ID.json"
