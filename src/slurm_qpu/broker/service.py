"""Leases on the broker: acquire once per job, release once, reap what Slurm forgot.

Every node of a job asks for the job's lease in its prolog; the first request acquires
from the vendors and the others wait for it and get the same answer. Every node's epilog
asks for the release; the first one releases. A reaper releases the leases of jobs that
``squeue`` no longer lists (a node that died, an epilog that could not reach the broker)
and of leases past their expiry, and finishes what a broker killed mid-acquisition left.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from slurm_qpu.acquire.vendor_status import QpuStatus
from slurm_qpu.broker.availability import Availability
from slurm_qpu.broker.journal import Held, Journal, JournalError, LeaseRecord, State
from slurm_qpu.broker.metrics import BrokerMetrics
from slurm_qpu.broker.tokens import TokenBook
from slurm_qpu.config import ConfigError, QrmiConfig, ResourceDef, load_config
from slurm_qpu.jobenv import contract as envcontract
from slurm_qpu.jobenv.contract import Acquired
from slurm_qpu.log import job_scope
from slurm_qpu.redact import Redactor, secrets_of
from slurm_qpu.request import overrides
from slurm_qpu.request.names import RequestError
from slurm_qpu.request.selection import has_selection
from slurm_qpu.slurm.commands import JobRecord, SlurmCommandError, Squeue
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.vendors.registry import view_for
from slurm_qpu.vendors.type_names import LEGACY_TYPES

log = logging.getLogger("slurm_qpu.broker")
EXPIRY_GRACE_SECONDS = 300  # after the time limit: Slurm's KillWait and the epilog


class ConfigSource:
    """The QPU configuration, re-read when the file changes (no restart to add a QPU).

    ``secrets`` holds the credentials of every config it has loaded (a QPU's key the admin
    replaced or removed stays a secret): the broker's redactors (its log's, and the one
    every stored error goes through) follow it, so a QPU added by a reload is masked from
    its first use. It is a new object only when a load brings a new secret."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._config: QrmiConfig | None = None
        self._lock = threading.Lock()
        self.secrets: frozenset[str] = frozenset()

    def get(self) -> QrmiConfig:
        with self._lock:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if self._config is None or stamp != self._stamp:
                config = load_config(self.path)
                found = set().union(*(secrets_of(r.effective_environment())
                                      for r in config.resources))
                if not found <= self.secrets:  # before any caller can use the new ones
                    self.secrets = self.secrets | found
                self._config, self._stamp = config, stamp
            return self._config


@dataclass(frozen=True)
class AcquireRequest:
    job_id: int
    user: str | None = None
    uid: int | None = None
    qpus: str = ""  # the job's --qpu value
    time_limit: int | None = None  # seconds; None: ask squeue
    overrides: str | None = None  # as sbatch sent them (checked again here)
    # a heterogeneous job's component (its own job id) asking under its het job's lease
    # (``job_id``, the het leader's): one lease, one vendor session per QPU for the job
    component: int | None = None


@dataclass
class Outcome:
    lease: LeaseRecord
    warnings: list[str] = field(default_factory=list)
    # the QPUs this request asked for, in its order (a het component's own; None: all the
    # lease's), and why it failed when the lease itself stands (a component's QPU refused)
    names: list[str] | None = None
    error: str | None = None


