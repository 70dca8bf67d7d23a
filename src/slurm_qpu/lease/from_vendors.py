"""The job lifecycle: acquire exactly once per job in the prolog, release exactly once in
the epilog. Called by the SPANK handlers with plain values; testable without Slurm."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slurm_qpu.acquire.pipeline import (
    AcquisitionFailed,
    ResourceFactory,
    acquire_all,
    default_factory,
    describe_error,
    plan,
    release_with_retries,
    requested,
)
from slurm_qpu.config import ConfigError, QrmiConfig, load_config
from slurm_qpu.jobenv import contract as envcontract
from slurm_qpu.jobenv.contract import Acquired
from slurm_qpu.lease.coordination import JobBoard, PeerTimeout, PublicRecord, wait_for_record
from slurm_qpu.lease.store import Lease, LeasedResource, LeaseState, LeaseStore
from slurm_qpu.log import REDACTOR
from slurm_qpu.redact import secrets_of
from slurm_qpu.request.names import RequestError
from slurm_qpu.request.selection import UNKNOWN_PLACEMENT
from slurm_qpu.settings import PluginSettings
from slurm_qpu.slurm.commands import Scontrol, SlurmCommandError
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.usage import QpuUsage

log = logging.getLogger(__name__)


def _requested(raw_request: str | None, config_path: str) -> tuple[list[str], QrmiConfig]:
    """The request's checked items and the config (whose secrets no log line shows from
    here on); selections are resolved later, by the node that acquires."""
    config = load_config(config_path)
    for resource in config.resources:
        REDACTOR.add(secrets_of(resource.effective_environment()))
    return requested(raw_request, config), config


def run_prolog(
    job: JobFacts,
    raw_request: str | None,
    settings: PluginSettings,
    store: LeaseStore,
    board: JobBoard,
    factory: ResourceFactory = default_factory,
    overrides: str | None = None,
) -> Lease:
    """Make sure this node holds the job's lease: acquire on the first node, learn the
    outcome from it on the others. Never raises for bad input or vendor trouble: a failed
    lease is recorded instead, and task_init fails the job with its message."""
    lease, made = store.claim(job.job_id, lambda: _prolog(job, raw_request, settings, board,
                                                         factory, overrides))
    if not made:
        log.debug("job %s: lease already %s on this node", job.job_id, lease.state.value)
        return lease
    if lease.state is LeaseState.FAILED:
        log.error("job %s: %s", job.job_id, lease.error)
    else:
        log.info("job %s: %s %s", job.job_id,
                 "acquired" if lease.owner else "joined the lease of", ",".join(lease.names))
    return lease


def _prolog(job: JobFacts, raw: str | None, settings: PluginSettings, board: JobBoard,
            factory: ResourceFactory, overrides: str | None = None) -> Lease:
    lease = Lease(job.job_id, [], LeaseState.FAILED, job.node, job.first_node,
                  uid=job.uid, user=job.user)
    owner = lease.owner
    try:
        items, config = _requested(raw, str(settings.config))
    except (RequestError, ConfigError) as exc:
        lease.error = f"--qpu={raw}: {exc}" if raw is not None else str(exc)
        return _announce(lease, board, job, _run_of(board, job, lease))
    lease.names = items
    try:
        view = wait_for_record(board, job.job_id, settings.peer_timeout) if not owner \
            else board.view(job.job_id)
    except PeerTimeout as exc:
        lease.error = (f"{exc} ({job.first_node}), which acquires the QPUs for the whole job; "
                       "multi-node jobs need PrologFlags=Alloc in slurm.conf")
        return lease
    except SlurmCommandError as exc:
        if not owner:
            lease.error = f"cannot learn the QPU lease from {job.first_node}: {exc}"
            return lease
        log.warning("job %s: cannot read job details (%s); using the default timeout",
                    job.job_id, exc)
        view = None
    limit = view.time_limit_seconds if view else None
    timeout = envcontract.timeout_seconds(limit)
    selected: dict[str, str] = {}
    if owner:
        try:
            # squeue's record of the job: the policy and the licenses of the QPUs the
            # request names or selects are checked against it (acquire.resolve says why);
            # without one a QPU with a partition/account/QOS policy is refused
            job_plan = plan(items, config, factory,
                            placement=view.placement if view else UNKNOWN_PLACEMENT,
                            licensed=Scontrol(settings.scontrol).licenses,
                            overrides=overrides)
        except RequestError as exc:
            lease.error = f"--qpu={raw}: {exc}"
            return _announce(lease, board, job, view.restart_count if view else 0)
        lease.names, selected = job_plan.names, job_plan.selected
        for warning in job_plan.refused:
            log.warning("job %s: %s", job.job_id, warning)
        try:
            acquired = acquire_all(job_plan.defs, job, timeout, factory, job_plan.overrides)
        except AcquisitionFailed as exc:
            lease.error = str(exc)
            return _announce(lease, board, job, view.restart_count if view else 0)
    else:
        record = view.record if view else None
        if record is None or record.state != LeaseState.ACQUIRED.value:
            lease.error = record.error if record and record.error else "acquisition failed"
            return lease
        # the first node resolved any selections: its record names the QPUs
        lease.names = [str(r["name"]) for r in record.resources]
        tokens = {r["name"]: r["token"] for r in record.resources}
        acquired = [Acquired(d, tokens[n]) for n in lease.names
                    if (d := config.get(n)) is not None]
    now = time.time()
    lease.state = LeaseState.ACQUIRED
    lease.resources = [LeasedResource(a.resource.name, a.resource.current_type, a.token, now,
                                      selected.get(a.resource.name))
                       for a in acquired]
    contract = envcontract.build(acquired, job_id=job.job_id, uid=job.uid,
                                 time_limit_seconds=limit, extra_env=settings.extra_env,
                                 request=raw)
    lease.env, lease.env_defaults = contract.forced, contract.defaults
    return _announce(lease, board, job, view.restart_count if view else 0)


def _run_of(board: JobBoard, job: JobFacts, lease: Lease) -> int:
    """The job's restart count, asked only when a failure must be announced."""
    if not (lease.owner and job.multi_node):
        return 0
    try:
        return board.view(job.job_id).restart_count
    except SlurmCommandError:
        return 0


