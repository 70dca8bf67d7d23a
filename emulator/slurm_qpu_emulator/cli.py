"""``slurm-qpu-emulator``: serve the emulated vendor APIs until stopped.

Its own command (and ``python -m slurm_qpu_emulator``), from its own distribution: the
plugin's ``slurm-qpu`` on a compute node knows nothing of it. ``slurm-qpu emulator``, the
spelling of 0.1, still runs it for one release (with a deprecation warning) where this
package is installed beside slurm-qpu.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Serve IBM Quantum Compute, IBM Quantum System (+ S3) and Pasqal Cloud APIs locally, so the
unmodified vendor SDKs, the qrmi wheel and slurm-qpu's resource types run against emulated
QPUs. Circuits run on qiskit's reference simulator (results of circuits too wide to simulate
are synthetic, and marked so).

Faults can also be injected while running, with HTTP on the same port:
  POST   /_emulator/faults       {"path": REGEX, "status": 503, "delay": 0, "count": 2}
  DELETE /_emulator/faults
  POST   /_emulator/maintenance  {"qpu": "ibm_manila", "on": true}
  GET    /_emulator/requests     the request log"""


PROG = "slurm-qpu-emulator"
SUMMARY = "serve emulated vendor QPU APIs (tests, demos, labs)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{PROG} {version()}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8290, help="port (default %(default)s; 0 = any)")
    p.add_argument("--public-url", metavar="URL",
                   help="base URL clients use, for the printed config "
                        "(default http://HOST:PORT)")
    p.add_argument("--job-seconds", type=float, default=1.0, metavar="S",
                   help="how long an emulated job queues and runs (default %(default)s)")
    p.add_argument("--latency", type=float, default=0.0, metavar="S",
                   help="delay every vendor request by S seconds")
    p.add_argument("--fail", action="append", default=[], metavar="REGEX=STATUS[xCOUNT]",
                   help="answer requests whose path matches REGEX with HTTP STATUS "
                        "(COUNT times, default always); repeatable")
    p.add_argument("--maintenance", action="append", default=[], metavar="QPU",
                   help="report QPU as under maintenance; repeatable")
    p.add_argument("--write-config", metavar="PATH",
                   help="write a qrmi_config.json for every emulated QPU, then serve")
    p.add_argument("--print-config", action="store_true",
                   help="print that qrmi_config.json and exit")
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("slurm-qpu-emulator")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


def _fault(spec: str) -> Any:
    from slurm_qpu_emulator import Fault

    path, sep, rest = spec.rpartition("=")
    status, _, count = rest.partition("x")
    if not sep or not status.isdigit() or (count and not count.isdigit()):
        raise ValueError(f"--fail {spec!r}: expected REGEX=STATUS or REGEX=STATUSxCOUNT, "
                         "e.g. '/jobs$=503x2'")
    return Fault(path=path, status=int(status), count=int(count) if count else None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except BrokenPipeError:
        from slurm_qpu.cli import closed_pipe

        return closed_pipe()


def serve(args: argparse.Namespace) -> int:
    from slurm_qpu_emulator import Emulator, EmulatorConfig, Fault
    from slurm_qpu_emulator.ibm_backends import EmulatorDependencyMissing

    try:
        faults = [_fault(spec) for spec in args.fail]
        emulator = Emulator(EmulatorConfig(job_seconds=args.job_seconds))
    except (ValueError, EmulatorDependencyMissing) as exc:
        print(f"slurm-qpu-emulator: {exc}", file=sys.stderr)
        return 2
    public = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    config = emulator.qrmi_config(public)
    if args.print_config:
        print(json.dumps(config, indent=2))
        return 0
    for qpu in args.maintenance:
        if not emulator.set_maintenance(qpu):
            names = [r["name"] for r in config["resources"]]
            print(f"slurm-qpu-emulator: --maintenance {qpu}: no such QPU; emulated QPUs: "
                  f"{', '.join(names)}", file=sys.stderr)
            return 2
    if args.latency > 0:
        emulator.inject(Fault(path="^/(?!_emulator)", delay=args.latency))
    for fault in faults:
        emulator.inject(fault)
    if args.write_config:
        Path(args.write_config).write_text(json.dumps(config, indent=2) + "\n")
    try:
        url = emulator.start(args.host, args.port)
    except OSError as exc:
        print(f"slurm-qpu-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    offered = ", ".join(f"{r['name']} ({r['type']})" for r in config["resources"])
    print(f"slurm-qpu-emulator serving at {url}; QPUs: {offered}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    print("slurm-qpu-emulator stopped", flush=True)
    return 0
