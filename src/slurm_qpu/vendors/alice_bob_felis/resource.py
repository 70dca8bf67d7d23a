"""``alice-bob-felis``: a target (emulator or QPU) of Alice & Bob's Felis cloud API. Felis has
no reservation API, so acquiring only mints a token for the job (as qrmi does).

Settings (config ``environment``; as in qrmi, each key is also read with the resource-name
prefix, ``<name>_QRMI_AB_FELIS_API_KEY``, when the plain key is absent):
  QRMI_AB_FELIS_API_KEY        the API key from the Felis console: base64 of ``user:password``,
                               sent as ``Authorization: Basic <key>``
  QRMI_AB_FELIS_BASE_ENDPOINT  API root, e.g. https://api.alice-bob.com/ (routes are /v1/...)
(Some qrmi docs say ``QRMI_FELIS_API_KEY``; no qrmi code reads that name, nor do we.)

Resource name -> Felis target, as qrmi maps it: drop a leading ``ab_``, turn the first two
``_`` into ``:`` and upper-case the rest: ``ab_emu_1q_lescanne_2020`` ->
``EMU:1Q:LESCANNE_2020``, ``ab_emu_40q_physical_cats`` -> ``EMU:40Q:PHYSICAL_CATS``.

Payload: FelisProgram(human_qir, input_params JSON, e.g. ``{"nbShots": 100}``). The job is
created for the target, then the QIR is uploaded, which starts it. The result is Felis'
histogram output as returned (CSV rows ``bitstring,count``), as in qrmi.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from slurm_qpu.vendors.common.base import (
    FelisProgram,
    MissingSetting,
    Payload,
    ResourceError,
    ResourceSpec,
    Target,
    TaskNotReady,
    TaskResult,
    TaskStatus,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.http import (
    RetryPolicy,
    VendorClient,
    VendorError,
    VendorNotFound,
    VendorType,
)

P = "QRMI_AB_FELIS_"
VENDOR = "Alice & Bob Felis"
# The last event of a job is its state (Felis event types -> our statuses, as qrmi maps them).
STATUS = {
    "CREATED": TaskStatus.QUEUED, "FETCHING_INPUT": TaskStatus.QUEUED,
    "INPUT_READY": TaskStatus.QUEUED, "COMPILING": TaskStatus.RUNNING,
    "COMPILED": TaskStatus.RUNNING, "TRANSPILING": TaskStatus.RUNNING,
    "TRANSPILED": TaskStatus.RUNNING, "EXECUTING": TaskStatus.RUNNING,
    "SUCCEEDED": TaskStatus.COMPLETED, "CANCELLED": TaskStatus.CANCELLED,
    "TIMED_OUT": TaskStatus.FAILED, "COMPILATION_FAILED": TaskStatus.FAILED,
    "TRANSPILATION_FAILED": TaskStatus.FAILED, "EXECUTION_FAILED": TaskStatus.FAILED,
}
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def name_to_target(name: str) -> str:
    """The Felis target a resource name stands for (qrmi's mapping)."""
    return name.removeprefix("ab_").replace("_", ":", 2).upper()


def target_to_name(target: str) -> str:
    """The resource name qrmi gives a Felis target (for listings)."""
    return "ab_" + target.replace(":", "_").lower()


def _setting(spec: ResourceSpec, key: str) -> str:
    value = spec.environment.get(key) or spec.environment.get(f"{spec.name}_{key}")
    if not value:
        raise MissingSetting(f"resource {spec.name}: setting {key} is missing from its "
                             f"'environment' in the config")
    return value.strip()


def _check_api_key(spec: ResourceSpec, key: str) -> None:
    """Felis keys are base64 of ``user:password``; say so early, without echoing the key."""
    try:
        decoded = base64.b64decode(key, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if ":" not in decoded:
        raise MissingSetting(f"resource {spec.name}: {P}API_KEY is not a Felis API key "
                             "(base64 of 'user:password')")


def _errors(job: dict[str, Any]) -> str:
    """The human part of a job's ``errors`` ([{content: ...}])."""
    parts = []
    for error in job.get("errors") or []:
        content = error.get("content", error) if isinstance(error, dict) else error
        if isinstance(content, dict):
            content = content.get("message") or content.get("detail") or json.dumps(content)
        parts.append(str(content))
    return "; ".join(parts) or "no reason given"


@dataclass
class AliceBobFelis:
    spec: ResourceSpec
    transport: httpx.BaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        key = _setting(self.spec, P + "API_KEY")
        _check_api_key(self.spec, key)
        self.felis_target = name_to_target(self.spec.name)
        self.api = VendorClient(
            _setting(self.spec, P + "BASE_ENDPOINT"), VENDOR, self.transport, self.retry,
            headers={"Authorization": f"Basic {key}", "Accept": "application/json",
                     "User-Agent": "slurm-qpu"})

    @property
    def resource_id(self) -> str:
        return self.spec.name

    def _target_config(self) -> dict[str, Any]:
        targets: list[dict[str, Any]] = self.api.get_json("/v1/targets/")
        for target in targets:
            if target.get("name") == self.felis_target:
                return target
        offered = ", ".join(sorted(target_to_name(str(t.get("name"))) for t in targets))
        message = f"target {self.felis_target} is not offered; available: {offered or 'none'}"
        raise VendorNotFound(f"{VENDOR}: not found: {message}", 404, message)

    def is_accessible(self) -> bool:
        """The target must be listed, and its health OK (NOK: monitored in a bad state;
        OFF: disabled). A listed target whose health route is missing counts as up."""
        self._target_config()
        try:
            health = self.api.get_json(f"/v1/targets/{self.felis_target}/health")
        except VendorNotFound:
            return True
        return str(health).upper() == "OK"

    def acquire(self) -> str:
        """No reservation exists at Felis: a fresh token identifies this job's use."""
        return str(uuid.uuid4())

    def release(self, token: str) -> None:
        """Nothing was reserved, so nothing to give back."""

    def task_start(self, payload: Payload) -> str:
        if not isinstance(payload, FelisProgram):
            raise UnsupportedPayload(f"{self.spec.name} runs Felis programs, not "
                                     f"{type(payload).__name__}")
        try:
            params = json.loads(payload.input_params or "{}")
        except json.JSONDecodeError as exc:
            raise UnsupportedPayload(f"payload input_params is not JSON: {exc.msg}") from None
        job = self.api.request("POST", "/v1/jobs/", json={
            "inputDataFormat": "HUMAN_QIR", "outputDataFormat": "HISTOGRAM",
            "target": self.felis_target, "inputParams": params}).json()
        job_id = str(job["id"])
        try:
            self.api.request("POST", f"/v1/jobs/{job_id}/input", files={
                "input": ("input", payload.human_qir.encode("utf-8"), "text/plain")})
        except VendorError as exc:
            # The job exists but will never start; don't leave it waiting for input.
            self._cancel_quietly(job_id)
            raise type(exc)(f"{VENDOR}: uploading the program of job {job_id} failed: "
                            f"{exc}", exc.status, exc.vendor_message) from None
        return job_id

    def _cancel_quietly(self, job_id: str) -> None:
        # Best effort: the upload error is the one the user needs.
        with contextlib.suppress(VendorError):
            self.api.request("DELETE", f"/v1/jobs/{job_id}", ok=(200, 202, 204, 409))

    def _job(self, task_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.api.get_json(f"/v1/jobs/{task_id}")
        return job

    @staticmethod
    def _status(task_id: str, job: dict[str, Any]) -> TaskStatus:
        events = job.get("events") or []
        event = str(events[-1].get("type")) if events else "CREATED"
        if event not in STATUS:
            raise VendorError(f"{VENDOR}: job {task_id} has unknown event {event!r}")
        return STATUS[event]

    def task_status(self, task_id: str) -> TaskStatus:
        return self._status(task_id, self._job(task_id))

    def task_stop(self, task_id: str) -> None:
        """Cancel an active job; a final one is left alone. Felis answers 409 when a job
        can no longer be cancelled (it just finished), which is fine too."""
        if self.task_status(task_id) in FINAL:
            return
        self.api.request("DELETE", f"/v1/jobs/{task_id}", ok=(200, 202, 204, 409))

    def task_result(self, task_id: str) -> TaskResult:
        job = self._job(task_id)
        status = self._status(task_id, job)
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise ResourceError(f"Felis job {task_id} is {status.value}: {_errors(job)}")
        if status is not TaskStatus.COMPLETED:
            raise TaskNotReady(f"job {task_id} is {status.value}")
        return TaskResult(self.api.request("GET", f"/v1/jobs/{task_id}/output").text)

    def task_logs(self, task_id: str) -> str:
        job = self._job(task_id)
        lines = [f"target: {job.get('target')}", "events:"]
        lines += [f"  {e.get('createdAt', '')} {e.get('type')}" for e in job.get("events") or []]
        if job.get("errors"):
            lines.append(f"errors: {_errors(job)}")
        return "\n".join(lines) + "\n"

    def target(self) -> Target:
        """The target's description from Felis: qubits, instructions, input parameters."""
        return Target(json.dumps(self._target_config()))

    def metadata(self) -> dict[str, str]:
        return {"backend_name": self.spec.name, "felis_target": self.felis_target}


class AliceBobFelisType(VendorType):
    type_name = "alice-bob-felis"

    def create(self, spec: ResourceSpec) -> AliceBobFelis:
        return AliceBobFelis(spec, self.transport, self.retry)
