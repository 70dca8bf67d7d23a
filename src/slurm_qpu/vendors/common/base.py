"""The protocol every resource type implements (QRMI's QuantumResource trait, in Python),
its value types and its errors."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class TaskStatus(enum.Enum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


@dataclass(frozen=True)
class QiskitPrimitive:
    """An IBM primitive job: SamplerV2/EstimatorV2 JSON and the program id."""

    input: str
    program_id: str

    def params(self) -> object:
        """The decoded primitive input; UnsupportedPayload if it is not JSON."""
        try:
            return json.loads(self.input)
        except json.JSONDecodeError as exc:
            raise UnsupportedPayload(f"payload input is not JSON: {exc.msg}") from None


@dataclass(frozen=True)
class PasqalSequence:
    sequence: str
    job_runs: int


@dataclass(frozen=True)
class FelisProgram:
    human_qir: str
    input_params: str


@dataclass(frozen=True)
class IqmJob:
    iqmjson: str
    job_type: str
    use_timeslot: bool | None = None
    tag: str | None = None


Payload = QiskitPrimitive | PasqalSequence | FelisProgram | IqmJob


@dataclass(frozen=True)
class TaskResult:
    value: str


@dataclass(frozen=True)
class Target:
    value: str


@dataclass(frozen=True)
class JobContext:
    """What a resource may know about the Slurm job it serves."""

    job_id: int | None = None
    uid: int | None = None
    user: str | None = None
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """Everything needed to build a resource: its config entry and the job."""

    name: str
    type: str  # current type name
    environment: Mapping[str, str] = field(default_factory=dict)  # unprefixed config keys
    job: JobContext = field(default_factory=JobContext)


class ResourceError(Exception):
    """A resource operation failed; the message is meant for the user (vendor's words)."""


class NotAccessible(ResourceError):
    """The QPU exists but does not accept work now (offline, maintenance)."""


class AcquireError(ResourceError):
    pass


class ReleaseError(ResourceError):
    pass


class TaskNotReady(ResourceError):
    pass


class UnsupportedPayload(ResourceError):
    pass


class TypeNotAvailable(ResourceError):
    """The config names a type this installation cannot run."""


class MissingSetting(ResourceError):
    """A required ``environment`` key is missing from the resource's config entry."""


@runtime_checkable
class QuantumResource(Protocol):
    """One QPU as seen by slurm-qpu. Mirrors QRMI's trait so vendor code maps 1:1."""

    @property
    def resource_id(self) -> str: ...

    def is_accessible(self) -> bool: ...

    def acquire(self) -> str:
        """Reserve the QPU for the job; return the acquisition token (e.g. a session id)."""
        ...

    def release(self, token: str) -> None:
        """Give the QPU back. Must be safe to call for a token already released."""
        ...

    def task_start(self, payload: Payload) -> str: ...

    def task_stop(self, task_id: str) -> None: ...

    def task_status(self, task_id: str) -> TaskStatus: ...

    def task_result(self, task_id: str) -> TaskResult: ...

    def task_logs(self, task_id: str) -> str: ...

    def target(self) -> Target: ...

    def metadata(self) -> dict[str, str]: ...


class ResourceType(Protocol):
    """A factory registered under a type name (built in, or via the entry point group
    ``slurm_qpu.resource_types``)."""

    type_name: str

    def create(self, spec: ResourceSpec) -> QuantumResource: ...


def require(spec: ResourceSpec, key: str) -> str:
    """A required setting, or MissingSetting naming the resource and the key."""
    value = spec.environment.get(key)
    if not value:
        raise MissingSetting(f"resource {spec.name}: setting {key} is missing from its "
                             f"'environment' in the config")
    return value
