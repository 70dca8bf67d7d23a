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


def emulator_alias(argv: list[str]) -> int:
    """``slurm-qpu emulator ARGS``, as 0.1 spelled it: the emulator is its own command now
    (``slurm-qpu-emulator``, package slurm-qpu-emulator), and this spelling goes in 0.3."""
    try:
        from slurm_qpu_emulator.cli import main as emulator_main
    except ImportError:
        print("slurm-qpu: the emulator is its own command now, slurm-qpu-emulator, in its "
              "own package (apt install slurm-qpu-emulator, or pip install ./emulator from "
              "the source tree)", file=sys.stderr)
        return 2
    print("slurm-qpu: 'slurm-qpu emulator' is deprecated and goes in 0.3; "
          "run 'slurm-qpu-emulator'", file=sys.stderr)
    return emulator_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["emulator"]:  # not in --help: the product does not offer it
        return emulator_alias(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except BrokenPipeError:
        return closed_pipe()


def closed_pipe() -> int:
    """The exit status of a command whose reader left (``slurm-qpu ... | head``): say
    nothing more (a traceback is noise) and keep Python's exit-time flush of stdout from
    failing again. The emulator's command ends the same way."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
