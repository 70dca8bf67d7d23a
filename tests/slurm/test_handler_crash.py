"""The shim's return codes: a handler that crashes in the prolog or epilog must not drain
the node (Slurm drains on a prolog/epilog error); the job fails instead, with a reason."""

import contextlib
import textwrap

CRASHING_HANDLERS = textwrap.dedent("""
    # slurm-qpu's handlers, except that job_prolog and job_epilog raise
    from slurm_qpu.spank import init_post_opt, option, task_init  # noqa: F401

    def job_prolog(args):
        raise RuntimeError("prolog handler exploded")

    def job_epilog(args):
        raise RuntimeError("epilog handler exploded")
""")


@contextlib.contextmanager
def plugstack(lab, extra):
    path = lab.etc / "plugstack.conf"
    good = path.read_text()
    path.write_text(lab.plugstack_line() + " " + extra + "\n")
    try:
        yield
    finally:
        path.write_text(good)


def test_crashing_prolog_and_epilog_fail_the_job_not_the_node(lab, tmp_path):
    module_dir = lab.root / "crash-handlers"
    module_dir.mkdir(exist_ok=True)
    (module_dir / "qpu_crash.py").write_text(CRASHING_HANDLERS)
    module_dir.chmod(0o755)
    (module_dir / "qpu_crash.py").chmod(0o644)
    with plugstack(lab, f"module=qpu_crash pythonpath={module_dir}"):
        run = lab.run_job("-N2", "--qpu=sim_a", script="srun echo SHOULD-NOT-RUN\n")
    assert run.state == "FAILED"
    assert "no QPU lease for this job on node1" in run.output
    assert "SHOULD-NOT-RUN" not in run.output
    assert lab.undrained(), lab.node_states()
    log = (lab.root / "log" / "slurmd-node1.log").read_text()
    assert "python error in job_prolog: RuntimeError: prolog handler exploded" in log
    assert "python error in job_epilog: RuntimeError: epilog handler exploded" in log
    assert lab.ledger_events("sim_a", run.job_id) == []
    # and the next job, with the real handlers, is fine on the same nodes
    run = lab.run_job("-N2", "--qpu=sim_a", script="srun echo OK=$QRMI_JOB_QPU_RESOURCES\n")
    assert run.state == "COMPLETED"
    assert run.output.count("OK=sim_a") == 2


def test_a_missing_python_half_refuses_qpu_submissions_and_leaves_other_jobs_alone(lab):
    lonely = lab.root / "lonely-plugin"
    lonely.mkdir(exist_ok=True)
    lonely.chmod(0o755)
    plugin = lonely / "spank_qpu.so"
    plugin.write_bytes((lab.prefix / "lib/slurm/spank_qpu.so").read_bytes())
    plugin.chmod(0o755)
    path = lab.etc / "plugstack.conf"
    good = path.read_text()
    path.write_text(lab.plugstack_line().replace(f"{lab.prefix}/lib/slurm/spank_qpu.so",
                                                 str(plugin)) + "\n")
    try:
        refused = lab.as_user(["sbatch", "--qpu=sim_a", "--wrap", "true"])
        plain = lab.run_job(script="echo PLAIN-OK\n")
    finally:
        path.write_text(good)
    assert refused.returncode != 0
    assert (f"qpu: cannot load {lonely}/spank_qpu_python.so (install it beside "
            "spank_qpu.so)") in refused.stderr
    assert plain.state == "COMPLETED" and "PLAIN-OK" in plain.output
