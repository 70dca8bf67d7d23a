"""Logging: Python's logging routed into Slurm's logs through the shim.

In sbatch/salloc/srun Slurm's info level prints on the user's terminal, so chatter uses
debug and only user-facing problems use error. In the daemons every line lands in the
slurmd log; each message carries the job id (the handlers put it there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slurm_qpu.redact import Redactor, install

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


# Masks secrets in every line that reaches Slurm's logs: the patterns always, and each
# configured credential once the config is loaded (``lifecycle`` adds them).
REDACTOR = Redactor()


def route_to_slurm(sink: Callable[[int, str], None], level: int) -> None:
    """Send the ``slurm_qpu`` logger's records to Slurm (idempotent), redacted."""
    logger = logging.getLogger("slurm_qpu")
    logger.setLevel(level)
    logger.propagate = False
    if not any(isinstance(h, SlurmHandler) for h in logger.handlers):
        handler = SlurmHandler(sink)
        install(handler, REDACTOR)
        logger.addHandler(handler)
