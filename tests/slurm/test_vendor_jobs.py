"""Real vendor SDKs inside `sbatch --qpu=` jobs, against the lab's emulated QPUs."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, JobRun, LabFixture

from slurm_qpu_emulator.admin import EmulatorAdmin

QPU = "ibm_manila"

SAMPLER = f"""
python3 - <<'PY'
import json, os
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2
from slurm_qpu import client

backend = client.ibm_backend("{QPU}")
session = client.ibm_session("{QPU}")
bell = QuantumCircuit(2)
bell.h(0)
bell.cx(0, 1)
bell.measure_all()
isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(bell)
sampler = SamplerV2(mode=session)
sampler.options.environment.job_tags = os.environ.get("VENDOR_TAGS", "").split() or None
job = sampler.run([isa], shots=400)
print("VENDOR_JOB " + job.job_id(), flush=True)
counts = job.result()[0].data.meas.get_counts()
print("RESULT " + json.dumps({{"counts": counts, "session": session.session_id,
      "job": job.job_id(), "token": os.environ["{QPU}_QRMI_JOB_ACQUISITION_TOKEN"]}}))
PY
"""


def marker(output: str, prefix: str) -> str:
    for line in output.splitlines():
        if line.startswith(prefix + " "):
            return line[len(prefix) + 1:]
    raise AssertionError(f"no {prefix} line in the job's output:\n{output}")


@pytest.fixture
def admin(lab: LabFixture) -> Iterator[EmulatorAdmin]:
    admin = EmulatorAdmin(lab.emulator_url)
    yield admin
    admin.clear_faults()
    admin.maintenance(QPU, False)
    admin.job_seconds(1.0)


def wait_for(path: Path, pattern: str, timeout: float = 180) -> str:
    """The first group of ``pattern`` once it appears in the job's output file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            found = re.search(pattern, path.read_text(errors="replace"))
            if found:
                return found.group(1)
        time.sleep(0.5)
    text = path.read_text(errors="replace") if path.exists() else "(no output file)"
    raise AssertionError(f"no match for {pattern!r} after {timeout:.0f} s:\n{text}")


def test_sampler_job_gets_counts_inside_the_session_the_prolog_opened(lab, admin):
    run = lab.run_job(f"--qpu={QPU}", script=SAMPLER, timeout=300)
    assert run.state == "COMPLETED", run.output
    result = json.loads(marker(run.output, "RESULT"))
    assert set(result["counts"]) <= {"00", "01", "10", "11"}
    assert result["counts"].get("00", 0) + result["counts"].get("11", 0) >= 360
    assert result["session"] == result["token"]  # the prolog's session, not a new one
    assert admin.job(result["job"])["session_id"] == result["token"]


def test_the_jobs_session_is_closed_after_the_job(lab, admin):
    run = lab.run_job(f"--qpu={QPU}", script=SAMPLER, timeout=300)
    assert run.state == "COMPLETED", run.output
    session = admin.session(json.loads(marker(run.output, "RESULT"))["token"])
    assert session["accepting_jobs"] is False
    assert session["state"] in ("inactive", "closed")


def test_scancel_during_a_vendor_job_cancels_the_vendor_job(lab, admin):
    admin.job_seconds(600)  # the vendor job runs until something cancels it
    out = lab.jobs_dir / "scancel-%j.out"
    job_id = lab.sbatch("-o", str(out), f"--qpu={QPU}", script="#!/bin/bash\n" + SAMPLER)
    output = Path(str(out).replace("%j", str(job_id)))
    vendor_job = wait_for(output, r"VENDOR_JOB (\S+)")
    assert admin.job(vendor_job)["status"] in ("Queued", "Running")
    lab.as_user(["scancel", str(job_id)])
    assert lab.wait_job(job_id, timeout=120) == "CANCELLED"
    assert admin.job(vendor_job)["status"] == "Cancelled"
    assert lab.undrained()


def test_qrmi_service_inside_a_job_sees_the_jobs_resources(lab, admin):
    script = (REPO / "examples" / "qrmi" / "qrmi-service-job.sh").read_text()
    run = lab.run_job(script=script, timeout=300)
    assert run.state == "COMPLETED", run.output
    assert "QRMIService sees: ['ibm_manila']" in run.output
    counts = json.loads(marker(run.output, "counts"))
    assert sum(counts.values()) == 500