class _JobLock:
    """One job's lock (threading.Lock cannot be weakly referenced)."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> _JobLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class LeaseService:
    def __init__(self, journal: Journal, config: ConfigSource, *, public_url: str,
                 factory: ResourceFactory = default_factory, squeue: Squeue | None = None,
                 clock: Callable[[], float] = time.time, release_retries: int = 3,
                 release_backoff: float = 0.5,
                 licenses: Callable[[], set[str]] | None = None) -> None:
        self.journal = journal
        self.config = config
        self.public_url = public_url.rstrip("/")
        self.factory = factory
        self.squeue = squeue
        self.licenses = licenses  # slurmctld's license names (probe.check_named)
        self.clock = clock
        self.release_retries = release_retries
        self.release_backoff = release_backoff
        self.tokens = TokenBook(journal.signing_key())
        self.availability: Availability | None = None  # set by the broker's watcher
        self.last_errors: dict[str, tuple[float, str]] = {}  # per QPU: when, what
        self.unhealthy: str | None = None  # why the last health check failed, until one passes
        # every error the service stores or answers goes through it first: a vendor's text
        # may echo the credential it was sent (served in /v1/status, written by the
        # prolog into lease files and the job's stderr)
        self.redact = Redactor(source=config)
        self.metrics = BrokerMetrics(self.active_counts)
        # weakly held: a job's lock lives while a thread holds or awaits it, then goes
        self._locks: weakref.WeakValueDictionary[int, _JobLock] = \
            weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()
        self._choosing = threading.Lock()

    @contextlib.contextmanager
    def _job_lock(self, job_id: int) -> Iterator[None]:
        """The job's lock: this process's threads, then every broker on the journal (a
        job's prologs may reach two brokers at once: one acquisition all the same)."""
        with self._local_lock(job_id), self.journal.named_lock(f"job {job_id}"):
            yield

    def _local_lock(self, job_id: int) -> _JobLock:
        with self._locks_guard:
            lock = self._locks.get(job_id)
            if lock is None:
                lock = self._locks[job_id] = _JobLock()
            return lock

    @contextlib.contextmanager
    def _choosing_lock(self) -> Iterator[None]:
        """One selecting request at a time, in this process and on every broker."""
        with self._choosing, self.journal.named_lock("choosing", pooled=False):
            yield

    def _choosing_for(self, qpus: str) -> contextlib.AbstractContextManager[Any]:
        """The choosing lock for a request with a selection; nothing for names only."""
        return self._choosing_lock() if has_selection(qpus) else contextlib.nullcontext()

    # ------------------------------------------------------------------ acquire

    def acquire(self, request: AcquireRequest) -> Outcome:
        with job_scope(request.job_id), self._job_lock(request.job_id):
            current = self.journal.current(request.job_id)
            if current is not None and current.state is State.ACQUIRING:
                self._undo_interrupted(current)
            elif current is not None and current.state is State.ACQUIRED and \
                    request.component is not None:
                return self._join(current, request)  # a het job's component: its QPUs
            elif current is not None and current.state is State.FAILED and \
                    request.component is not None and request.qpus != current.request:
                pass  # another component's QPUs failed: this one's are asked for anew
            elif current is not None and current.state in (State.ACQUIRED, State.FAILED):
                return Outcome(current)  # the job's other nodes: same lease, same answer
            started = time.monotonic()
            # the next generation: nothing else begins a lease for this job meanwhile (its
            # lock), and the journal's primary key refuses a duplicate all the same
            outcome = self._acquire(request, current.gen + 1 if current else 1)
            self.metrics.acquire_seconds.observe(
                time.monotonic() - started,
                outcome="acquired" if outcome.lease.state is State.ACQUIRED else "failed")
            return outcome

    def active_counts(self) -> dict[str, int]:
        """Active leases per QPU, every configured QPU included (0 when free)."""
        try:
            counts = dict.fromkeys(self.config.get().names(), 0)
        except (ConfigError, OSError):
            counts = {}
        for lease in self.journal.active():
            for name in lease.names:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def status(self) -> list[dict[str, Any]]:
        """Every QPU: the vendor's status (when the watcher runs), the jobs holding it,
        the last acquisition error."""
        holders: dict[str, list[int]] = {}
        for lease in self.journal.active():
            for name in lease.names:
                holders.setdefault(name, []).append(lease.job_id)
        if self.availability is not None:
            statuses = self.availability.statuses()
        else:
            statuses = [QpuStatus(r.name, r.current_type) for r in self.config.get().resources]
        out = []
        for st in statuses:
            error = self.last_errors.get(st.name)
            row = {**st.to_json(), "jobs": holders.get(st.name, []),
                   "last_error": error[1] if error else None,
                   "last_error_at": error[0] if error else None}
            if row.get("reason"):  # the vendor's words about its QPU
                row["reason"] = self.redact(str(row["reason"]))
            out.append(row)
        return out

    def _acquire(self, request: AcquireRequest, gen: int) -> Outcome:
        facts = JobFacts(request.job_id, "broker", (), request.uid, request.user)
        time_limit, user = request.time_limit, request.user
        placement = None
        # squeue: the time limit, and slurmctld's record of the job (where it runs, its
        # licenses), against which every QPU it asks for is checked (probe.check_named)
        if self.squeue is not None:
            try:  # (a het job's component: its own record, its partition and account)
                record: JobRecord | None = self.squeue.job(request.component or
                                                           request.job_id)
            except SlurmCommandError as exc:
                log.warning("job %s: cannot read its record (%s): its time limit is taken "
                            "as %d s and QPUs with a partition/account/QOS policy are "
                            "refused", request.job_id, exc,
                            envcontract.UNLIMITED_TIMEOUT_SECONDS)
                record = None
            if record is not None:
                time_limit = time_limit or record.time_limit_seconds
                user = user or record.user
                placement = record.placement
        timeout = envcontract.timeout_seconds(time_limit)
        now = self.clock()
        expires = now + timeout + EXPIRY_GRACE_SECONDS
        # a selection counts the leases in the journal: one selecting request at a time
        # from counting to its journal entry, so two jobs at once never both pick a QPU's
        # last free slot. A request of names only counts and picks nothing (and goes past
        # max_jobs as a named QPU always could): it need not queue behind the others,
        # and a selection's count is as exact as if it had (as if it came next)
        with self._choosing_for(request.qpus):
            try:
                config = self.config.get()
                # a selection picks among the QPUs now: the vendors' status and queues, and
                # how many of this cluster's jobs hold each (never past its max_jobs)
                job_plan = plan(requested(request.qpus, config), config, self.factory,
                                placement=placement, licensed=self.licenses,
                                overrides=request.overrides, active_jobs=self.active_counts)
            except (RequestError, ConfigError, OSError) as exc:
                with self.journal.transaction():
                    lease = self.journal.begin(request.job_id, user=user, uid=request.uid,
                                               names=[], overrides={}, expires_at=expires,
                                               now=now, gen=gen)
                    self.journal.set_state(lease, State.FAILED,
                                           error=self.redact(f"--qpu={request.qpus}: {exc}"))
                return Outcome(lease)
            defs = job_plan.defs
            for warning in job_plan.refused:
                log.warning("job %s: %s", request.job_id, warning)
            # committed (a selection counts it from here on) but synced below, outside
            # the lock: the other jobs' requests need not wait for this one's disk write
            lease = self.journal.begin(request.job_id, user=user, uid=request.uid,
                                       names=job_plan.names, overrides=job_plan.overrides,
                                       expires_at=expires, now=now, request=request.qpus,
                                       selected=job_plan.selected, durable=False, gen=gen)
        self.journal.sync()  # on disk before any vendor is asked for anything

        last: list[Held] = []

        def journal_it(acquired: Acquired) -> None:
            held = Held(acquired.resource.name, acquired.resource.current_type,
                        acquired.token, self.clock())
            if len(lease.held) + 1 < len(defs):
                self.journal.add_held(lease, held)  # on disk before the next vendor is asked
            else:
                last.append(held)  # the last grant: in the state change's transaction

        try:
            acquire_all(defs, facts, timeout, self.factory, job_plan.overrides, journal_it)
        except AcquisitionFailed as exc:
            cause = exc.__cause__
            self.metrics.vendor_errors.inc(
                qpu=exc.qpu or "-", type=exc.qpu_type or "-", op="acquire",
                error=type(cause).__name__ if cause is not None else "AcquisitionFailed")
            error = self.redact(str(exc))
            if exc.qpu:
                self.last_errors[exc.qpu] = (self.clock(), error)
            with self.journal.transaction():
                for held in last:
                    self.journal.add_held(lease, held)
                for held in lease.held:  # rolled back by acquire_all
                    self.journal.mark_held_released(lease, held.name, None)
                self.journal.set_state(lease, State.FAILED, error=error)
            log.error("job %s: %s", request.job_id, error)
            return Outcome(lease, job_plan.refused)
        with self.journal.transaction():  # one write and one fsync for both
            for held in last:
                self.journal.add_held(lease, held)
            # only from acquiring: a broker sharing the journal that found this lease
            # half-made (this broker lost its database lock meanwhile) has undone it
            taken = self.journal.set_state(lease, State.ACQUIRED, expect=State.ACQUIRING)
        if not taken:
            log.error("job %s: another broker on the journal took this acquisition over "
                      "while the vendors were asked (this broker's lock in the database was "
                      "lost); releasing what this broker got", request.job_id)
            _, final = self._release_held(lease)
            if final is not None:
                self.journal.mark_held_released(lease, *final)
            raise JournalError(f"job {request.job_id}'s acquisition was taken over by "
                               "another broker; ask again")
        log.info("job %s: acquired %s for %s", request.job_id, ",".join(job_plan.names),
                 user or "?")
        return Outcome(lease, job_plan.refused)

    def _join(self, lease: LeaseRecord, request: AcquireRequest) -> Outcome:
        """Another component of a heterogeneous job, asking for its own QPUs under the het
        job's lease: those the lease holds are shared (one vendor session per QPU for the
        whole job), the others acquired and added to it. Its answer's environment has its
        own QPUs, in its order. A QPU it cannot have fails this component only (the job
        fails with it, and its epilogs release the lease)."""
        component = request.component

        def refused(error: str, warnings: list[str] | None = None) -> Outcome:
            log.error("job %s: %s", lease.job_id, error)
            return Outcome(lease, warnings or [], names=[], error=error)

        def why(exc: Exception) -> str:
            return self.redact(f"--qpu={request.qpus} (het job component {component}): {exc}")

        placement = None
        if self.squeue is not None and component is not None:
            try:
                record = self.squeue.job(component)
            except SlurmCommandError as exc:
                log.warning("job %s: cannot read the record of its component %s (%s): QPUs "
                            "with a partition/account/QOS policy are refused", lease.job_id,
                            component, exc)
            else:
                if component != lease.job_id and record.het_job_id != lease.job_id:
                    return refused(f"job {component} is no component of het job "
                                   f"{lease.job_id} (Slurm says its het job is "
                                   f"{record.het_job_id or 'none'})")
                placement = record.placement
        with self._choosing_for(request.qpus):
            try:
                config = self.config.get()
                # a selection the het job already resolved (another node or component
                # asking the same) is the QPU it picked: every node sees the same QPUs
                picks = {item: name for name, item in lease.selected.items()}
                items = [picks.get(i, i) for i in requested(request.qpus, config)]
                job_plan = plan(items, config, self.factory,
                                placement=placement, licensed=self.licenses,
                                overrides=request.overrides, active_jobs=self.active_counts)
            except (RequestError, ConfigError, OSError) as exc:
                return refused(why(exc))
            missing = [d for d in job_plan.defs
                       if (h := lease.holds(d.name)) is None or h.released_at is not None]
            before = (list(lease.names), dict(lease.selected), dict(lease.overrides))
            if missing:
                # named in the lease before any vendor is asked, and while a selection's
                # count is taken (as an acquisition's are): the other jobs count them
                added = {d.name for d in missing}
                self.journal.set_names(
                    lease, [*lease.names, *(n for n in job_plan.names if n in added)],
                    {**lease.selected, **job_plan.selected},
                    {**lease.overrides, **{n: o for n, o in job_plan.overrides.items()
                                           if n in added}})
        if missing:
            # the het job's user and uid (the lease's), whatever the request says
            facts = JobFacts(lease.job_id, "broker", (), lease.uid, lease.user)
            timeout = envcontract.timeout_seconds(_time_limit(lease))

            def journal_it(acquired: Acquired) -> None:  # each on disk before the next
                self.journal.add_held(lease, Held(acquired.resource.name,
                                                  acquired.resource.current_type,
                                                  acquired.token, self.clock()))
            try:
                acquire_all(missing, facts, timeout, self.factory, job_plan.overrides,
                            journal_it)
            except AcquisitionFailed as exc:
                with self.journal.transaction():
                    for d in missing:  # rolled back by acquire_all
                        if (h := lease.holds(d.name)) is not None and h.released_at is None:
                            self.journal.mark_held_released(lease, d.name, None)
                    self.journal.set_names(lease, *before)
                return refused(why(exc), job_plan.refused)
        log.info("job %s: het job component %s shares %s%s", lease.job_id, component,
                 ",".join(job_plan.names),
                 f" (acquired {','.join(d.name for d in missing)})" if missing else "")
        return Outcome(lease, job_plan.refused, names=job_plan.names)

    def _undo_interrupted(self, lease: LeaseRecord) -> None:
        """A lease the broker was acquiring when it stopped: give back what it got."""
        log.warning("job %s: the broker stopped while acquiring %s; releasing what it held",
                    lease.job_id, ",".join(lease.names))
        errors, last = self._release_held(lease)
        self._released(lease, last, error="the broker stopped while acquiring the QPUs",
                       release_errors=errors)

    # ------------------------------------------------------------------ release

    def release(self, job_id: int, gen: int | None = None) -> LeaseRecord | None:
        """Release the job's lease (only generation ``gen``, when given: the reaper must
        not release the lease of a requeued job's new run)."""
        with job_scope(job_id), self._job_lock(job_id):
            lease = self.journal.current(job_id)
            if lease is None or lease.state is State.RELEASED:
                return lease
            if gen is not None and lease.gen != gen:
                return lease
            started = time.monotonic()
            errors, last = self._release_held(lease) if lease.state.active else ([], None)
            self._released(lease, last, release_errors=errors)
            if lease.held:
                self.metrics.release_seconds.observe(
                    time.monotonic() - started, outcome="error" if errors else "released")
                log.info("job %s: released %s%s", job_id,
                         ",".join(h.name for h in lease.held),
                         f" ({len(errors)} error(s))" if errors else "")
            return lease

    def _released(self, lease: LeaseRecord, last: tuple[str, str | None] | None,
                  **state: Any) -> None:
        """The lease's end, with the release of its last QPU: one write, one fsync."""
        with self.journal.transaction():
            if last is not None:
                self.journal.mark_held_released(lease, *last)
            self.journal.set_state(lease, State.RELEASED, **state)

    def _release_held(self, lease: LeaseRecord) -> tuple[list[str], tuple[str, str | None] | None]:
        """Release every QPU the lease still holds; the errors, and the last QPU's
        (name, error), which the caller journals with the lease's state change (every
        other one is journalled before the next vendor is asked)."""
        errors: list[str] = []
        pending = [h for h in lease.held if h.released_at is None]
        try:
            config: QrmiConfig | None = self.config.get()
        except (ConfigError, OSError) as exc:
            log.error("job %s: config unreadable at release (%s)", lease.job_id, exc)
            config = None
        facts = JobFacts(lease.job_id, "broker", (), lease.uid, lease.user)
        last: tuple[str, str | None] | None = None
        for held in pending:
            failure = release_with_retries(config, held.name, held.type, held.token, facts,
                                           self.factory, self.release_retries,
                                           self.release_backoff)
            error = None if failure is None else self.redact(
                f"cannot release QPU {held.name} (token {held.token}): {describe_error(failure)}")
            if failure is not None:
                self.metrics.vendor_errors.inc(qpu=held.name, type=held.type, op="release",
                                               error=type(failure).__name__)
            if error:
                log.error("job %s: %s", lease.job_id, error)
                errors.append(error)
            if held is pending[-1]:
                last = (held.name, error)
            else:
                self.journal.mark_held_released(lease, held.name, error)
        return errors, last

    # ------------------------------------------------------------------ reaper

    def recover(self) -> None:
        """At start-up: finish acquisitions a previous broker process left half-done."""
        for listed in self.journal.active():
            if listed.state is State.ACQUIRING:
                with self._job_lock(listed.job_id):
                    # read again under the job's lock: an acquisition this process was
                    # making when listed has finished by now and is not to be undone
                    lease = self.journal.get(listed.job_id, listed.gen)
                    if lease is not None and lease.state is State.ACQUIRING:
                        self._undo_interrupted(lease)

    def reap(self) -> list[int]:
        """Release the leases of jobs Slurm no longer runs and of expired leases; return
        their job ids. Does nothing when squeue cannot answer: a controller restart must
        never cost running jobs their QPUs."""
        if self.squeue is None:
            return []
        started = self.clock()
        try:
            live = self.squeue.live_jobs()
        except SlurmCommandError as exc:
            log.warning("reaper: cannot list jobs (%s); trying again later", exc)
            return []
        reaped = []
        for lease in self.journal.active():
            if lease.created_at >= started:
                continue  # acquired after squeue answered: not known to be gone
            expired = lease.expires_at is not None and self.clock() > lease.expires_at
            if lease.job_id in live and not expired:
                continue
            why = "expired" if expired else "no longer known to Slurm"
            log.warning("reaper: job %s is %s; releasing %s", lease.job_id, why,
                        ",".join(lease.names))
            released = self.release(lease.job_id, lease.gen)
            if released is not None and released.gen == lease.gen:
                reaped.append(lease.job_id)
        return reaped

    # ------------------------------------------------------------------ job view

    def job_token(self, lease: LeaseRecord) -> str:
        return self.tokens.job_token(lease)

    def environment(self, lease: LeaseRecord,
                    names: list[str] | None = None) -> dict[str, str]:
        """What every task of the job gets: the contract, with the proxy in place of every
        endpoint and the job token in place of every credential. ``names``: only these
        QPUs, in this order (a het job's component)."""
        if lease.state is not State.ACQUIRED:
            return {}
        config = self.config.get()
        acquired, environments = [], {}
        token = self.job_token(lease)
        held_now = lease.held if names is None else \
            [h for n in names if (h := lease.holds(n)) is not None]
        for held in held_now:
            rdef = config.get(held.name) or ResourceDef(name=held.name, type=held.type)
            settings = overrides.apply(rdef.effective_environment(), rdef.type,
                                       lease.overrides.get(held.name, {}))
            legacy = LEGACY_TYPES.get(rdef.type)
            if legacy is not None:  # the views know the current spellings only
                settings = {k: v for k, v in settings.items()
                            if not k.startswith(legacy.legacy_prefix)}
            env = view_for(held.type).job_environment(
                settings, name=held.name, proxy_url=f"{self.public_url}/p/{held.name}",
                job_token=token, job_id=lease.job_id)
            if legacy is not None:  # as in direct mode, code for either QRMI finds its keys
                env.update({legacy.legacy_prefix + k.removeprefix(legacy.current_prefix): v
                            for k, v in env.items() if k.startswith(legacy.current_prefix)})
            environments[held.name] = env
            acquired.append(Acquired(rdef, held.token))
        return envcontract.build(acquired, job_id=lease.job_id, uid=lease.uid,
                                 time_limit_seconds=_time_limit(lease),
                                 environments=environments,
                                 request=lease.request).forced

    def authenticate(self, token: str | None) -> LeaseRecord | None:
        """The live lease a job token (or the access token made from it) belongs to."""
        ref = self.tokens.parse(token)
        if ref is None or token is None:
            return None
        lease = self.journal.get(ref.job_id, ref.gen)
        if lease is None or lease.state is not State.ACQUIRED:
            return None
        if lease.expires_at is not None and self.clock() > lease.expires_at:
            return None
        return lease if self.tokens.matches(token, lease) else None

    def resource_settings(self, lease: LeaseRecord, name: str) -> Mapping[str, str] | None:
        """The site's settings of one of the job's QPUs (with its accepted overrides)."""
        held = lease.holds(name)
        rdef = self.config.get().get(name)
        if held is None or rdef is None:
            return None
        return overrides.apply(rdef.effective_environment(), rdef.type,
                               lease.overrides.get(name, {}))


def _time_limit(lease: LeaseRecord) -> int | None:
    """The job's time limit the lease was made for, in seconds (None: unlimited)."""
    if not lease.expires_at:
        return None
    return round(lease.expires_at - EXPIRY_GRACE_SECONDS - lease.created_at)
