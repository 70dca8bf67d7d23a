"""``local-simulator``: a network-free QPU for tests, the demo and site smoke tests.

It behaves like a vendor QPU from the plugin's point of view (accessibility, exclusive
acquire with a token, release, tasks) without any network. Settings (``environment`` keys
in qrmi_config.json, read as ``<name>_<KEY>`` inside jobs):

  QRMI_LOCAL_SIM_NUM_QUBITS       qubits of the device (default 5)
  QRMI_LOCAL_SIM_STATUS           online (default) | offline | maintenance
  QRMI_LOCAL_SIM_QUEUE_DEPTH      jobs waiting "at the vendor" (unset: not reported)
  QRMI_LOCAL_SIM_LEDGER           JSON-lines file where the "vendor" records every acquire
                                  and release: what a vendor's session list would show
  QRMI_LOCAL_SIM_ACQUIRE_ERROR    if set, acquire fails with this message (fault injection)
  QRMI_LOCAL_SIM_RELEASE_ERROR    if set, release fails with this message
  QRMI_LOCAL_SIM_ACQUIRE_DELAY    seconds acquire takes (default 0)

Tasks are not simulated circuit by circuit: a sampler task returns all shots in the
all-zeros outcome, marked ``"synthetic": true``, which is enough to exercise job plumbing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from slurm_qpu.vendors.common.base import (
    AcquireError,
    NotAccessible,
    Payload,
    QiskitPrimitive,
    ReleaseError,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.type_names import LOCAL_SIMULATOR

PREFIX = "QRMI_LOCAL_SIM_"
STATUSES = ("online", "offline", "maintenance")


@dataclass
class _Task:
    status: TaskStatus
    result: str


@dataclass
class LocalSimulator:
    spec: ResourceSpec
    _tasks: dict[str, _Task] = field(default_factory=dict)
    _reason: str | None = None

    def _setting(self, key: str, default: str = "") -> str:
        return self.spec.environment.get(PREFIX + key, default)

    @property
    def resource_id(self) -> str:
        return self.spec.name

    @property
    def num_qubits(self) -> int:
        return int(self._setting("NUM_QUBITS", "5"))

    @property
    def queue_depth(self) -> int | None:
        value = self._setting("QUEUE_DEPTH")
        return int(value) if value.isdigit() else None

    def status(self) -> str:
        status = self._setting("STATUS", "online").lower()
        return status if status in STATUSES else "offline"

    def is_accessible(self) -> bool:
        return self.status() == "online"

    @property
    def status_reason(self) -> str | None:
        """Why it is not accessible (as a vendor's status message would say)."""
        if self._reason is not None or self.is_accessible():
            return self._reason
        return f"{self.spec.name} is {self.status()}"

    @status_reason.setter
    def status_reason(self, reason: str | None) -> None:  # tests play a vendor's message
        self._reason = reason

    def _record(self, event: str, token: str) -> None:
        ledger = self._setting("LEDGER")
        if not ledger:
            return
        line = json.dumps({"event": event, "resource": self.spec.name, "token": token,
                           "job_id": self.spec.job.job_id, "pid": os.getpid(),
                           "time": round(time.time(), 3)}) + "\n"
        path = Path(ledger)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)

    def acquire(self) -> str:
        if not self.is_accessible():
            raise NotAccessible(f"{self.spec.name} is {self.status()}")
        delay = float(self._setting("ACQUIRE_DELAY", "0") or 0)
        if delay > 0:
            time.sleep(delay)
        error = self._setting("ACQUIRE_ERROR")
        if error:
            raise AcquireError(error)
        token = f"sim-{uuid.uuid4()}"
        self._record("acquire", token)
        return token

    def release(self, token: str) -> None:
        error = self._setting("RELEASE_ERROR")
        if error:
            raise ReleaseError(error)
        self._record("release", token)

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, QiskitPrimitive):
            raise UnsupportedPayload(f"{LOCAL_SIMULATOR} runs Qiskit primitive payloads only, "
                                     f"not {type(payload).__name__}")
        if payload.program_id not in ("sampler", "estimator"):
            raise UnsupportedPayload(f"unknown program_id {payload.program_id!r}")
        params = payload.params()
        pubs = params.get("pubs", []) if isinstance(params, dict) else []
        shots_value = params.get("shots") if isinstance(params, dict) else None
        default_shots = shots_value if isinstance(shots_value, int) and shots_value > 0 else 1024
        results = []
        for pub in pubs:
            shots = pub[2] if isinstance(pub, list) and len(pub) > 2 and pub[2] else default_shots
            if payload.program_id == "sampler":
                results.append({"data": {"meas": {"counts": {"0": shots}}}, "shots": shots})
            else:
                results.append({"data": {"evs": 0.0, "stds": 0.0}})
        task_id = f"simtask-{uuid.uuid4()}"
        body = {"results": results, "metadata": {"synthetic": True, "backend": self.spec.name}}
        self._tasks[task_id] = _Task(TaskStatus.COMPLETED, json.dumps(body))
        return task_id

    def _task(self, task_id: str) -> _Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise TaskNotReady(f"no task {task_id} on {self.spec.name}") from None

    def task_stop(self, task_id: str) -> None:
        task = self._task(task_id)
        if task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            task.status = TaskStatus.CANCELLED

    def task_status(self, task_id: str) -> TaskStatus:
        return self._task(task_id).status

    def task_result(self, task_id: str) -> TaskResult:
        task = self._task(task_id)
        if task.status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"task {task_id} is {task.status.value}")
        return TaskResult(task.result)

    def task_logs(self, task_id: str) -> str:
        return f"{self._task(task_id).status.value}: synthetic result from {LOCAL_SIMULATOR}"

    def target(self) -> Target:
        return Target(json.dumps({"backend_name": self.spec.name, "num_qubits": self.num_qubits,
                                  "simulator": True}))

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name}


class LocalSimulatorType:
    type_name = LOCAL_SIMULATOR

    def create(self, spec: ResourceSpec) -> LocalSimulator:
        return LocalSimulator(spec)
