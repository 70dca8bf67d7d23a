"""Tutorial scenarios 1_multiple_jobs and 2_job_split: a quantum job then a dependent
classical MPI job; the map/execute/result chain with the payload runner; the same as one
heterogeneous job; and all steps in one job sharing one session."""

from __future__ import annotations

import json

from jobs import (
    BELL_ISA,
    QPU,
    SAMPLER,
    assert_session_closed,
    lease_states,
    marker,
    markers,
    output_of,
    result,
    run,
    sessions_opened,
)

from slurm_qpu_emulator.admin import EmulatorAdmin
from slurm_qpu_lab.docker_cluster import DockerCluster

# Every rank reports its host and whether it sees any QPU variable; allreduce proves MPI.
MPI_COUNT = """
import os, socket
from mpi4py import MPI
comm = MPI.COMM_WORLD
qpu_vars = sorted(k for k in os.environ if "QRMI" in k or k.startswith("SLURM_JOB_QPU"))
total = comm.allreduce(comm.Get_rank(), op=MPI.SUM)
print(f"RANK {comm.Get_rank()}/{comm.Get_size()} {socket.gethostname()} "
      f"qpu_vars={len(qpu_vars)} sum={total}", flush=True)
"""

# map: transpile for the job's QPU target and write a QRMI payload file (no QPU time used)
MAP = BELL_ISA + """
import json
from qiskit import qasm3
payload = {"program_id": "sampler", "parameters": {"pubs": [[qasm3.dumps(isa)]],
           "shots": 300, "version": 2, "support_qiskit": False, "options": {}}}
json.dump(payload, open("split-in.json", "w"))
print("MAPPED", isa.num_qubits, flush=True)
"""

# result: decode the runner's output, no QPU needed
RESULT = """
import json
from qiskit_ibm_runtime import RuntimeDecoder
res = json.load(open("split-out.json"), cls=RuntimeDecoder)
counts = res[0].data.meas.get_counts()
print("COUNTS " + json.dumps(counts, sort_keys=True), flush=True)
"""


def py(code: str) -> str:
    return f"python3 - <<'PY'\n{code}\nPY\n"


def test_quantum_job_then_afterok_classical_mpi_job_without_qpu(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    quantum = cluster.sbatch(f"#!/bin/bash\n#SBATCH -p quantum --gres=qpu:1 --qpu={QPU}\n"
                             + py(SAMPLER))
    classical = cluster.sbatch(
        "#!/bin/bash\n#SBATCH -p normal --nodes=2 --ntasks-per-node=2\n"
        "srun python3 - <<'PY'\n" + MPI_COUNT + "PY\n", f"--dependency=afterok:{quantum}")
    assert cluster.wait_job(quantum) == "COMPLETED", output_of(cluster, quantum)
    assert cluster.wait_job(classical) == "COMPLETED", output_of(cluster, classical)
    assert result(output_of(cluster, quantum))["counts"]
    ranks = markers(output_of(cluster, classical), "RANK")
    assert len(ranks) == 4, output_of(cluster, classical)
    assert {r.split()[1] for r in ranks} == {"c1", "c2"}  # 2 nodes x 2 tasks
    assert all(r.endswith("qpu_vars=0 sum=6") for r in ranks), ranks  # no QPU variable
    assert lease_states(cluster, classical) == []  # the broker never heard of it
    start = cluster.exec("login", f"sacct -n -X -P -j {classical} -o Start").out.strip()
    end = cluster.exec("login", f"sacct -n -X -P -j {quantum} -o End").out.strip()
    assert start >= end  # ISO timestamps: afterok held it until the quantum job ended


def test_split_map_execute_result_chain_with_the_payload_runner(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    map_job = cluster.sbatch(f"#!/bin/bash\n#SBATCH --qpu={QPU}\n" + py(MAP))
    execute = cluster.sbatch(
        f"#!/bin/bash\n#SBATCH -p quantum --gres=qpu:1 --qpu={QPU}\n"
        f"srun slurm-qpu run {QPU} split-in.json split-out.json\n",
        f"--dependency=afterok:{map_job}")
    result_job = cluster.sbatch("#!/bin/bash\n" + py(RESULT), f"--dependency=afterok:{execute}")
    for job in (map_job, execute, result_job):
        assert cluster.wait_job(job) == "COMPLETED", output_of(cluster, job)
    assert int(marker(output_of(cluster, map_job), "MAPPED")) >= 2
    counts = json.loads(marker(output_of(cluster, result_job), "COUNTS"))
    assert sum(counts.values()) == 300
    assert set(counts) <= {"00", "01", "10", "11"}
    for job in (map_job, execute):
        assert lease_states(cluster, job) == ["released"]
    assert lease_states(cluster, result_job) == []


def test_heterogeneous_job_whose_second_component_holds_the_qpu(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    job = run(cluster, (
        f"#!/bin/bash\n#SBATCH --partition=normal --qpu={QPU}\n#SBATCH hetjob\n"
        f"#SBATCH --partition=quantum --gres=qpu:1 --qpu={QPU}\n"
        "srun --het-group=0 python3 - <<'PY'\n" + MAP + "PY\n"
        "srun --het-group=1 bash -c 'echo HET1 $(hostname) $SLURM_JOB_QPU_RESOURCES'\n"
        f"srun --het-group=1 slurm-qpu run {QPU} split-in.json split-out.json\n"
        "srun --het-group=0 python3 - <<'PY'\n" + RESULT + "PY\n"))
    assert job.state == "COMPLETED", job.output
    assert marker(job.output, "HET1") == f"q1 {QPU}"  # the QPU environment reached group 1
    assert sum(json.loads(marker(job.output, "COUNTS")).values()) == 300
    # both components name the QPU: one lease, under the het leader's id, one vendor
    # session for the whole het job (the tutorial's run_hetjob.sh), closed at its end
    assert lease_states(cluster, job.job_id) == ["released"]
    assert lease_states(cluster, job.job_id + 1) == []
    assert len(sessions_opened(admin, seen)) == 1
    [(session,)] = cluster.journal("SELECT token FROM held WHERE job_id=?", job.job_id)
    assert_session_closed(admin, session)


def test_several_srun_steps_in_one_job_share_one_session(
        cluster: DockerCluster, admin: EmulatorAdmin) -> None:
    seen = len(admin.requests())
    job = run(cluster, (
        f"#!/bin/bash\n#SBATCH -p quantum --gres=qpu:1 --qpu={QPU}\n"
        + "".join(f"srun python3 - <<'PY'\n{SAMPLER}\nPY\n" for _ in range(3))))
    assert job.state == "COMPLETED", job.output
    results = [json.loads(r) for r in markers(job.output, "RESULT")]
    assert len(results) == 3
    assert len({r["session"] for r in results}) == 1  # one session for all steps
    assert len({r["job"] for r in results}) == 3
    assert len(sessions_opened(admin, seen)) == 1
    assert_session_closed(admin, results[0]["session"])
