"""A failed acquisition fails the job with the reason, never the node."""

from conftest import BROKEN_MESSAGE


def test_failed_acquire_fails_the_job_with_the_vendor_message(lab):
    run = lab.run_job("--qpu=sim_broken", script="echo SHOULD-NOT-RUN\n")
    assert run.state == "FAILED"
    assert f"cannot acquire QPU sim_broken: {BROKEN_MESSAGE}" in run.output
    assert "SHOULD-NOT-RUN" not in run.output
    assert lab.ledger_events("sim_broken", run.job_id) == []
    assert lab.undrained(), lab.node_states()


def test_failed_acquire_on_a_two_node_job_leaves_both_nodes_up(lab):
    run = lab.run_job("-N2", "--qpu=sim_broken", script="srun echo SHOULD-NOT-RUN\n")
    assert run.state == "FAILED"
    assert BROKEN_MESSAGE in run.output
    assert set(lab.node_states().values()) == {"idle"}


def test_second_qpu_failing_rolls_back_the_first(lab):
    run = lab.run_job("--qpu=sim_a,sim_broken", script="true\n")
    assert run.state == "FAILED"
    assert [e["event"] for e in lab.ledger_events("sim_a", run.job_id)] == ["acquire", "release"]


def test_qpu_in_maintenance_fails_the_job_with_a_clear_reason(lab):
    run = lab.run_job("--qpu=sim_maint", script="true\n")
    assert run.state == "FAILED"
    assert "cannot acquire QPU sim_maint: not accessible now (offline or in maintenance)" \
        in run.output
    assert lab.undrained()


def test_next_job_runs_normally_after_a_failure(lab):
    lab.run_job("--qpu=sim_broken", script="true\n")
    run = lab.run_job("--qpu=sim_a", script="echo OK=$QRMI_JOB_QPU_RESOURCES\n")
    assert run.state == "COMPLETED"
    assert "OK=sim_a" in run.output


def test_failed_release_is_logged_and_leaves_the_node_up(lab):
    run = lab.run_job("--qpu=sim_relfail", script="echo ran\n")
    assert run.state == "COMPLETED"
    lease = lab.leases_on("node1")[run.job_id]
    assert lease["state"] == "released"
    assert "session already closed by the vendor" in lease["release_errors"][0]
    assert "cannot release QPU sim_relfail" in (lab.root / "log/slurmd-node1.log").read_text()
    assert lab.undrained()


def test_malformed_config_fails_the_job_not_the_node(lab):
    good = lab.qrmi_config.read_text()
    try:
        lab.qrmi_config.write_text('{"resources": [')  # an admin's half-saved edit
        run = lab.run_job("--qpu=sim_a", script="echo SHOULD-NOT-RUN\n")
    finally:
        lab.qrmi_config.write_text(good)
    assert run.state == "FAILED"
    assert "invalid JSON at line 1" in run.output
    assert "SHOULD-NOT-RUN" not in run.output
    assert lab.undrained()