def _announce(lease: Lease, board: JobBoard, job: JobFacts, run: int = 0) -> Lease:
    """The first node of a multi-node job tells the others how it went."""
    if lease.owner and job.multi_node:
        record = PublicRecord(
            lease.state.value, job.node,
            [{"name": r.name, "type": r.type, "token": r.token} for r in lease.resources],
            lease.error, run)
        try:
            board.publish(job.job_id, record)
        except (SlurmCommandError, ValueError) as exc:
            log.error("job %s: cannot tell the job's other nodes about its QPUs: %s",
                      job.job_id, exc)
    return lease


def run_epilog(
    job: JobFacts,
    settings: PluginSettings,
    store: LeaseStore,
    factory: ResourceFactory = default_factory,
    retries: int = 3,
    backoff: float = 0.5,
    on_usage: Callable[[list[QpuUsage]], object] | None = None,
) -> Lease | None:
    """Release the job's QPUs exactly once (only on the node that acquired them), then
    hand the usage record (session times; the proxy that counts vendor jobs, shots and
    QPU time is the broker's) to ``on_usage``."""
    with store.lock(job.job_id):
        lease = store.load(job.job_id)
        if lease is None or lease.state is LeaseState.RELEASED:
            return lease
        released = lease.state is LeaseState.ACQUIRED and lease.owner
        if released:
            _release(lease, job, settings, factory, retries, backoff)
        lease.state = LeaseState.RELEASED
        lease.released_at = time.time()
        store.save(lease)
    if released and lease.resources:
        log.info("job %s: released %s", job.job_id, ",".join(r.name for r in lease.resources))
        if on_usage is not None:
            on_usage([QpuUsage(r.name, r.type, r.acquired_at, lease.released_at,
                               selected_by=r.selected_by) for r in lease.resources])
    return lease


def _release(lease: Lease, job: JobFacts, settings: PluginSettings, factory: ResourceFactory,
             retries: int, backoff: float) -> None:
    try:
        config: QrmiConfig | None = load_config(settings.config)
    except ConfigError as exc:
        log.error("job %s: config unreadable at release (%s); releasing with the types "
                  "recorded in the lease", job.job_id, exc)
        config = None
    for held in lease.resources:
        failure = release_with_retries(config, held.name, held.type, held.token, job,
                                       factory, retries, backoff)
        if failure is not None:
            msg = (f"cannot release QPU {held.name} (token {held.token}) after "
                   f"{retries} attempts: {describe_error(failure)}")
            lease.release_errors.append(msg)
            log.error("job %s: %s", job.job_id, msg)
