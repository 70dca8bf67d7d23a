"""The ``slurm-qpu`` command: admin and user sub-commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from slurm_qpu import __version__
from slurm_qpu.settings import CATALOG_NAME, DEFAULT_CONFIG
from slurm_qpu.shim_contract import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from slurm_qpu.config import QrmiConfig

EPILOG = """\
Users request QPUs with: sbatch --qpu=NAME[,NAME...] job.sh   (see 'slurm-qpu list')
Documentation: man slurm-qpu, man slurm-qpu-COMMAND, man spank_qpu (the plugin and
--qpu), and /usr/share/doc/slurm-qpu."""


def _load_or_report(file: str) -> QrmiConfig | None:
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


def _slurm_conf(args: argparse.Namespace) -> int:
    from slurm_qpu.slurmconf import render, render_job_submit

    config = _load_or_report(args.file)
    if config is None:
        return 1
    if args.job_submit or args.job_submit_functions:
        print(render_job_submit(config, args.file, functions_only=args.job_submit_functions),
              end="")
    else:
        print(render(config, args.nodes), end="")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.file)
    if config is None:
        return 1
    for r in config.resources:
        note = f" (legacy type {r.type!r}, read as {r.current_type!r})" if r.is_legacy_type else ""
        print(f"{r.name}: {r.current_type}, {len(r.environment)} setting(s){note}")
    print(f"{args.file}: OK, {len(config.resources)} QPU(s)")
    return 0


def _config_publish(args: argparse.Namespace) -> int:
    from slurm_qpu.catalog import write_catalog
    from slurm_qpu.config import ConfigError, load_config

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


def _list(args: argparse.Namespace) -> int:
    from slurm_qpu.catalog import CatalogError, read_catalog

    catalog_path = Path(args.names) if args.names else Path(args.config).with_name(CATALOG_NAME)
    try:
        catalog = read_catalog(Path(args.config), catalog_path)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"name": n, "type": t} for n, t in catalog.types.items()]))
        return 0
    width = max([len(n) for n in catalog.names] + [4])
    print(f"{'NAME':<{width}}  TYPE")
    for name, type_name in catalog.types.items():
        print(f"{name:<{width}}  {type_name}")
    return 0


def _leases(args: argparse.Namespace) -> int:
    from slurm_qpu.leases import LeaseStore

    leases = LeaseStore(Path(args.state_dir)).all()
    if args.json:
        print(json.dumps([json.loads(lease.to_json()) for lease in leases], indent=1))
        return 0
    print(f"{'JOB':>8}  {'STATE':<9} {'ROLE':<7} QPUS / ERROR")
    for lease in leases:
        role = "owner" if lease.owner else "member"
        detail = lease.error if lease.error else ",".join(lease.names)
        print(f"{lease.job_id:>8}  {lease.state.value:<9} {role:<7} {detail}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slurm-qpu", description="Quantum processors (QPUs) for Slurm jobs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"slurm-qpu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    config = sub.add_parser("config", help="check or publish a qrmi_config.json (admins)")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = csub.add_parser("check", help="validate a config; print every problem, exit 1 if any")
    check.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=_config_check)
    publish = csub.add_parser(
        "publish", help=f"write the public name list ({CATALOG_NAME}) users' sbatch reads")
    publish.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    publish.add_argument("-o", "--output", help=f"default: {CATALOG_NAME} beside the config")
    publish.set_defaults(func=_config_publish)

    lst = sub.add_parser("list", help="the QPU names you can request with --qpu")
    lst.add_argument("--config", default=DEFAULT_CONFIG)
    lst.add_argument("--names", help=f"public name list (default: {CATALOG_NAME} beside config)")
    lst.add_argument("--json", action="store_true", help="the list as JSON, for scripts")
    lst.set_defaults(func=_list)

    leases = sub.add_parser("leases", help="QPU leases recorded on this node (root)")
    leases.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help="the plugin's state_dir, with %%n already expanded")
    leases.add_argument("--json", action="store_true", help="the leases as JSON, for scripts")
    leases.set_defaults(func=_leases)

    conf = sub.add_parser("slurm-conf", help="the Slurm lines (Licenses, GresTypes, gres.conf) "
                                             "a qrmi_config.json implies (admins)")
    conf.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    conf.add_argument("--nodes", default="NODES_BESIDE_THE_QPUS",
                      help="node list for the GRES lines, e.g. q[1-2]")
    what = conf.add_mutually_exclusive_group()
    what.add_argument("--job-submit", action="store_true",
                      help="print a job_submit.lua instead: --qpu brings the QPU's license "
                           "and its partition/account/QOS policy is enforced at submit")
    what.add_argument("--job-submit-functions", action="store_true",
                      help="like --job-submit, without slurm_job_submit/slurm_job_modify: "
                           "for sites that call slurm_qpu_submit/slurm_qpu_modify from "
                           "their own job_submit.lua")
    conf.set_defaults(func=_slurm_conf)

    from slurm_qpu import runner
    from slurm_qpu.broker.cli import add_parser as add_broker
    from slurm_qpu.emulator.cli import add_parser as add_emulator
    from slurm_qpu.status_cli import add_parsers as add_status
    from slurm_qpu.usage_cli import add_parser as add_usage

    add_status(sub)
    add_usage(sub)
    runner.add_parser(sub)
    add_emulator(sub)
    add_broker(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        if args.command == "config":
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.choices["config"].print_help()
        else:
            parser.print_help()
        return 2
    try:
        return int(func(args))
    except BrokenPipeError:
        # `slurm-qpu ... | head`: the reader left; say nothing more (a traceback is noise)
        # and keep Python's exit-time flush of stdout from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
