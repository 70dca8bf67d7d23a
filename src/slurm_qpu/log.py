"""Logging: Python's logging routed into Slurm's logs through the shim.

In sbatch/salloc/srun Slurm's info level prints on the user's terminal, so chatter uses
debug and only user-facing problems use error. In the daemons every line lands in the
slurmd log; each message carries the job id (the handlers put it there).

For log shippers, ``JsonFormatter`` writes one JSON object per line with the job id of
the job being served on every line (``job_scope`` sets it for the plugin's callback or
the broker's request; a record's own ``job_id`` extra wins). The plugin writes such
lines to ``log_json=PATH`` (root contexts; never through a link planted at the name,
see ``safefile``), the broker to stderr with ``--log-format json``. Secrets are masked
before any formatter sees a message (``redact``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from slurm_qpu.redact import Redactor, install
from slurm_qpu.safefile import UnsafeFile, open_append

# The job a thread (a plugin callback, a broker request) is working for.
CURRENT_JOB: ContextVar[int | None] = ContextVar("slurm_qpu_job", default=None)


@contextlib.contextmanager
def job_scope(job_id: int | None) -> Iterator[None]:
    """Every log line inside carries ``job_id``."""
    token = CURRENT_JOB.set(job_id)
    try:
        yield
    finally:
        CURRENT_JOB.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, job_id, message, and the
    component (plugin callback or ``broker``) when given."""

    def __init__(self, component: str | None = None) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job_id", None)
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "job_id": job if job is not None else CURRENT_JOB.get(),
            "message": record.getMessage(),
        }
        if self.component:
            line["component"] = self.component
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")


def slurm_level(levelno: int) -> int:
    """Python level -> the shim's level (0 error, 1 info, 2 verbose, 3 debug, 4 debug2)."""
    if levelno >= logging.ERROR:
        return 0
    if levelno >= logging.INFO:
        return 1
    if levelno >= VERBOSE:
        return 2
    if levelno >= logging.DEBUG:
        return 3
    return 4


class SlurmHandler(logging.Handler):
    def __init__(self, sink: Callable[[int, str], None]) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno == logging.WARNING:
                msg = "warning: " + msg
            if record.exc_info and record.levelno <= logging.DEBUG:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            self.sink(slurm_level(record.levelno), msg)
        except Exception:  # logging must never break a callback
            self.handleError(record)


class _AppendHandler(logging.FileHandler):
    """A FileHandler whose file root opens without following a link planted at its name
    (safefile.open_append: a regular file with one link, or nothing)."""

    def _open(self) -> io.TextIOWrapper:
        return open(open_append(self.baseFilename), "a", encoding=self.encoding,
                    errors=self.errors)


# Masks secrets in every line that reaches Slurm's logs: the patterns always, and each
# configured credential once the config is loaded (``lifecycle`` adds them).
REDACTOR = Redactor()


def route_to_slurm(sink: Callable[[int, str], None], level: int,
                   json_path: str | None = None, component: str | None = None) -> None:
    """Send the ``slurm_qpu`` logger's records to Slurm (idempotent), redacted, and as
    JSON lines to ``json_path`` when given."""
    logger = logging.getLogger("slurm_qpu")
    logger.setLevel(level)
    logger.propagate = False
    if not any(isinstance(h, SlurmHandler) for h in logger.handlers):
        handler = SlurmHandler(sink)
        install(handler, REDACTOR)
        logger.addHandler(handler)
    if not json_path:
        return
    for existing in logger.handlers:
        if isinstance(existing, logging.FileHandler) and existing.baseFilename == json_path:
            if isinstance(existing.formatter, JsonFormatter):  # a later callback, same process
                existing.formatter.component = component
            return
    try:
        file_handler = _AppendHandler(json_path, encoding="utf-8")
    except UnsafeFile as exc:
        logger.error("plugstack.conf: not writing JSON log %s: %s", json_path, exc.strerror)
        return
    except OSError as exc:
        logger.warning("plugstack.conf: cannot write JSON log %s: %s", json_path,
                       exc.strerror)
        return
    file_handler.setFormatter(JsonFormatter(component))
    install(file_handler, REDACTOR)
    logger.addHandler(file_handler)
