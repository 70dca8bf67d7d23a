"""Plugin settings from the plugstack.conf line.

    required spank_qpu.so [CONFIG] [config=PATH] [names=PATH] [state_dir=DIR] [log_level=LEVEL]
                          [peer_timeout=SECONDS] [scontrol=PATH] [broker=URL[,URL...]]
                          [broker_timeout=SECONDS] [broker_ca=PATH] [log_json=PATH]
                          [profile=DIR]
                          [--env:NAME=VALUE ...]

A bare first argument is the config path, as for spank_qrmi, so its plugstack line works
unchanged. ``%n`` in ``state_dir`` expands to the short host name, which keeps the lab's
nodes (one host, one network and UTS namespace each) apart; the C shim expands it the
same way. Arguments the C shim consumes (venv=, pyhome=,
pythonpath=, pytrace=, module=) are ignored here. Standard library only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from slurm_qpu.shim_contract import DEFAULT_STATE_DIR, NODE_PLACEHOLDER

DEFAULT_CONFIG = "/etc/slurm/qrmi_config.json"
CATALOG_NAME = "qpu_names.json"
SHIM_KEYS = {"venv", "pyhome", "pythonpath", "pytrace", "module"}
# logging's numeric levels, spelled out: importing logging costs every sbatch --qpu ~2 ms
LOG_LEVELS = {"error": 40, "warning": 30, "info": 20, "verbose": 15, "debug": 10}


def broker_urls(value: str) -> list[str]:
    """The brokers a ``broker=`` value names: one URL, or several separated by commas."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


def short_hostname() -> str:
    """This host's name without its domain: what ``%n`` expands to, here and in the shim.
    (uname, not the socket module: gethostname(2) is uname's nodename on Linux, and
    importing socket cost every job step ~7 ms.)"""
    return os.uname().nodename.split(".")[0]


class SettingsError(ValueError):
    """A plugstack.conf argument that cannot be used."""


@dataclass(frozen=True)
class PluginSettings:
    config: Path = Path(DEFAULT_CONFIG)
    names: Path | None = None  # public name list; default: qpu_names.json beside the config
    state_dir: str = DEFAULT_STATE_DIR  # may contain %n
    log_level: int = LOG_LEVELS["info"]
    peer_timeout: float = 120.0  # how long a job's other nodes wait for the first node's lease
    scontrol: str = "scontrol"
    squeue: str = "squeue"
    sacctmgr: str = "sacctmgr"  # writes usage records into accounting; "no": do not
    extra_env: dict[str, str] = field(default_factory=dict)  # --env:NAME=VALUE (spank_qrmi)
    # broker mode: the prolog/epilog ask the slurm-qpu broker at this URL; no credential
    # is needed (or should be) on the compute nodes
    broker: str | None = None
    broker_timeout: float = 60.0  # how long a prolog keeps trying a broker that is down
    # https brokers: the CA bundle that verifies them, for the node and, as the jobs'
    # SSL_CERT_FILE and REQUESTS_CA_BUNDLE defaults, for their SDKs; None: the system's
    broker_ca: str | None = None
    log_json: str | None = None  # also log JSON lines (job id on each) to this file
    # write a cProfile of every callback here (DIR/<callback>-<pid>.prof): where a job's
    # milliseconds go (make bench uses it); off in production
    profile: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def catalog(self) -> Path:
        return self.names or self.config.with_name(CATALOG_NAME)

    def state_path(self, host: str | None = None) -> Path:
        """This node's state directory (``%n`` = ``host``, default the short host name)."""
        host = host or short_hostname()
        return Path(self.state_dir.replace(NODE_PLACEHOLDER, host))


def parse_args(args: list[str]) -> PluginSettings:
    values: dict[str, object] = {}
    extra_env: dict[str, str] = {}
    warnings: list[str] = []
    for index, arg in enumerate(args):
        if arg.startswith("--env:"):
            name, sep, value = arg[len("--env:"):].partition("=")
            if not sep or not name:
                raise SettingsError(f"plugstack argument {arg!r}: expected --env:NAME=VALUE")
            extra_env[name] = value
            continue
        key, sep, value = arg.partition("=")
        if not sep:
            if index == 0:  # spank_qrmi compatibility: the config path comes first
                values["config"] = Path(arg)
            else:
                warnings.append(f"ignoring plugstack argument {arg!r}")
            continue
        if key in SHIM_KEYS:
            continue
        if key == "config":
            values["config"] = Path(value)
        elif key == "names":
            values["names"] = Path(value)
        elif key == "state_dir":
            values["state_dir"] = value
        elif key in ("scontrol", "squeue", "sacctmgr"):
            values[key] = value
        elif key in ("log_json", "profile", "broker_ca"):
            if not value.startswith("/"):
                example = {"log_json": "/var/log/slurm-qpu/plugin.json",
                           "profile": "/var/tmp/slurm-qpu-profile",
                           "broker_ca": "/etc/ssl/certs/ca-certificates.crt"}[key]
                raise SettingsError(f"plugstack argument {key}={value}: expected an "
                                    f"absolute path, e.g. {key}={example}")
            values[key] = value
        elif key == "log_level":
            if value.lower() not in LOG_LEVELS:
                raise SettingsError(f"plugstack argument log_level={value}: use one of "
                                    f"{', '.join(LOG_LEVELS)}")
            values["log_level"] = LOG_LEVELS[value.lower()]
        elif key in ("peer_timeout", "broker_timeout"):
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds <= 0:
                raise SettingsError(f"plugstack argument {key}={value}: "
                                    "expected a positive number of seconds")
            values[key] = seconds
        elif key == "broker":
            # one URL, or several (brokers sharing one journal) tried in turn
            urls = broker_urls(value)
            wrong = [u for u in urls if not u.startswith(("http://", "https://"))]
            if wrong or not urls:
                raise SettingsError(f"plugstack argument broker={value}: expected the "
                                    "broker's URL, e.g. broker=http://slurmctl:8291, or "
                                    "several separated by commas (no spaces)")
            values["broker"] = ",".join(urls)
        else:
            warnings.append(f"ignoring unknown plugstack argument {arg!r}")
    return PluginSettings(extra_env=extra_env, warnings=tuple(warnings), **values)  # type: ignore[arg-type]
