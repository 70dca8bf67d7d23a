"""The environment every task of a ``--qpu`` job sees (compatible with spank_qrmi + QRMI),
as the prolog or the broker builds it; the variables are in ``variables.py``, and the
package (``slurm_qpu.jobenv``) reads them back in the job.

Config values are *defaults*: as with spank_qrmi, a value the user exported before
submitting wins inside the job. The contract variables themselves are always forced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from slurm_qpu.jobenv.variables import (
    CA_BUNDLE_VARIABLES,
    JOB_ID,
    JOB_UID,
    LEGACY_RESOURCES,
    LEGACY_TYPES,
    REQUEST,
    RESOURCES,
    TIMEOUT_KEY,
    TOKEN_KEY,
    TYPES,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the config's models (pydantic) would cost every job step ~100 ms
    from slurm_qpu.config import ResourceDef

# A job without a time limit still needs a finite QPU timeout (QRMI parses it as an int;
# spank_qrmi's UINT32_MAX is dropped by IBM and gives 136-year presigned URLs). 8 hours is
# the longest an IBM Quantum session may live.
UNLIMITED_TIMEOUT_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Acquired:
    resource: ResourceDef
    token: str


@dataclass(frozen=True)
class EnvContract:
    forced: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    def merged(self, user_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """What a task ends up with, given the job's own environment."""
        user_env = user_env or {}
        out = {k: user_env.get(k, v) for k, v in self.defaults.items()}
        out.update(self.forced)
        return out


def ca_bundle_env(ca_file: str | None) -> dict[str, str]:
    """The job's defaults that make its SDKs verify an https broker with ``ca_file`` (the
    plugstack's broker_ca), or none."""
    return {name: ca_file for name in CA_BUNDLE_VARIABLES} if ca_file else {}


def timeout_seconds(time_limit_seconds: int | None) -> int:
    if time_limit_seconds is None or time_limit_seconds <= 0:
        return UNLIMITED_TIMEOUT_SECONDS
    return time_limit_seconds


def build(
    acquired: Sequence[Acquired],
    *,
    job_id: int,
    uid: int | None,
    time_limit_seconds: int | None,
    extra_env: Mapping[str, str] | None = None,
    environments: Mapping[str, Mapping[str, str]] | None = None,
    request: str | None = None,
) -> EnvContract:
    """The contract for ``acquired``. By default each resource's config environment gives
    the defaults (direct mode, as spank_qrmi). ``environments`` (resource name -> values)
    replaces them with values that are forced instead: the broker's proxy endpoints and
    job token, which a user's own export must never replace."""
    names = ",".join(a.resource.name for a in acquired)
    types = ",".join(a.resource.current_type for a in acquired)
    forced = {RESOURCES: names, TYPES: types, LEGACY_RESOURCES: names, LEGACY_TYPES: types,
              JOB_ID: str(job_id)}
    if uid is not None:
        forced[JOB_UID] = str(uid)
    if request:
        forced[REQUEST] = request
    forced.update(extra_env or {})
    defaults: dict[str, str] = {}
    timeout = str(timeout_seconds(time_limit_seconds))
    for a in acquired:
        prefix = a.resource.name + "_"
        if environments is not None:
            for key, value in environments.get(a.resource.name, {}).items():
                forced[prefix + key] = value
        else:
            for key, value in a.resource.effective_environment().items():
                defaults[prefix + key] = value
        forced[prefix + TOKEN_KEY] = a.token
        forced[prefix + TIMEOUT_KEY] = timeout
    return EnvContract(forced=forced, defaults=defaults)


def rust_log_for(srun_debug: str | None) -> str:
    """RUST_LOG for the qrmi wheel, from srun's verbosity (as spank_qrmi does)."""
    try:
        level = int(srun_debug or "3")
    except ValueError:
        level = 3
    if level <= 2:
        return "error"
    if level == 3:
        return "info"
    return "debug" if level == 4 else "trace"
