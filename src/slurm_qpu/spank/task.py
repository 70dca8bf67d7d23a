"""Steps: read the node's lease as root before tasks fork (init_post_opt), then give every
task the environment contract (task_init, already running as the user)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slurm_qpu.jobenv.contract import rust_log_for
from slurm_qpu.lease.store import Lease, LeaseFileError, LeaseState, LeaseStore
from slurm_qpu.settings import PluginSettings, short_hostname
from slurm_qpu.spank import host

log = logging.getLogger(__name__)


@dataclass
class StepState:
    """What init_post_opt found, inherited by the forked tasks."""

    job_id: int | None = None
    lease: Lease | None = None
    error: str | None = None
    inactive: bool = False  # this step has no QPU business: export nothing, fail nothing


_step = StepState()


def load_lease(settings: PluginSettings) -> int:
    global _step
    job_id = host.item("job_id")
    if job_id is None:
        _step = StepState(error="no job id in this step")
        return 1
    # Not SLURMD_NODENAME: the step's environment still holds the submitting node's value.
    node = short_hostname()
    try:
        lease = LeaseStore(settings.state_path(node)).load(job_id)
    except LeaseFileError as exc:
        _step = StepState(job_id, error=str(exc))
        return 0
    # A step launched without --qpu (a het job's other component) is here only because a
    # lease exists: make sure it is this job's, or leave the step alone.
    if host.option_value() is None and (
            lease is None or lease.state is LeaseState.RELEASED
            or (lease.uid is not None and lease.uid != host.item("uid"))):
        _step = StepState(job_id, inactive=True)
        return 0
    if lease is None:
        _step = StepState(job_id, error=f"no QPU lease for this job on {node}: its "
                                        "prolog did not record one (see the slurmd log there)")
    elif lease.state is LeaseState.FAILED:
        _step = StepState(job_id, lease, lease.error or "QPU acquisition failed")
    elif lease.state is LeaseState.RELEASED:
        _step = StepState(job_id, lease, "the job's QPUs were already released")
    else:
        _step = StepState(job_id, lease)
    return 0


def export_environment(settings: PluginSettings) -> int:
    if _step.inactive:
        return 0
    lease = _step.lease
    if _step.error or lease is None:
        prefix = f"job {_step.job_id}: " if _step.job_id is not None else ""
        log.error("%s%s", prefix, _step.error or "QPU lease not loaded")
        return 1
    for name, value in lease.env.items():
        host.setenv(name, value, True)
    for name, value in lease.env_defaults.items():
        host.setenv(name, value, False)
    host.setenv("RUST_LOG", rust_log_for(host.job_env("SRUN_DEBUG")), False)
    return 0
