"""How a job's nodes agree on one acquisition: the public record and waiting for it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from slurm_qpu.lease.coordination import (
    MARK,
    JobView,
    PeerTimeout,
    PublicRecord,
    SlurmJobBoard,
    wait_for_record,
)
from slurm_qpu.slurm.commands import Scontrol, SlurmCommandError, Squeue

RECORD = PublicRecord("acquired", "node1",
                      [{"name": "sim_a", "type": "local-simulator", "token": "sim-123"}])


def encoded(obj: object) -> str:
    return MARK + base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


# ---------------------------------------------------------------- PublicRecord


def test_record_round_trips_through_encode_and_decode() -> None:
    assert PublicRecord.decode(RECORD.encode()) == RECORD


def test_failed_record_round_trips_with_its_error() -> None:
    record = PublicRecord("failed", "node1", [], "cannot acquire QPU sim_a: no")
    assert PublicRecord.decode(record.encode()) == record


def test_encoded_record_is_marked_and_fits_an_admin_comment() -> None:
    text = RECORD.encode()
    assert text.startswith("slurm-qpu:v1:")
    assert not any(c.isspace() for c in text)
    assert "=" not in text  # scontrol parses Key=value: no padding in the value


@pytest.mark.parametrize("text", [
    "",
    "site note: reviewed by admin",
    "slurm-qpu:v1:",
    "slurm-qpu:v1:!!!not base64!!!",
    "slurm-qpu:v2:" + RECORD.encode()[len(MARK):],
])
def test_decode_of_foreign_or_garbage_admin_comment_is_none(text: str) -> None:
    assert PublicRecord.decode(text) is None


@pytest.mark.parametrize("payload", [[1, 2], {"a": 1}, "text", 5,
                                     {"state": "acquired"}])
def test_decode_of_json_that_is_not_a_record_is_none(payload: object) -> None:
    assert PublicRecord.decode(encoded(payload)) is None


def test_decode_of_non_utf8_payload_is_none() -> None:
    assert PublicRecord.decode(MARK + base64.urlsafe_b64encode(b"\xff\xfe").decode()) is None


# ---------------------------------------------------------------- wait_for_record


class FakeBoard:
    """Answers view() from a list of records, one per call (the last one repeats)."""

    def __init__(self, records: list[PublicRecord | None], time_limit: int | None = 600):
        self.records = records
        self.time_limit = time_limit
        self.views = 0

    def view(self, job_id: int) -> JobView:
        record = self.records[min(self.views, len(self.records) - 1)]
        self.views += 1
        if self.views > 1000:
            raise AssertionError("wait_for_record never gives up")
        return JobView(self.time_limit, record)

    def publish(self, job_id: int, record: PublicRecord) -> None:
        raise AssertionError("not expected")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_returns_at_once_when_the_record_is_there() -> None:
    clock = FakeClock()
    view = wait_for_record(FakeBoard([RECORD]), 5, 10, clock=clock, sleep=clock.sleep)
    assert view == JobView(600, RECORD)
    assert clock.sleeps == []


def test_wait_polls_until_the_record_appears() -> None:
    clock = FakeClock()
    board = FakeBoard([None, None, None, RECORD])
    view = wait_for_record(board, 5, 60, clock=clock, sleep=clock.sleep)
    assert view.record == RECORD
    assert board.views == 4
    assert len(clock.sleeps) == 3


def test_wait_backs_off_to_at_most_two_seconds() -> None:
    clock = FakeClock()
    with pytest.raises(PeerTimeout):
        wait_for_record(FakeBoard([None]), 5, 20, poll=0.5, clock=clock, sleep=clock.sleep)
    assert max(clock.sleeps) == 2.0
    assert clock.sleeps == sorted(clock.sleeps)


def test_wait_raises_peer_timeout_with_message_after_timeout() -> None:
    clock = FakeClock()
    board = FakeBoard([None])
    with pytest.raises(PeerTimeout) as excinfo:
        wait_for_record(board, 5, 30, clock=clock, sleep=clock.sleep)
    assert str(excinfo.value) == "no word from the job's first node after 30 s"
    assert clock.now >= 1030.0
    assert clock.now < 1030.0 + 2.0 + 1e-9  # gives up within one poll of the deadline


def test_wait_with_zero_timeout_looks_once() -> None:
    clock = FakeClock()
    board = FakeBoard([None])
    with pytest.raises(PeerTimeout):
        wait_for_record(board, 5, 0, clock=clock, sleep=clock.sleep)
    assert board.views == 1
    assert clock.sleeps == []


# ---------------------------------------------------------------- SlurmJobBoard


def _scontrol(tmp_path: Path, output: str) -> Scontrol:
    script = tmp_path / "scontrol"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\necho '{output}'\n")
    script.chmod(0o755)
    return Scontrol(str(script))


def _squeue(tmp_path: Path, **job: object) -> Squeue:
    """A fake squeue printing ``squeue --json`` output for one job."""
    body = tmp_path / "squeue.json"
    body.write_text(json.dumps({"jobs": [{"job_id": 5, **job}]}))
    script = tmp_path / "squeue"
    script.write_text(f"#!/bin/sh\ncat {body}\n")
    script.chmod(0o755)
    return Squeue(str(script))


def test_slurm_job_board_view_reads_time_limit_and_record(tmp_path: Path) -> None:
    board = SlurmJobBoard(_scontrol(tmp_path, ""), _squeue(
        tmp_path, time_limit=10, admin_comment=RECORD.encode(), restart_cnt=2))
    assert board.view(5) == JobView(600, RECORD, 2)


def test_slurm_job_board_reads_the_newer_slurm_number_objects(tmp_path: Path) -> None:
    board = SlurmJobBoard(_scontrol(tmp_path, ""), _squeue(
        tmp_path, job_id={"set": True, "infinite": False, "number": 5},
        time_limit={"set": True, "infinite": True, "number": 0}, admin_comment=""))
    assert board.view(5) == JobView(None, None, 0)


def test_slurm_job_board_view_without_admin_comment_has_no_record(tmp_path: Path) -> None:
    board = SlurmJobBoard(_scontrol(tmp_path, ""), _squeue(tmp_path, time_limit=0))
    assert board.view(5) == JobView(None, None)


def test_slurm_job_board_publish_writes_the_encoded_record(tmp_path: Path) -> None:
    board = SlurmJobBoard(_scontrol(tmp_path, ""))
    board.publish(5, RECORD)
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"update JobId=5 AdminComment={RECORD.encode()}"]


def test_user_comment_cannot_forge_the_public_record(tmp_path: Path) -> None:
    forged = PublicRecord("acquired", "node1",
                          [{"name": "sim_a", "type": "local-simulator", "token": "forged"}])
    board = SlurmJobBoard(_scontrol(tmp_path, ""), _squeue(
        tmp_path, time_limit=10, comment=f"x AdminComment={forged.encode()}",
        name=f"AdminComment={forged.encode()}", admin_comment=""))
    assert board.view(5).record is None


def test_squeue_without_the_job_is_a_clear_error(tmp_path: Path) -> None:
    squeue = _squeue(tmp_path)
    with pytest.raises(SlurmCommandError, match="job 6 not found"):
        squeue.job(6)
