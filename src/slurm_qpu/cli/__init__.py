"""The ``slurm-qpu`` command: admin and user sub-commands, one module each.

``COMMANDS`` names each sub-command's module, in the order ``--help`` lists them. A module
registers its sub-command with ``add_parser(subparsers)`` and runs it with
``main(args) -> int`` (``set_defaults(func=main)``); it imports what it needs inside its
functions, so building the parser, which every invocation does, stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from slurm_qpu import __version__

COMMANDS: dict[str, str] = {
    "config": "slurm_qpu.cli.config",
    "list": "slurm_qpu.cli.qpu_list",
    "leases": "slurm_qpu.cli.leases",
    "slurm-conf": "slurm_qpu.cli.slurm_conf",
    "status": "slurm_qpu.cli.status",
    "jobs": "slurm_qpu.cli.jobs",
    "usage": "slurm_qpu.cli.usage",
    "run": "slurm_qpu.cli.run",
    "emulator": "slurm_qpu.emulator.cli",
    "broker": "slurm_qpu.cli.broker",
}

EPILOG = """\
Users request QPUs with: sbatch --qpu=NAME[,NAME...] job.sh   (see 'slurm-qpu list')
Documentation: man slurm-qpu, man slurm-qpu-COMMAND, man spank_qpu (the plugin and
--qpu), and /usr/share/doc/slurm-qpu."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slurm-qpu", description="Quantum processors (QPUs) for Slurm jobs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"slurm-qpu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
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
