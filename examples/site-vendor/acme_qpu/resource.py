"""The Acme QPU as a slurm-qpu resource (QRMI's trait): acquiring checks the device and hands
out a token (Acme has no reservations); a task is one run of a program.

Settings (the resource's ``environment`` in qrmi_config.json):
  QRMI_ACME_ENDPOINT  the API root, e.g. https://api.acme-quantum.example
  QRMI_ACME_TOKEN     the account's API token, sent as ``Authorization: Bearer``
  QRMI_ACME_SHOTS     optional: shots of a run whose payload says none (default 100)
The QPU's name in the config is the Acme device's name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from slurm_qpu.vendors import (
    Payload,
    QiskitPrimitive,
    ResourceError,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
    VendorClient,
    VendorType,
    require,
)

STATUS = {"queued": TaskStatus.QUEUED, "running": TaskStatus.RUNNING,
          "done": TaskStatus.COMPLETED, "failed": TaskStatus.FAILED,
          "cancelled": TaskStatus.CANCELLED}


@dataclass
class AcmeQpu:
    spec: ResourceSpec
    api: VendorClient  # deadlines, retries and the vendor's error text come with it

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def _device(self) -> dict[str, Any]:
        device: dict[str, Any] = self.api.get_json(f"/v1/devices/{self.spec.name}")
        return device

    def is_accessible(self) -> bool:
        return self._device().get("status") == "online"

    def acquire(self) -> str:
        return str(uuid.uuid4())  # nothing to reserve at Acme

    def release(self, token: str) -> None:
        pass

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, QiskitPrimitive):
            raise UnsupportedPayload(f"{self.spec.name} runs Qiskit primitive payloads, not "
                                     f"{type(payload).__name__}")
        program = json.loads(payload.input)
        shots = program.get("shots") or int(self.spec.environment.get("QRMI_ACME_SHOTS", 100))
        run = self.api.request("POST", "/v1/runs", json={
            "device": self.spec.name, "program": program, "shots": shots}).json()
        return str(run["id"])

    def _run(self, task_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api.get_json(f"/v1/runs/{task_id}")
        return run

    def task_status(self, task_id: str) -> TaskStatus:
        return STATUS[self._run(task_id)["status"]]

    def task_stop(self, task_id: str) -> None:
        self.api.request("DELETE", f"/v1/runs/{task_id}")

    def task_result(self, task_id: str) -> TaskResult:
        run = self._run(task_id)
        status = STATUS[run["status"]]
        if status is TaskStatus.FAILED:
            raise ResourceError(f"Acme run {task_id} failed: {run.get('error')}")
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"run {task_id} is {status.value}")
        return TaskResult(json.dumps({"counts": run["counts"]}))

    def task_logs(self, task_id: str) -> str:
        return f"status: {self._run(task_id)['status']}\n"

    def target(self) -> Target:
        return Target(json.dumps({"num_qubits": self._device()["qubits"]}))

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name}


class AcmeQpuType(VendorType):
    type_name = "acme-qpu"

    def create(self, spec: ResourceSpec) -> AcmeQpu:
        api = VendorClient(require(spec, "QRMI_ACME_ENDPOINT"), "Acme Quantum", self.transport,
                           self.retry, headers={
                               "Authorization": f"Bearer {require(spec, 'QRMI_ACME_TOKEN')}"})
        return AcmeQpu(spec, api)
