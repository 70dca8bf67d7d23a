"""``slurm-qpu config check|publish``: validate a qrmi_config.json (every problem, not just
the first), and write the public list of QPU names users' sbatch reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_qpu.settings import CATALOG_NAME, DEFAULT_CONFIG

if TYPE_CHECKING:
    from slurm_qpu.config import QrmiConfig


def load_or_report(file: str) -> QrmiConfig | None:
    """The config, or None after printing every problem with it."""
    from slurm_qpu.config import ConfigError, load_config

    try:
        return load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{file}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return None


def check(args: argparse.Namespace) -> int:
    config = load_or_report(args.file)
    if config is None:
        return 1
    for r in config.resources:
        note = f" (legacy type {r.type!r}, read as {r.current_type!r})" if r.is_legacy_type else ""
        print(f"{r.name}: {r.current_type}, {len(r.environment)} setting(s){note}")
    print(f"{args.file}: OK, {len(config.resources)} QPU(s)")
    return 0


def publish(args: argparse.Namespace) -> int:
    from slurm_qpu.config import ConfigError, load_config
    from slurm_qpu.request.catalog import write_catalog

    out = Path(args.output) if args.output else Path(args.file).with_name(CATALOG_NAME)
    try:
        config = load_config(args.file)
        write_catalog([r.known() for r in config.resources], Path(args.file), out)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {', '.join(config.names())}")
    return 0


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="check or publish a qrmi_config.json (admins)")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION")
    config.set_defaults(func=lambda args: _usage(config))
    check_parser = csub.add_parser(
        "check", help="validate a config; print every problem, exit 1 if any")
    check_parser.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    check_parser.set_defaults(func=check)
    publish_parser = csub.add_parser(
        "publish", help=f"write the public name list ({CATALOG_NAME}) users' sbatch reads")
    publish_parser.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    publish_parser.add_argument("-o", "--output",
                                help=f"default: {CATALOG_NAME} beside the config")
    publish_parser.set_defaults(func=publish)


def _usage(parser: argparse.ArgumentParser) -> int:
    """``slurm-qpu config`` without an action: its help, and the usage error status."""
    parser.print_help()
    return 2
