"""``slurm-qpu run NAME INPUT [OUTPUT]``: run one payload file on one of the job's QPUs.

The job-side counterpart of QRMI's ``task_runner``, with the same arguments and the same
payload files (``qrmi_payload_v1_schema.json`` 0.4.0), so job scripts switch by renaming
the command. Unlike task_runner it checks the payload before anything reaches the vendor,
names the file and field that is wrong, shows progress, and exits with a meaningful code.

Signals: SIGTERM (scancel, time limit) and SIGINT (Ctrl-C on srun) cancel the vendor task
before exiting. SIGCONT deliberately does not (task_runner cancels on it): Slurm also sends
SIGCONT when it resumes a suspended job, and the SIGTERM that follows a cancel suffices.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from slurm_qpu.jobenv import JobEnvError, job_resource
from slurm_qpu.vendors.common.base import (
    QuantumResource,
    ResourceError,
    ResourceSpec,
    TaskStatus,
    TypeNotAvailable,
    UnsupportedPayload,
)
from slurm_qpu.vendors.common.payloads import PayloadError, check_supported, read_payload

PROG = "slurm-qpu run"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_POLL_FAILURES = 3  # consecutive "vendor unavailable" answers tolerated while polling
SLEEP_SLICE = 0.1  # how soon a signal is noticed while waiting between polls

HELP = "run a payload file on one of the job's QPUs (inside a --qpu job)"
DESCRIPTION = """\
Run one payload file on one of this job's QPUs and wait for the result
(a drop-in for QRMI's task_runner; same arguments, same payload files).

Payload files (JSON objects, QRMI payload schema 0.4.0):
  IBM (ibm-quantum-compute-service, ibm-quantum-system, local-simulator):
      {"program_id": "sampler" | "estimator", "parameters": {SamplerV2/EstimatorV2 input}}
  Pasqal (pasqal-cloud, pasqal-local):
      {"sequence": {Pulser abstract representation}, "job_runs": N}
  Alice & Bob (alice-bob-felis):  {"human_qir": "...", "input_params": {...}}
  IQM (iqm-server):  {"iqmjson": {RunRequest}, "job_type": "circuit" | "run" | "sweep",
                      "use_timeslot": false, "tag": "..."}
Examples: examples/payloads/ of slurm-qpu."""
EPILOG = """\
The result goes to OUTPUT (written when complete) or to stdout; progress goes to stderr.
SIGTERM (scancel, time limit) or SIGINT cancels the vendor task before exiting.
Exit status: 0 completed, 1 failed, cancelled or QPU error, 2 usage or input error,
130 on SIGINT, 143 on SIGTERM.
Example job step:  srun slurm-qpu run ibm_kingston sampler.json counts.json"""


def check_output(output: str | None) -> Path | None:
    """Refuse an OUTPUT that could not be written before the QPU time is spent."""
    if output is None:
        return None
    path = Path(output)
    if path.is_dir():
        raise PayloadError(f"{output}: is a directory; OUTPUT must be a file name")
    parent = path.parent
    if not parent.is_dir():
        raise PayloadError(f"cannot write {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PayloadError(f"cannot write {output}: directory {parent} is not writable")
    return path


# ---- progress and messages ------------------------------------------------------------

def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Reporter:
    """Plain lines on stderr: one per status change (batch output files, pipes)."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self._last: TaskStatus | None = None

    def _line(self, text: str) -> None:
        self.stream.write(f"{PROG}: {text}\n")
        self.stream.flush()

    def started(self, spec: ResourceSpec, task_id: str) -> None:
        if not self.quiet:
            self._line(f"{spec.name}: started task {task_id}")

    def progress(self, name: str, task_id: str, status: TaskStatus, elapsed: float) -> None:
        if not self.quiet and status is not self._last:
            self._line(f"{name}: task {task_id} {status.value} after {_clock(elapsed)}")
        self._last = status

    def notice(self, text: str) -> None:  # shown even with --quiet: it explains an exit
        self._line(text)

    def error(self, text: str) -> None:
        self._line(text)

    def logs(self, task_id: str, text: str) -> None:
        self._line(f"logs of task {task_id}:")
        self.stream.write(text if text.endswith("\n") else text + "\n")
        self.stream.flush()

    def finished(self, status: TaskStatus | None, code: int, output: Path | None) -> None:
        pass


class TtyReporter(Reporter):
    """One status line, rewritten in place with the elapsed time (a terminal)."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        super().__init__(stream, quiet)
        self._open = False

    def _line(self, text: str) -> None:
        self._close()
        super()._line(text)

    def _close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False

    def progress(self, name: str, task_id: str, status: TaskStatus, elapsed: float) -> None:
        if self.quiet:
            return
        self.stream.write(f"\r{name}: task {task_id} {status.value} {_clock(elapsed)}\x1b[K")
        self.stream.flush()
        self._open = True

    def finished(self, status: TaskStatus | None, code: int, output: Path | None) -> None:
        self._close()
        self.stream.flush()


class JsonReporter(Reporter):
    """One JSON object per line on stderr, for workflow tools."""

    def _event(self, event: str, **fields: object) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def started(self, spec: ResourceSpec, task_id: str) -> None:
        if not self.quiet:
            self._event("started", resource=spec.name, type=spec.type, task_id=task_id)

    def progress(self, name: str, task_id: str, status: TaskStatus, elapsed: float) -> None:
        if not self.quiet and status is not self._last:
            self._event("status", resource=name, task_id=task_id, status=status.value,
                        elapsed=round(elapsed, 1))
        self._last = status

    def notice(self, text: str) -> None:
        self._event("notice", message=text)

    def error(self, text: str) -> None:
        self._event("error", message=text)

    def logs(self, task_id: str, text: str) -> None:
        self._event("logs", task_id=task_id, text=text)

    def finished(self, status: TaskStatus | None, code: int, output: Path | None) -> None:
        self._event("finished", status=status.value if status else None, exit_code=code,
                    output=str(output) if output else None)


def make_reporter(args: argparse.Namespace, stream: TextIO) -> Reporter:
    if args.json:
        return JsonReporter(stream, args.quiet)
    if stream.isatty():
        return TtyReporter(stream, args.quiet)
    return Reporter(stream, args.quiet)


# ---- signals --------------------------------------------------------------------------

class Signals:
    """Records the first SIGINT/SIGTERM instead of dying, so the loop can cancel the vendor
    task first. The handler only sets a field: it may run in the middle of a vendor call."""

    CAUGHT = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> Signals:
        # Python lets only the main thread install handlers (true for the CLI).
        if threading.current_thread() is threading.main_thread():
            for sig in self.CAUGHT:
                self._previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)


# ---- the run --------------------------------------------------------------------------

def _build(spec: ResourceSpec) -> QuantumResource:
    from slurm_qpu.vendors import registry  # not needed by the rest of the CLI

    resource = registry.create(spec)
    if not isinstance(resource, QuantumResource):
        raise TypeNotAvailable(f"resource type {spec.type!r} built {type(resource).__name__}, "
                               "which is not a QuantumResource")
    return resource


def _is_transient(exc: ResourceError) -> bool:
    from slurm_qpu.vendors.common.http import VendorUnavailable

    return isinstance(exc, VendorUnavailable)


@dataclass
class Run:
    args: argparse.Namespace
    out: Reporter
    signals: Signals
    status: TaskStatus | None = None
    output: Path | None = None

    def execute(self) -> int:
        name = self.args.name
        try:
            spec = job_resource(name)
            payload = read_payload(self.args.input)
            check_supported(payload, spec, self.args.input)
            self.output = check_output(self.args.output)
        except (JobEnvError, PayloadError) as exc:
            self.out.error(str(exc))
            return EXIT_USAGE
        try:
            resource = _build(spec)
        except ResourceError as exc:
            self.out.error(f"{name}: {exc}")
            return EXIT_FAILED
        if self.signals.received is not None:
            self.out.notice(f"{self._signame()} received before the task started; "
                            "nothing to cancel")
            return 128 + self.signals.received
        try:
            task_id = resource.task_start(payload)
        except UnsupportedPayload as exc:
            self.out.error(f"{self.args.input}: {name} refused the payload: {exc}")
            return EXIT_USAGE
        except ResourceError as exc:
            self.out.error(f"{name}: cannot start the task: {exc}")
            return EXIT_FAILED
        self.out.started(spec, task_id)
        return self._wait(resource, name, task_id)

    def _signame(self) -> str:
        return signal.Signals(self.signals.received or 0).name

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.signals.received is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, SLEEP_SLICE))

    def _wait(self, resource: QuantumResource, name: str, task_id: str) -> int:
        start, failures = time.monotonic(), 0
        while True:
            if self.signals.received is not None:
                return self._cancel(resource, name, task_id)
            try:
                self.status = resource.task_status(task_id)
                failures = 0
            except ResourceError as exc:
                failures += 1
                if not _is_transient(exc) or failures >= MAX_POLL_FAILURES:
                    self.out.error(f"{name}: cannot get the status of task {task_id}: {exc}; "
                                   "the task may still be running")
                    return EXIT_FAILED
                self.out.notice(f"{name}: cannot get the status of task {task_id}: {exc}; "
                                "retrying")
            else:
                self.out.progress(name, task_id, self.status, time.monotonic() - start)
                if self.status is TaskStatus.COMPLETED:
                    return self._deliver(resource, name, task_id)
                if self.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                    return self._failed(resource, name, task_id)
            self._sleep(self.args.poll)

    def _cancel(self, resource: QuantumResource, name: str, task_id: str) -> int:
        self.out.notice(f"{self._signame()} received: cancelling task {task_id} on {name}")
        try:
            resource.task_stop(task_id)
        except ResourceError as exc:
            self.out.error(f"{name}: could not cancel task {task_id}: {exc}")
        else:
            self.out.notice(f"task {task_id} on {name} cancelled")
            self.status = TaskStatus.CANCELLED
        return 128 + (self.signals.received or 0)

    def _failed(self, resource: QuantumResource, name: str, task_id: str) -> int:
        assert self.status is not None
        self.out.error(f"{name}: task {task_id} {self.status.value.lower()}")
        try:
            self.out.logs(task_id, resource.task_logs(task_id))
        except ResourceError as exc:
            self.out.error(f"{name}: no logs for task {task_id}: {exc}")
        return EXIT_FAILED

    def _deliver(self, resource: QuantumResource, name: str, task_id: str) -> int:
        try:
            result = resource.task_result(task_id).value
        except ResourceError as exc:
            self.out.error(f"{name}: task {task_id} completed but its result cannot be "
                           f"fetched: {exc}")
            return EXIT_FAILED
        if self.output is None:
            _print(result)
            return EXIT_OK
        tmp = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        try:
            if _is_special(self.output):
                # /dev/stdout, a FIFO, /dev/null: write through. Renaming over a device
                # would replace it with a plain file (as root, that breaks the machine).
                self.output.write_text(result, encoding="utf-8")
            else:
                tmp.write_text(result, encoding="utf-8")
                os.replace(tmp, self.output)  # readers never see half a result
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.out.error(f"cannot write {self.output}: {exc.strerror}; the result follows "
                           "on stdout")
            _print(result)
            return EXIT_FAILED
        return EXIT_OK


def _is_special(path: Path) -> bool:
    """An existing file that is not a regular file (a device, a FIFO, a socket)."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return False


def _print(result: str) -> None:
    sys.stdout.write(result if result.endswith("\n") else result + "\n")
    sys.stdout.flush()


def main(args: argparse.Namespace) -> int:
    """Run the payload; the exit status (see EPILOG)."""
    out = make_reporter(args, sys.stderr)
    with Signals() as signals:
        run = Run(args, out, signals)
        code = run.execute()
    out.finished(run.status, code, run.output if code == EXIT_OK else None)
    return code


def _poll_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0 and at most 3600")
    return seconds


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``run`` on the ``slurm-qpu`` sub-command parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", metavar="NAME", help="one of the job's QPUs (from --qpu)")
    parser.add_argument("input", metavar="INPUT", help="the payload file (JSON)")
    parser.add_argument("output", metavar="OUTPUT", nargs="?",
                        help="write the result to this file instead of stdout")
    parser.add_argument("--poll", metavar="SECONDS", type=_poll_seconds, default=1.0,
                        help="how often to ask the QPU for the task's status (default 1)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress output; errors only")
    parser.add_argument("--json", action="store_true",
                        help="progress and errors as JSON lines on stderr")
    parser.set_defaults(func=main)
    return parser
