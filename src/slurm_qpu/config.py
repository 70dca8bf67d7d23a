"""qrmi_config.json: pydantic models of QRMI's schema, with errors that name the file,
the resource and the field.

The schema is QRMI's (``{"resources": [{"name", "type", "environment", "is_dynamic"}]}``),
so one file serves both QRMI tools and this plugin. Keys starting with ``_`` (such as
``"_comment"``) are allowed anywhere as comments, since JSON has none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slurm_qpu.request.names import NAME_PATTERN, is_valid_name
from slurm_qpu.request.selection import Known, Placement
from slurm_qpu.vendors.type_names import LEGACY_TYPES, current_environment, current_type


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    message: str
    resource: str | None = None  # "'ibm_fez'" or "#3" when the name is missing
    field: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.resource:
            where.append(f"resource {self.resource}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{': '.join(where)}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _drop_comments(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("_"))}
    return data


class SlurmPolicy(BaseModel):
    """slurm-qpu's own per-QPU settings (``"slurm": {...}`` in a resource; QRMI ignores
    the key): how many jobs may hold the QPU at once (the Slurm license/GRES count) and
    who may use it (unset: everyone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_jobs: int = Field(default=1, ge=1, le=10_000)
    partitions: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | None = None
    qos: tuple[str, ...] | None = None
    # what --qpu=any: selections filter on, when the vendor is not to be asked (or cannot
    # tell): the QPU's qubit count and whether it is a simulator
    num_qubits: int | None = Field(default=None, ge=1)
    is_simulator: bool | None = None

    _strip = model_validator(mode="before")(_drop_comments)

    @property
    def restricted(self) -> bool:
        """Whether the QPU has a partition, account or QOS policy."""
        return any(v is not None for v in (self.partitions, self.accounts, self.qos))

    def refusal(self, where: Placement) -> str | None:
        """Why a job placed ``where`` may not use the QPU (None: it may; an unknown
        partition, account or QOS is not held against it). The words of job_submit.lua.
        Where the job runs is not known at all (squeue failed): a QPU with a policy is
        refused, since nothing shows the job may use it."""
        if where.unknown is not None and self.restricted:
            return f"its partition/account/QOS policy cannot be checked: {where.unknown}"
        checks = (("partition", where.partition, self.partitions),
                  ("account", where.account, self.accounts), ("QOS", where.qos, self.qos))
        for what, value, allowed in checks:
            if allowed is not None and value and value not in allowed:
                return f"not for {what} {value} (allowed: {','.join(allowed)})"
        return None


class ResourceDef(BaseModel):
    """One QPU: its name (which prefixes its environment variables), type and settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    environment: dict[str, str] = Field(default_factory=dict)
    is_dynamic: bool = False
    slurm: SlurmPolicy = Field(default_factory=SlurmPolicy)

    _strip = model_validator(mode="before")(_drop_comments)

    @field_validator("name")
    @classmethod
    def _name_is_env_prefix(cls, name: str) -> str:
        if not is_valid_name(name):
            raise ValueError(
                f"name {name!r} cannot prefix an environment variable: use letters, digits "
                f"and '_', not starting with a digit (pattern {NAME_PATTERN.pattern})"
            )
        return name

    @field_validator("type")
    @classmethod
    def _type_is_known(cls, type_name: str) -> str:
        from slurm_qpu.vendors.registry import known_type_names

        known = known_type_names()
        if type_name not in known:
            raise ValueError(f"unknown type {type_name!r}; known: {', '.join(sorted(known))}")
        return type_name

    @field_validator("environment", mode="before")
    @classmethod
    def _drop_env_comments(cls, env: Any) -> Any:
        return _drop_comments(env)

    @field_validator("environment")
    @classmethod
    def _keys_are_env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not is_valid_name(k)]
        if bad:
            names = ", ".join(map(repr, bad))
            raise ValueError(f"key(s) {names} are not environment variable names")
        return env

    @property
    def current_type(self) -> str:
        """The type's current name (legacy names map to their successor)."""
        return current_type(self.type)

    def known(self) -> Known:
        """What the configuration alone says for ``--qpu=any:`` selections."""
        return Known.declared(self.name, self.current_type, self.slurm.num_qubits,
                              self.slurm.is_simulator)

    @property
    def is_legacy_type(self) -> bool:
        return self.type in LEGACY_TYPES

    def effective_environment(self) -> dict[str, str]:
        """Settings as the current type reads them (legacy keys also under current names)."""
        return current_environment(self.type, self.environment)


class QrmiConfig(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resources: list[ResourceDef]

    _strip = model_validator(mode="before")(_drop_comments)

    def names(self) -> list[str]:
        return [r.name for r in self.resources]

    def get(self, name: str) -> ResourceDef | None:
        return next((r for r in self.resources if r.name == name), None)


def parse_config(data: Any, file: str = "<config>") -> QrmiConfig:
    """Validate already-decoded JSON; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    try:
        config = QrmiConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, data, file))
        config = None
    problems.extend(_duplicate_problems(data, file))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> QrmiConfig:
    """Read and validate a qrmi_config.json; raise ConfigError with every problem found."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(file, "file not found")]) from None
    except PermissionError:
        raise ConfigError([Problem(file, "permission denied (the config is meant to be "
                                         "readable by root only)")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, f"cannot read: {exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([Problem(file, f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                         f"{exc.msg}")]) from None
    return parse_config(data, file)


def _resource_label(data: Any, index: int) -> str:
    try:
        name = data["resources"][index]["name"]
    except (KeyError, IndexError, TypeError):
        name = None
    return f"'{name}'" if isinstance(name, str) else f"#{index + 1}"


def _problems_from(exc: ValidationError, data: Any, file: str) -> Iterable[Problem]:
    for err in exc.errors():
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (allowed: name, type, environment, is_dynamic, slurm; "\
                  "use a key starting with '_' for comments)"
            if loc[2:3] == ["slurm"]:
                msg = ("unknown field (allowed in slurm: max_jobs, partitions, accounts, qos, "
                       "num_qubits, is_simulator)")
            if len(loc) == 1:
                msg = "unknown field (allowed: resources)"
        if loc[:1] == ["resources"] and len(loc) >= 2 and isinstance(loc[1], int):
            field = ".".join(str(p) for p in loc[2:]) or None
            yield Problem(file, msg, _resource_label(data, loc[1]), field)
        else:
            yield Problem(file, msg, None, ".".join(str(p) for p in loc) or None)


def _duplicate_problems(data: Any, file: str) -> Iterable[Problem]:
    resources = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(resources, list):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(resources):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            yield Problem(file, f"duplicate name (first defined as resource #{seen[name] + 1})",
                          f"'{name}' (#{index + 1})", "name")
        else:
            seen[name] = index