def test_vendor_outage_at_acquire_fails_the_job_with_the_vendors_message(lab, admin):
    message = "IBM Quantum Platform is down for scheduled maintenance"
    seen = len(admin.requests())
    admin.inject(path="^/api/v1/sessions$", method="POST", status=503, message=message)
    run = lab.run_job(f"--qpu={QPU}", script="echo SHOULD-NOT-RUN\n", timeout=180)
    assert run.state == "FAILED"
    assert f"cannot acquire QPU {QPU}: " in run.output
    assert message in run.output
    assert "SHOULD-NOT-RUN" not in run.output
    attempts = [r["status"] for r in admin.requests()[seen:]
                if r["method"] == "POST" and r["path"] == "/api/v1/sessions"]
    assert attempts and set(attempts) == {503}  # retried, then gave up: no session leaked
    assert set(lab.node_states().values()) == {"idle"}


def test_qpu_in_vendor_maintenance_fails_the_job_and_leaves_the_node_idle(lab, admin):
    admin.maintenance(QPU, True)
    run = lab.run_job(f"--qpu={QPU}", script="echo SHOULD-NOT-RUN\n", timeout=180)
    assert run.state == "FAILED"
    assert f"cannot acquire QPU {QPU}: not accessible now" in run.output
    assert set(lab.node_states().values()) == {"idle"}


@pytest.fixture
def payload(lab: LabFixture) -> Path:
    target = lab.jobs_dir / "ibm_sampler.json"
    shutil.copy(REPO / "examples" / "payloads" / "ibm_sampler.json", target)
    target.chmod(0o644)
    return target


def test_slurm_qpu_run_executes_a_qrmi_payload_file_in_a_job(lab, admin, payload):
    run = lab.run_job(f"--qpu={QPU}", script=(
        f"slurm-qpu run {QPU} {payload.name} result-$SLURM_JOB_ID.json && "
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
        "print(\"RESULT_TYPE\", d[\"__type__\"])' result-$SLURM_JOB_ID.json\n"), timeout=300)
    assert run.state == "COMPLETED", run.output
    assert marker(run.output, "RESULT_TYPE") == "PrimitiveResult"


def test_scancel_during_slurm_qpu_run_cancels_the_vendor_task(lab, admin, payload):
    admin.job_seconds(600)
    out = lab.jobs_dir / "run-cancel-%j.out"
    job_id = lab.sbatch("-o", str(out), f"--qpu={QPU}",
                        script=f"#!/bin/bash\nexec slurm-qpu run {QPU} {payload.name}\n")
    output = Path(str(out).replace("%j", str(job_id)))
    vendor_job = wait_for(output, r"started task (\S+)")
    lab.as_user(["scancel", str(job_id)])
    assert lab.wait_job(job_id, timeout=120) == "CANCELLED"
    assert admin.job(vendor_job)["status"] == "Cancelled"
    # the runner itself cancelled it on SIGTERM (not only the epilog closing the session)
    assert any(r["method"] == "POST" and r["path"] == f"/api/v1/jobs/{vendor_job}/cancel"
               for r in admin.requests())


@pytest.mark.parametrize("example, expect", [
    ("demo-job.sh", "counts:"),
    ("ibm-quantum-compute/sampler-job.sh", "<ZZZ> ="),
    ("pasqal-cloud/pulser-job.sh", "status DONE"),
])
def test_example_job_runs_in_the_lab(lab, admin, example, expect):
    script = (REPO / "examples" / example).read_text()
    run: JobRun = lab.run_job(script=script, timeout=300)
    assert run.state == "COMPLETED", run.output
    assert expect in run.output


def test_client_names_the_type_mismatch_when_a_job_asks_the_wrong_vendor(lab):
    run = lab.run_job("--qpu=sim_a", script=(
        "python3 -c 'from slurm_qpu import client; client.ibm_session()' 2>&1 | tail -1\n"))
    assert ("this job has no ibm-quantum-compute-service QPU; its QPUs: sim_a "
            "(local-simulator)" in run.output)


def test_ibm_quantum_system_example_runs_a_payload_through_s3(lab, admin, payload):
    script = (REPO / "examples" / "ibm-quantum-system" / "run-payload-job.sh").read_text()
    run = lab.run_job(script=script, timeout=300)
    assert run.state == "COMPLETED", run.output
    assert "result PrimitiveResult with 1 pub(s)" in run.output
