"""job_prolog and job_epilog: root, on every node of the job, each in a fresh process.

Every import costs each job (each prolog and epilog is a new Python): broker mode, the
production default, loads only what talks to the broker; the direct-mode lifecycle (the
config's models, the vendor types) is imported where it is used."""

from __future__ import annotations

import contextlib
import logging
import os

from slurm_qpu.broker.client import BrokerClient
from slurm_qpu.jobenv.contract import ca_bundle_env
from slurm_qpu.lease import from_broker as brokered
from slurm_qpu.lease.store import LeaseStore
from slurm_qpu.request.overrides import PROLOG_ENV as OVERRIDES_ENV
from slurm_qpu.settings import PluginSettings, short_hostname
from slurm_qpu.slurm import hostlist
from slurm_qpu.slurm.job import JobFacts
from slurm_qpu.spank import host
from slurm_qpu.usage import QpuUsage, record_in_accounting

log = logging.getLogger(__name__)
KEEP_LEASE_RECORDS_SECONDS = 7 * 24 * 3600


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _first(*values: int | None) -> int | None:
    """The first value that is not None (0 is a valid uid)."""
    return next((v for v in values if v is not None), None)


def job_facts() -> JobFacts:
    env = os.environ
    job_id = _first(host.item("job_id"), _int(env.get("SLURM_JOB_ID")),
                    _int(env.get("SLURM_JOBID")))
    if not job_id:
        raise RuntimeError("no job id in the prolog/epilog environment")
    node = env.get("SLURMD_NODENAME") or short_hostname()
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or node
    return JobFacts(job_id=job_id, node=node, nodes=tuple(hostlist.expand(nodelist)),
                    uid=_first(host.item("uid"), _int(env.get("SLURM_JOB_UID"))),
                    user=env.get("SLURM_JOB_USER"),
                    # a het job's component: its leader (Slurm < 20.02 said PACK)
                    het_job_id=_int(env.get("SLURM_HET_JOB_ID") or
                                    env.get("SLURM_PACK_JOB_ID")))


def _refresh_catalog(settings: PluginSettings) -> None:
    """Keep the users' name list in step with the config (best effort, root only)."""
    from slurm_qpu.config import ConfigError, load_config
    from slurm_qpu.request import catalog

    if not catalog.is_stale(settings.config, settings.catalog):
        return
    try:
        config = load_config(settings.config)
        catalog.write_catalog([r.known() for r in config.resources], settings.config,
                              settings.catalog)
        log.info("refreshed the public QPU name list %s", settings.catalog)
    except (ConfigError, OSError) as exc:
        log.debug("cannot refresh %s: %s", settings.catalog, exc)


def acquiring_environment(settings: PluginSettings) -> None:
    """Direct mode: the plugstack's ``--env:NAME=VALUE`` in this prolog's or epilog's own
    environment too, where the vendor calls are made (spank_qrmi sets them on the daemon:
    ``--env:https_proxy=...`` reaches the vendors through the site's proxy). In broker mode
    the broker makes those calls, with its own environment."""
    os.environ.update(settings.extra_env)


def _broker(settings: PluginSettings) -> BrokerClient:
    assert settings.broker is not None
    return BrokerClient(settings.broker, deadline=settings.broker_timeout,
                        ca_file=settings.broker_ca)


def prolog(settings: PluginSettings) -> int:
    job = job_facts()
    store = LeaseStore(settings.state_path())
    overrides = os.environ.get(OVERRIDES_ENV)
    if settings.broker:
        brokered.run_prolog(job, host.qpu_option(), store, _broker(settings), overrides,
                            job_defaults=ca_bundle_env(settings.broker_ca),
                            job_env=settings.extra_env)
        return 0
    acquiring_environment(settings)
    log.warning("job %s: direct mode: the QPU credentials in %s reach every task of this "
                "job (set broker= in plugstack.conf to keep them on the broker)",
                job.job_id, settings.config)
    from slurm_qpu.lease.coordination import SlurmJobBoard
    from slurm_qpu.lease.from_vendors import run_prolog
    from slurm_qpu.slurm.commands import Scontrol, Squeue

    _refresh_catalog(settings)
    run_prolog(job, host.qpu_option(), settings, store,
               SlurmJobBoard(Scontrol(settings.scontrol), Squeue(settings.squeue)),
               overrides=overrides)
    return 0


def epilog(settings: PluginSettings) -> int:
    job = job_facts()
    store = LeaseStore(settings.state_path())
    on_usage = None
    if settings.sacctmgr != "no":
        def on_usage(records: list[QpuUsage]) -> bool:
            return record_in_accounting(job.lease_id, records, sacctmgr=settings.sacctmgr)
    if settings.broker:
        brokered.run_epilog(job, store, _broker(settings), on_usage)
    else:
        from slurm_qpu.lease.from_vendors import run_epilog

        acquiring_environment(settings)
        run_epilog(job, settings, store, on_usage=on_usage)
    with contextlib.suppress(OSError):
        store.prune(KEEP_LEASE_RECORDS_SECONDS)
    return 0
