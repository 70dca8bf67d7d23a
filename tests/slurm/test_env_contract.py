"""Every task on every node sees the QRMI environment of the job's QPUs."""

from conftest import ENV_DUMP


def test_env_contract_on_every_rank_of_a_two_node_job(lab):
    run = lab.run_job("-N2", "--ntasks-per-node=2", "--time=5", "--qpu=sim_a,sim_secret",
                      script=f"srun {ENV_DUMP}\n")
    assert run.state == "COMPLETED", run.output
    tasks = run.tasks()
    assert [t["rank"] for t in tasks] == [0, 1, 2, 3]
    assert {t["host"] for t in tasks} == {"node1", "node2"}
    [acquire_a] = [e for e in lab.ledger_events("sim_a", run.job_id) if e["event"] == "acquire"]
    [acquire_s] = [e for e in lab.ledger_events("sim_secret", run.job_id)
                   if e["event"] == "acquire"]
    uid = lab.as_user(["id", "-u"]).stdout.strip()
    for task in tasks:
        env = task["env"]
        assert env["QRMI_JOB_QPU_RESOURCES"] == "sim_a,sim_secret"
        assert env["QRMI_JOB_QPU_TYPES"] == "local-simulator,local-simulator"
        assert env["SLURM_JOB_QPU_RESOURCES"] == "sim_a,sim_secret"
        assert env["SLURM_JOB_QPU_TYPES"] == "local-simulator,local-simulator"
        assert env["QRMI_JOB_ID"] == str(run.job_id)
        assert env["QRMI_JOB_UID"] == uid
        assert env["sim_a_QRMI_JOB_ACQUISITION_TOKEN"] == acquire_a["token"]
        assert env["sim_secret_QRMI_JOB_ACQUISITION_TOKEN"] == acquire_s["token"]
        assert env["sim_a_QRMI_JOB_TIMEOUT_SECONDS"] == "300"
        assert env["sim_secret_QRMI_JOB_TIMEOUT_SECONDS"] == "300"
        assert env["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == "5"
        assert env["sim_secret_QRMI_LOCAL_SIM_NUM_QUBITS"] == "3"
        assert env["RUST_LOG"] == "info"


def test_batch_script_itself_sees_the_environment(lab):
    run = lab.run_job("--qpu=sim_a", script="echo RES=$QRMI_JOB_QPU_RESOURCES\n")
    assert run.state == "COMPLETED"
    assert "RES=sim_a" in run.output


def test_srun_without_batch_gets_the_environment(lab):
    proc = lab.as_user(["srun", "-N2", "--qpu=sim_b", "bash", "-c",
                        "echo $(hostname)=$QRMI_JOB_QPU_RESOURCES"])
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["node1=sim_b", "node2=sim_b"]


def test_salloc_then_srun_gets_the_environment(lab):
    proc = lab.as_user(["salloc", "-N2", "--qpu=sim_a", "srun", "bash", "-c",
                        "echo $(hostname)=$SLURM_JOB_QPU_RESOURCES"])
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["node1=sim_a", "node2=sim_a"]


def test_user_export_overrides_a_config_setting_but_not_the_contract(lab):
    script = ("export sim_a_QRMI_LOCAL_SIM_NUM_QUBITS=7 sim_a_QRMI_JOB_ACQUISITION_TOKEN=forged\n"
              f"srun {ENV_DUMP}\n")
    run = lab.run_job("--qpu=sim_a", script=script)
    assert run.state == "COMPLETED", run.output
    env = run.tasks()[0]["env"]
    assert env["sim_a_QRMI_LOCAL_SIM_NUM_QUBITS"] == "7"
    assert env["sim_a_QRMI_JOB_ACQUISITION_TOKEN"].startswith("sim-")


def test_het_job_component_that_asked_for_qpu_gets_the_environment(lab):
    script = ("#SBATCH -N1\n#SBATCH hetjob\n#SBATCH -N1 --qpu=sim_b\n"
              "srun --het-group=0 bash -c 'echo g0=${QRMI_JOB_QPU_RESOURCES:-none}'\n"
              "srun --het-group=1 bash -c 'echo g1=${QRMI_JOB_QPU_RESOURCES:-none}'\n")
    run = lab.run_job(script=script)
    assert "g0=none" in run.output
    assert "g1=sim_b" in run.output
