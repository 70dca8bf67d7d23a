"""Python logging routed into Slurm's log levels through the shim."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_qpu.log import (
    REDACTOR,
    JsonFormatter,
    SlurmHandler,
    job_scope,
    route_to_slurm,
    slurm_level,
)


def emit(level: int, msg: str, *args: object, exc: bool = False) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    handler = SlurmHandler(lambda lvl, text: lines.append((lvl, text)))
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("slurm_qpu.x", level, __file__, 1, msg, args, exc_info)
    handler.handle(record)
    return lines


@pytest.mark.parametrize(("level", "expected"), [
    (logging.CRITICAL, 0), (logging.ERROR, 0), (logging.WARNING, 1), (logging.INFO, 1),
    (15, 2), (logging.DEBUG, 3), (5, 4),
])
def test_slurm_level_mapping(level: int, expected: int) -> None:
    assert slurm_level(level) == expected


def test_error_goes_to_slurm_error() -> None:
    assert emit(logging.ERROR, "job %s: failed", 5) == [(0, "job 5: failed")]


def test_warning_goes_to_info_with_warning_prefix() -> None:
    assert emit(logging.WARNING, "careful") == [(1, "warning: careful")]


def test_info_goes_to_info_without_prefix() -> None:
    assert emit(logging.INFO, "acquired") == [(1, "acquired")]


def test_verbose_goes_to_slurm_verbose() -> None:
    assert emit(15, "detail") == [(2, "detail")]


def test_debug_goes_to_slurm_debug() -> None:
    assert emit(logging.DEBUG, "chatter") == [(3, "chatter")]


def test_debug_record_with_exception_carries_the_traceback() -> None:
    [(level, text)] = emit(logging.DEBUG, "traceback", exc=True)
    assert level == 3
    assert text.startswith("traceback\nTraceback (most recent call last):")
    assert text.endswith("RuntimeError: boom")


def test_error_record_with_exception_has_no_traceback() -> None:
    assert emit(logging.ERROR, "oops", exc=True) == [(0, "oops")]


def test_a_failing_sink_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(level: int, text: str) -> None:
        raise OSError("slurm gone")

    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler = SlurmHandler(broken)
    handler.handle(logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, None))


def test_route_to_slurm_sends_package_records_and_is_idempotent() -> None:
    lines: list[tuple[int, str]] = []
    route_to_slurm(lambda lvl, text: lines.append((lvl, text)), logging.INFO)
    route_to_slurm(lambda lvl, text: lines.append((lvl, text)), logging.DEBUG)
    logger = logging.getLogger("slurm_qpu")
    assert sum(isinstance(h, SlurmHandler) for h in logger.handlers) == 1
    assert logger.level == logging.DEBUG
    assert logger.propagate is False
    logging.getLogger("slurm_qpu.lease.from_vendors").debug("hello %s", "slurm")
    assert lines == [(3, "hello slurm")]


def test_route_to_slurm_level_filters_records() -> None:
    lines: list[tuple[int, str]] = []
    route_to_slurm(lambda lvl, text: lines.append((lvl, text)), logging.ERROR)
    logging.getLogger("slurm_qpu.x").warning("dropped")
    logging.getLogger("slurm_qpu.x").error("kept")
    assert lines == [(0, "kept")]


# ---------------------------------------------------------------- JSON lines


def json_record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("slurm_qpu.lease.from_vendors", logging.INFO, __file__, 1, msg,
                               (), None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_carries_the_job_of_its_scope() -> None:
    with job_scope(42):
        line = json.loads(JsonFormatter("job_prolog").format(json_record("acquired sim_a")))
    assert line["job_id"] == 42
    assert (line["level"], line["logger"], line["message"], line["component"]) == \
        ("info", "slurm_qpu.lease.from_vendors", "acquired sim_a", "job_prolog")
    assert line["time"].endswith("Z")
    assert json.loads(JsonFormatter().format(json_record("outside")))["job_id"] is None


def test_a_record_s_own_job_id_wins_over_the_scope() -> None:
    with job_scope(1):
        line = json.loads(JsonFormatter().format(json_record("reaped", job_id=7)))
    assert line["job_id"] == 7


@pytest.fixture
def restore_package_logger() -> Iterator[None]:
    logger = logging.getLogger("slurm_qpu")
    saved = list(logger.handlers)
    yield
    for handler in logger.handlers:
        if handler not in saved:
            handler.close()
    logger.handlers[:] = saved


@pytest.mark.usefixtures("restore_package_logger")
def test_route_to_slurm_also_writes_masked_json_lines_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "plugin.json"
    REDACTOR.add({"s3cr3t-value"})
    for _ in range(2):  # idempotent: one file handler
        route_to_slurm(lambda lvl, text: None, logging.INFO, str(path), "job_epilog")
    with job_scope(9):
        logging.getLogger("slurm_qpu.x").info("token s3cr3t-value released")
    [line] = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert (line["job_id"], line["component"]) == (9, "job_epilog")
    assert "s3cr3t-value" not in line["message"]


@pytest.mark.usefixtures("restore_package_logger")
def test_an_unwritable_json_log_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    lines: list[tuple[int, str]] = []
    route_to_slurm(lambda lvl, text: lines.append((lvl, text)), logging.INFO,
                   str(tmp_path / "missing-dir" / "plugin.json"))
    assert lines == [(1, f"warning: plugstack.conf: cannot write JSON log {tmp_path}/"
                         "missing-dir/plugin.json: No such file or directory")]
