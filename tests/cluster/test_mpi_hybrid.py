"""Tutorial 3_cpp: quantum + MPI across nodes. 2 nodes x 2 tasks; every rank reads
SLURM_JOB_QPU_RESOURCES (QRMI's legacy name) and the QPU's variables; rank 0 runs the
sampler and broadcasts the counts over MPI."""

from __future__ import annotations

import json

from jobs import QPU, SAMPLER, markers, run

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

HYBRID = f"""
import io, json, os, socket
from contextlib import redirect_stdout
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
seen = {{"qpus": os.environ.get("SLURM_JOB_QPU_RESOURCES"),
        "types": os.environ.get("SLURM_JOB_QPU_TYPES"),
        "endpoint": os.environ.get("{QPU}_QRMI_IBM_QCS_ENDPOINT", "")}}
counts = None
if rank == 0:
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile({SAMPLER!r}, "sampler", "exec"))
    counts = json.loads(out.getvalue().split("RESULT ", 1)[1])["counts"]
counts = comm.bcast(counts, root=0)
print("RANK " + json.dumps({{"rank": rank, "size": comm.Get_size(),
      "host": socket.gethostname(), "shots": sum(counts.values()), **seen}}), flush=True)
"""


def test_two_nodes_two_tasks_mpi_every_rank_sees_the_qpu_rank0_samples(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    job = run(cluster, (
        f"#!/bin/bash\n#SBATCH -p normal --nodes=2 --ntasks-per-node=2 --qpu={QPU}\n"
        "srun python3 - <<'PY'\n" + HYBRID + "PY\n"))
    assert job.state == "COMPLETED", job.output
    ranks = [json.loads(r) for r in markers(job.output, "RANK")]
    assert sorted(r["rank"] for r in ranks) == [0, 1, 2, 3], job.output
    assert {r["host"] for r in ranks} == {"c1", "c2"}
    for r in ranks:
        assert r["size"] == 4
        assert r["qpus"] == QPU
        assert r["types"] == "ibm-quantum-compute-service"
        assert r["endpoint"].startswith("http://broker:8291/p/")
        assert r["shots"] == 400  # rank 0's counts reached every rank
