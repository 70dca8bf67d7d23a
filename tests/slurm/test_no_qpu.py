"""A job that did not ask for --qpu gets nothing and never starts Python."""

from conftest import ENV_DUMP


def test_job_without_qpu_gets_no_qpu_variables_and_no_python(lab):
    before = lab.pytrace_lines()
    run = lab.run_job("-N2", "--ntasks-per-node=1", script=f"srun {ENV_DUMP}\n")
    proc = lab.as_user(["srun", "-N2", "true"])
    assert run.state == "COMPLETED", run.output
    assert proc.returncode == 0
    assert [t["env"] for t in run.tasks()] == [{}, {}]
    assert lab.pytrace_lines() == before  # no Python start-up in sbatch, srun, prolog, ...


def test_job_with_qpu_starts_python_only_where_needed(lab):
    before = len(lab.pytrace_lines())
    run = lab.run_job("--qpu=sim_a", script="true\n")
    assert run.state == "COMPLETED"
    started = [line.split(" cb=")[1].split()[0] for line in lab.pytrace_lines()[before:]]
    # sbatch validates, the prolog acquires, the batch step exports, the epilog releases
    assert sorted(started) == ["init_post_opt", "job_epilog", "job_prolog", "option"]


def test_srun_in_a_qpu_job_does_not_check_the_job_s_own_qpu_again(lab):
    before = len(lab.pytrace_lines())
    run = lab.run_job("--qpu=sim_a", script="srun -n1 true\n"
                      "srun -n1 --qpu=nosuchqpu true || echo REFUSED\n")
    assert run.state == "COMPLETED", run.output
    started = [line.split(" cb=")[1].split()[0] for line in lab.pytrace_lines()[before:]]
    # sbatch checks the names once; the first srun inherits them (a step start-up only);
    # an srun that names other QPUs is checked (and this one refused)
    assert sorted(started) == ["init_post_opt", "init_post_opt", "job_epilog", "job_prolog",
                               "option", "option"]
    assert "unknown QPU name(s) nosuchqpu" in run.output
    assert "REFUSED" in run.output
