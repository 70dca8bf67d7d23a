"""SPANK handlers: the functions the C shim calls (module ``slurm_qpu.spank``).

Each takes the plugstack arguments first and returns 0 (ok) or non-zero (failure). What a
failure means is decided by the shim per callback (see shim/spank_qpu.c): only ``option``
(rejects the submission) and ``task_init`` (fails the job) can fail anything; prolog and
epilog problems are recorded and logged, never returned, so a node is never drained.
The handlers are thin: they turn Slurm facts into plain values and call the layers below.
"""

from __future__ import annotations

from slurm_qpu.settings import PluginSettings, SettingsError, parse_args
from slurm_qpu.spank import host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _guard(callback: str, args: list[str], body: Callable[[PluginSettings], int]) -> int:
    """Run a handler: settings, logging, and no exception ever escapes to Slurm."""
    try:
        settings = parse_args(list(args))
    except SettingsError as exc:
        host.log(0, f"plugstack.conf: {exc}")
        return 1
    # logging is imported here, not at module level: the submit-time check never logs
    # through it and should not pay for it
    import logging

    from slurm_qpu.log import job_scope, route_to_slurm

    log = logging.getLogger("slurm_qpu.spank")
    try:
        quiet = host.context() in ("allocator", "local")  # users' terminals
        # the JSON log is root's: only the daemons' callbacks write it
        route_to_slurm(host.log, settings.log_level, None if quiet else settings.log_json,
                       callback)
        for warning in settings.warnings:
            (log.debug if quiet else log.warning)("plugstack.conf: %s", warning)
        with job_scope(None if quiet else _job_id()):
            if settings.profile:
                return _profiled(settings.profile, callback, body, settings)
            return body(settings)
    except Exception as exc:
        log.error("internal error in %s: %s: %s (please report this)", callback,
                  type(exc).__name__, exc)
        log.debug("traceback of the error above", exc_info=True)
        return 1


def _profiled(directory: str, callback: str, body: Callable[[PluginSettings], int],
              settings: PluginSettings) -> int:
    """Run ``body`` under cProfile; the stats go to DIR/<callback>-<pid>.prof (plugstack
    ``profile=DIR``: where a callback's time goes, for make bench and slow clusters).
    DIR is world-writable (users' sbatch writes there too): each profile is a new file,
    never one found at the name, in a directory that is no symbolic link (safefile)."""
    import cProfile
    import marshal
    import os

    from slurm_qpu.safefile import UnsafeFile, create_new

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(body, settings)
    finally:
        try:
            fd = create_new(directory, f"{callback}-{os.getpid()}.prof")
            with os.fdopen(fd, "wb") as out:  # what Profile.dump_stats writes
                profiler.create_stats()
                marshal.dump(profiler.stats, out)
        except UnsafeFile as exc:  # a profile must never fail a job
            host.log(0, f"profile={directory}: not writing the profile {exc.filename}: "
                        f"{exc.strerror}")
        except OSError as exc:
            host.log(2, f"profile={directory}: cannot write the profile: {exc}")


def _job_id() -> int | None:
    """The job this callback serves (prolog/epilog: from their environment)."""
    import os

    job = host.item("job_id")
    if job is None and os.environ.get("SLURM_JOB_ID", "").isdigit():
        job = int(os.environ["SLURM_JOB_ID"])
    return job


def option(args: list[str], value: str, remote: int) -> int:
    """--qpu given to sbatch/salloc/srun: validate the names before anything is queued."""
    from slurm_qpu.spank.submit import validate

    return _guard("option", args, lambda s: validate(s, value))


def submit_env(args: list[str]) -> int:
    """sbatch/salloc/srun after option parsing: the user's allowed QPU settings."""
    from slurm_qpu.spank.submit import pass_overrides

    return _guard("submit_env", args, pass_overrides)


def job_prolog(args: list[str]) -> int:
    from slurm_qpu.spank.jobscript import prolog

    return _guard("job_prolog", args, prolog)


def job_epilog(args: list[str]) -> int:
    from slurm_qpu.spank.jobscript import epilog

    return _guard("job_epilog", args, epilog)


def init_post_opt(args: list[str]) -> int:
    from slurm_qpu.spank.task import load_lease

    return _guard("init_post_opt", args, load_lease)


def task_init(args: list[str]) -> int:
    from slurm_qpu.spank.task import export_environment

    return _guard("task_init", args, export_environment)
