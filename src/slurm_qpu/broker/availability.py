"""What each QPU's vendor says about it, and Slurm holding jobs while a QPU is away.

The broker asks every configured QPU's vendor for its status every ``--status-interval``
seconds. A QPU the vendor reports unavailable (maintenance, paused, offline) gets a Slurm
reservation of all its licenses, ``qpu_maint_<name>`` (Flags=IGNORE_JOBS: running jobs
keep their session); jobs asking for it wait PENDING with reason ``Licenses`` instead
of starting and failing, and start on their own once the QPU is back and the broker
deletes the reservation. A vendor that cannot be reached changes nothing: a network
blip must not hold a cluster's jobs (the status shows the error).

Needs ``Licenses=qpu_<name>:N`` in slurm.conf (``slurm-qpu slurm-conf``), the
job_submit.lua that adds the license to --qpu jobs, and the broker's user as a Slurm
operator (``sacctmgr add user slurmqpu AdminLevel=Operator``) to create reservations.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable

from slurm_qpu.acquire.pipeline import ResourceFactory
from slurm_qpu.acquire.vendor_status import QpuStatus, probe
from slurm_qpu.config import QrmiConfig, ResourceDef
from slurm_qpu.slurm.conf import license_name

log = logging.getLogger(__name__)

RESERVATION_PREFIX = "qpu_maint_"


def reservation_name(qpu: str) -> str:
    return RESERVATION_PREFIX + qpu


class Reservations:
    """The maintenance reservations in slurmctld, through scontrol."""

    def __init__(self, scontrol: str = "scontrol",
                 run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
        self.scontrol = scontrol
        self._run = run

    def _call(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([self.scontrol, *args], capture_output=True, text=True, timeout=30,
                         check=False)

    def current(self) -> set[str]:
        """QPU names that have a maintenance reservation now."""
        proc = self._call("-o", "show", "reservation")
        names = set()
        for line in proc.stdout.splitlines():
            for field in line.split():
                if field.startswith("ReservationName=" + RESERVATION_PREFIX):
                    names.add(field.split("=", 1)[1][len(RESERVATION_PREFIX):])
        return names

    def hold(self, qpu: str, count: int) -> str | None:
        """Reserve all of the QPU's licenses from now on; the error text, or None."""
        proc = self._call("create", "reservation", f"ReservationName={reservation_name(qpu)}",
                          "StartTime=now", "Duration=infinite", "Users=root",
                          f"Licenses={license_name(qpu)}:{count}",
                          "Flags=IGNORE_JOBS,ANY_NODES")
        return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()

    def free(self, qpu: str) -> str | None:
        proc = self._call("delete", f"ReservationName={reservation_name(qpu)}")
        return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()


class Availability:
    """The vendors' view of every QPU, kept fresh by ``check()`` (the broker's watcher
    thread), and the reservations that follow it when ``reservations`` is given."""

    def __init__(self, config: Callable[[], QrmiConfig], factory: ResourceFactory,
                 reservations: Reservations | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._factory = factory
        self._reservations = reservations
        self._clock = clock
        self._lock = threading.Lock()
        self._status: dict[str, QpuStatus] = {}

    def statuses(self) -> list[QpuStatus]:
        with self._lock:
            known = dict(self._status)
        return [known.get(r.name) or QpuStatus(r.name, r.current_type)
                for r in self._config().resources]

    def check(self, follow: bool = True) -> list[QpuStatus]:
        """Ask the vendors; ``follow``: also hold or free the QPUs' jobs in Slurm (one
        broker does, of several on a journal: every one keeps the status it answers)."""
        config = self._config()
        held = self._current_holds()
        for rdef in config.resources:
            status = probe(rdef, self._factory, clock=self._clock)
            status.held = rdef.name in held if held is not None else False
            if follow and self._reservations is not None and held is not None:
                self._follow(rdef, status)
            with self._lock:
                self._status[rdef.name] = status
        return self.statuses()

    def _current_holds(self) -> set[str] | None:
        if self._reservations is None:
            return None
        try:
            return self._reservations.current()
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("availability: cannot list Slurm reservations (%s)", exc)
            return None

    def _follow(self, rdef: ResourceDef, status: QpuStatus) -> None:
        assert self._reservations is not None
        if status.state == "unavailable" and not status.held:
            error = self._reservations.hold(rdef.name, rdef.slurm.max_jobs)
            if error:
                log.error("availability: %s is unavailable (%s) but Slurm would not hold its "
                          "jobs: %s", rdef.name, status.reason, error)
                return
            status.held = True
            log.warning("availability: %s is unavailable (%s); new jobs for it wait "
                        "(reservation %s)", rdef.name, status.reason,
                        reservation_name(rdef.name))
        elif status.state == "online" and status.held:
            error = self._reservations.free(rdef.name)
            if error:
                log.error("availability: %s is back but its reservation %s stays: %s",
                          rdef.name, reservation_name(rdef.name), error)
                return
            status.held = False
            log.info("availability: %s is back; its waiting jobs may start", rdef.name)
