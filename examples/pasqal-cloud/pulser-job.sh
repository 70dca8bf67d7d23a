#!/bin/bash
#SBATCH --job-name=pasqal-pulser
#SBATCH --ntasks=1
#SBATCH --qpu=EMU_FREE
# Pasqal Cloud: a pulser sequence submitted with the pasqal-cloud SDK, credentials from the
# job's environment. Needs: pip install 'slurm-qpu[pasqal]' (the lab has it).
python3 - <<'PY'
import time

from pulser import Pulse, Sequence
from pulser.devices import AnalogDevice
from pulser.register.special_layouts import TriangularLatticeLayout

from slurm_qpu import client

register = TriangularLatticeLayout(61, 5).define_register(0, 1, 2, qubit_ids=["q0", "q1", "q2"])
seq = Sequence(register, AnalogDevice)
seq.declare_channel("rydberg", "rydberg_global")
seq.add(Pulse.ConstantPulse(1000, 1.0, 0.0, 0.0), "rydberg")
seq.measure("ground-rydberg")

sdk = client.pasqal_client()                       # the job's only Pasqal QPU
device = client.qpus()[0].name                     # the QRMI name is the device type
batch = sdk.create_batch(seq.to_abstract_repr(), jobs=[{"runs": 100}], device_type=device)
print("batch", batch.id, "on", device)
while batch.status in ("PENDING", "RUNNING"):
    time.sleep(1)
    batch = sdk.get_batch(batch.id)
print("status", batch.status)
for job in batch.ordered_jobs:
    print("counter", dict(sorted(job.result.items())) if job.result else job.errors)
PY
