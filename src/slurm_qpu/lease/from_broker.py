"""The job lifecycle in broker mode: the prolog and epilog ask the broker, never a vendor.

Every node of the job asks the broker for the job's lease (the broker acquires once and
gives the others the same answer), keeps the answer in its local lease file for the
job's steps, and asks for the release in its epilog (the broker releases once). There is
no credential on the node and no coordination between nodes: the broker is the one place
that knows. Like the direct-mode lifecycle, nothing here raises: a failure is recorded in
the lease and task_init fails the job with its message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slurm_qpu.broker.client import BrokerClient, BrokerError
from slurm_qpu.lease.store import Lease, LeasedResource, LeaseState, LeaseStore
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.usage import QpuUsage

log = logging.getLogger(__name__)


def run_prolog(job: JobFacts, raw_request: str | None, store: LeaseStore,
               client: BrokerClient, overrides: str | None = None,
               job_defaults: dict[str, str] | None = None,
               job_env: dict[str, str] | None = None) -> Lease:
    """``job_defaults``: variables the node adds to the job's environment, as defaults (a
    job's own export wins): the CA bundle of an https broker. ``job_env``: variables it
    sets whatever the job exported (the plugstack's ``--env:NAME=VALUE``, as spank_qrmi),
    except the broker's own (its endpoints and the job token always win)."""
    def ask_the_broker() -> Lease:
        lease = Lease(job.job_id, [], LeaseState.FAILED, job.node, job.node,
                      uid=job.uid, user=job.user)
        try:
            answer = client.acquire(job.lease_id, qpus=raw_request or "", user=job.user,
                                    uid=job.uid, overrides=overrides,
                                    component=job.job_id if job.het_job_id else None)
        except BrokerError as exc:
            lease.error = str(exc)
        else:
            _fill(lease, answer)
            if lease.state is LeaseState.ACQUIRED:
                lease.env_defaults = dict(job_defaults or {})
                lease.env = {**(job_env or {}), **lease.env}
        return lease

    lease, made = store.claim(job.job_id, ask_the_broker)
    if not made:
        return lease
    if lease.state is LeaseState.FAILED:
        log.error("job %s: %s", job.job_id, lease.error)
    else:
        log.info("job %s: leased %s from the broker", job.job_id, ",".join(lease.names))
    return lease


def _fill(lease: Lease, answer: dict[str, object]) -> None:
    names = answer.get("qpus")
    lease.names = [str(n) for n in names] if isinstance(names, list) else []
    for warning in answer.get("warnings") or []:  # type: ignore[attr-defined]
        log.warning("job %s: %s", lease.job_id, warning)
    if answer.get("state") != "acquired":
        lease.error = str(answer.get("error") or f"the broker's lease is {answer.get('state')}")
        return
    now = time.time()
    resources = answer.get("resources")
    lease.resources = [LeasedResource(str(r["name"]), str(r["type"]), str(r["token"]), now)
                       for r in resources if isinstance(r, dict)] \
        if isinstance(resources, list) else []
    env = answer.get("env")
    lease.env = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
    lease.state = LeaseState.ACQUIRED


def run_epilog(job: JobFacts, store: LeaseStore, client: BrokerClient,
               on_usage: Callable[[list[QpuUsage]], object] | None = None) -> Lease | None:
    """Ask the broker to release; on the job's first node, hand the broker's usage record
    to ``on_usage`` (every node asks, one writes it to accounting)."""
    usage: list[QpuUsage] = []
    released_now: object = None
    with store.lock(job.job_id):
        lease = store.load(job.job_id)
        if lease is None or lease.state is LeaseState.RELEASED:
            return lease
        try:
            answer = client.release(job.lease_id)  # a het job's: once, for every component
        except BrokerError as exc:
            lease.release_errors.append(f"{exc}; the broker releases the QPUs itself once it "
                                        "sees the job has ended")
            log.error("job %s: %s", job.job_id, lease.release_errors[-1])
        else:
            lease.release_errors.extend(str(e) for e in answer.get("release_errors") or [])
            usage = usage_of(answer)
            released_now = answer.get("released_now")
        lease.state = LeaseState.RELEASED
        lease.released_at = time.time()
        store.save(lease)
    # one record per Slurm job: from its first node; a het job's (under its leader's id)
    # from the epilog whose call released the lease, whichever component it is
    writes = released_now is True if job.het_job_id else job.node == job.first_node
    if on_usage is not None and usage and writes:
        on_usage(usage)
    return lease


def usage_of(answer: dict[str, object]) -> list[QpuUsage]:
    """The broker's usage records in a release answer (malformed items are skipped)."""
    out = []
    items = answer.get("usage")
    for item in items if isinstance(items, list) else []:
        try:
            out.append(QpuUsage(str(item["qpu"]), str(item["type"]), item.get("start"),
                                item.get("end"), int(item.get("vendor_jobs") or 0),
                                item.get("shots"), item.get("qpu_seconds"),
                                item.get("selected_by") or None))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out
