"""Names are checked when the user submits: nothing is queued for a typo."""

import json

import pytest


def unknown_message(lab):
    """The error lists every configured name, sorted (the emulator's QPUs included)."""
    names = sorted(r["name"] for r in json.loads(lab.qrmi_config.read_text())["resources"])
    return f"unknown QPU name(s) typo; known: {','.join(names)}"


def job_count(lab):
    return len([line for line in lab.scontrol("show", "jobs", "-o").splitlines()
                if line.startswith("JobId=")])


@pytest.mark.parametrize("command", [
    ["sbatch", "--qpu=sim_a,typo", "--wrap", "true"],
    ["salloc", "--qpu=sim_a,typo", "true"],
    ["srun", "--qpu=sim_a,typo", "true"],
])
def test_unknown_name_is_rejected_before_anything_is_queued(lab, command):
    before = job_count(lab)
    proc = lab.as_user(command)
    assert proc.returncode != 0
    assert unknown_message(lab) in proc.stderr
    assert job_count(lab) == before


def test_empty_qpu_value_is_an_error(lab):
    proc = lab.as_user(["sbatch", "--qpu=", "--wrap", "true"])
    assert proc.returncode != 0
    assert "no QPU name given; use --qpu=NAME[,NAME...]" in proc.stderr


def test_whitespace_and_duplicates_are_normalised(lab):
    run = lab.run_job("--qpu= sim_b , sim_a,sim_b ", script=f"srun {ENV}\n")
    assert run.state == "COMPLETED", run.output
    env = run.tasks()[0]["env"]
    assert env["QRMI_JOB_QPU_RESOURCES"] == "sim_b,sim_a"


def test_users_validate_names_without_reading_the_root_only_config(lab):
    assert lab.qrmi_config.stat().st_mode & 0o077 == 0
    proc = lab.as_user(["cat", str(lab.qrmi_config)])
    assert proc.returncode != 0  # the job user cannot read the credentials...
    proc = lab.as_user(["sbatch", "--qpu=sim_a", "--test-only", "--wrap", "true"])
    assert proc.returncode == 0, proc.stderr  # ...yet sbatch accepts a good name


from conftest import ENV_DUMP as ENV  # noqa: E402
