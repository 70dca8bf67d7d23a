"""--qpu=any:FILTER on real Slurm: checked at submit, resolved at start, visible in the job."""

from __future__ import annotations

import pytest


def test_a_selection_runs_the_job_on_the_matching_qpu_and_says_which(lab):
    # of the lab's simulators only sim_b has 10 qubits or more (and sim_maint is away)
    run = lab.run_job("--qpu=any:sim_*&min_qubits=10",
                      script="srun printenv QRMI_JOB_QPU_RESOURCES SLURM_QPU_REQUEST\n")
    assert run.state == "COMPLETED", run.output
    assert run.output.split() == ["sim_b", "any:sim_*&min_qubits=10"]
    assert [e["event"] for e in lab.ledger_events("sim_b", run.job_id)] == \
        ["acquire", "release"]


@pytest.mark.parametrize("command", [
    ["sbatch", "--qpu=any:nothing_*", "--wrap", "true"],
    ["srun", "--qpu=any:nothing_*", "true"],
])
def test_a_selection_nothing_configured_matches_is_refused_at_submit(lab, command):
    proc = lab.as_user(command)
    assert proc.returncode != 0
    assert "no configured QPU matches any:nothing_*; known:" in proc.stderr


def test_a_selection_with_no_qpu_available_fails_the_job_with_the_reasons(lab):
    run = lab.run_job("--qpu=any:sim_?&min_qubits=100", script="true\n")
    assert run.state == "FAILED"
    assert ("--qpu=any:sim_?&min_qubits=100: no QPU matching any:sim_?&min_qubits=100 is "
            "available now (sim_a: 5 qubits; sim_b: 20 qubits)") in run.output
    assert lab.undrained()
