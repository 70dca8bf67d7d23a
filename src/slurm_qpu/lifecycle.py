"""The job lifecycle: acquire exactly once per job in the prolog, release exactly once in
the epilog. Called by the SPANK handlers with plain values; testable without Slurm."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from slurm_qpu import envcontract
from slurm_qpu.config import ConfigError, QrmiConfig, ResourceDef, load_config
from slurm_qpu.coordination import JobBoard, PeerTimeout, PublicRecord, wait_for_record
from slurm_qpu.envcontract import Acquired
from slurm_qpu.jobfacts import JobFacts
from slurm_qpu.leases import Lease, LeasedResource, LeaseState, LeaseStore
from slurm_qpu.log import REDACTOR
from slurm_qpu.names import RequestError, parse_request
from slurm_qpu.overrides import apply as apply_overrides
from slurm_qpu.overrides import decode as decode_overrides
from slurm_qpu.redact import secrets_of
from slurm_qpu.selection import UNKNOWN_PLACEMENT, check_request
from slurm_qpu.settings import PluginSettings
from slurm_qpu.slurmcli import Scontrol, SlurmCommandError
from slurm_qpu.usage import QpuUsage
from slurm_qpu.vendors import registry
from slurm_qpu.vendors.common.base import (
    JobContext,
    NotAccessible,
    QuantumResource,
    ResourceError,
    ResourceSpec,
)

log = logging.getLogger(__name__)
ResourceFactory = Callable[[ResourceSpec], QuantumResource]


def default_factory(spec: ResourceSpec) -> QuantumResource:
    return registry.get_type(spec.type).create(spec)


class AcquisitionFailed(Exception):
    """Acquiring ``qpu`` failed (the vendor's error is the ``__cause__``)."""

    def __init__(self, message: str, qpu: str | None = None, qpu_type: str | None = None):
        super().__init__(message)
        self.qpu = qpu
        self.qpu_type = qpu_type


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ResourceError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resource_spec(resource: ResourceDef, job: JobFacts, timeout: int | None,
                  overrides: Mapping[str, str] | None = None) -> ResourceSpec:
    environment = resource.effective_environment()
    if overrides:
        environment = apply_overrides(environment, resource.type, overrides)
    return ResourceSpec(resource.name, resource.current_type, environment,
                        JobContext(job.job_id, job.uid, job.user, timeout))


def acquire_all(
    defs: list[ResourceDef], job: JobFacts, timeout: int | None, factory: ResourceFactory,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    on_acquired: Callable[[Acquired], None] | None = None,
) -> list[Acquired]:
    """Acquire every QPU or none: on a failure, release what was already acquired.
    ``overrides`` are the user's allow-listed settings per QPU; ``on_acquired`` hears of
    each QPU as soon as it is held (the broker journals it there)."""
    done: list[tuple[QuantumResource, Acquired]] = []
    for rdef in defs:
        if rdef.is_legacy_type:
            log.info("QPU %s: type %r is deprecated; using %r", rdef.name, rdef.type,
                     rdef.current_type)
        try:
            resource = factory(resource_spec(rdef, job, timeout, (overrides or {}).get(rdef.name)))
            if not resource.is_accessible():
                # a type may know why (the vendor's status message): say it
                reason = getattr(resource, "status_reason", None)
                raise NotAccessible("not accessible now (offline or in maintenance)"
                                    + (f": {reason}" if reason else ""))
            token = resource.acquire()
        except Exception as exc:
            for prev, acq in reversed(done):
                try:
                    prev.release(acq.token)
                except Exception as rexc:
                    log.error("job %s: rollback release of %s failed: %s", job.job_id,
                              acq.resource.name, describe_error(rexc))
            raise AcquisitionFailed(f"cannot acquire QPU {rdef.name}: {describe_error(exc)}",
                                    rdef.name, rdef.current_type) from exc
        log.debug("job %s: acquired %s", job.job_id, rdef.name)
        done.append((resource, Acquired(rdef, token)))
        if on_acquired is not None:
            on_acquired(done[-1][1])
    return [acq for _, acq in done]


def _resolve(raw_request: str | None, config_path: str) -> tuple[list[str], QrmiConfig]:
    """The request's items (names and ``any:`` selections), each checked against the
    config; selections are resolved to QPUs later, by the node that acquires."""
    items = parse_request(raw_request)
    config = load_config(config_path)
    for resource in config.resources:  # no credential in any log line from here on
        REDACTOR.add(secrets_of(resource.effective_environment()))
    check_request(items, [r.known() for r in config.resources])
    return items, config


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
    with store.lock(job.job_id):
        existing = store.load(job.job_id)
        if existing is not None and existing.state is not LeaseState.RELEASED:
            log.debug("job %s: lease already %s on this node", job.job_id, existing.state.value)
            return existing
        lease = _prolog(job, raw_request, settings, board, factory, overrides)
        store.save(lease)
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
        items, config = _resolve(raw, str(settings.config))
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
        from slurm_qpu.probe import resolve_request  # probe builds on this module

        try:
            # squeue's record of the job: the policy and the licenses of the QPUs the
            # request names or selects are checked against it (check_named says why);
            # without one a QPU with a partition/account/QOS policy is refused
            lease.names, selected = resolve_request(
                items, config, factory,
                placement=view.placement if view else UNKNOWN_PLACEMENT,
                licensed=Scontrol(settings.scontrol).licenses)
        except RequestError as exc:
            lease.error = f"--qpu={raw}: {exc}"
            return _announce(lease, board, job, view.restart_count if view else 0)
        defs = [r for n in lease.names if (r := config.get(n)) is not None]
        checked = decode_overrides(overrides, {d.name: d.type for d in defs})
        for warning in checked.refused:
            log.warning("job %s: %s", job.job_id, warning)
        try:
            acquired = acquire_all(defs, job, timeout, factory, checked.accepted)
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


def release_with_retries(config: QrmiConfig | None, name: str, type_name: str, token: str,
                         job: JobFacts, factory: ResourceFactory, retries: int,
                         backoff: float) -> Exception | None:
    """Release one QPU (with its config settings, else just the type recorded at acquire),
    trying ``retries`` times; None when released, else the last attempt's error."""
    rdef = (config.get(name) if config else None) or ResourceDef(name=name, type=type_name)
    for attempt in range(1, retries + 1):
        try:
            factory(resource_spec(rdef, job, None)).release(token)
            return None
        except Exception as exc:
            if attempt == retries:
                return exc
            time.sleep(backoff * attempt)
    return None
