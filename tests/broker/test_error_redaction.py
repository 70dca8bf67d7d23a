"""Vendor error text never carries a credential out of the broker: a vendor message that
echoes the API key it was sent is masked before the broker stores it (journal, last
errors) or answers it (node API, /v1/status), and in its log, for the QPUs of the config
it started with and for those a config reload added. /v1/status, which lists job ids and
those errors, answers the cluster's users (a MUNGE credential of any uid) only."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    BrokerUnderTest,
    StartBroker,
    fake_credential,
    raw,
    sim_resources,
    write_config,
)

from slurm_qpu.broker.client import munge_payload
from slurm_qpu.cli.broker import _logging
from slurm_qpu.redact import MASK

KEY = "site-api-key-4f9c2e7d"  # the configured API key a vendor's message echoes
LATE_KEY = "late-qpu-key-8b31a0c6"  # the key of a QPU added after start-up


pytestmark = pytest.mark.usefixtures("keep_logging")


def journal_text(b: BrokerUnderTest) -> str:
    """Everything the journal holds, as SQL."""
    db = sqlite3.connect(b.journal_path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def status(b: BrokerUnderTest, uid: int = 1000) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in b.node(uid=uid).call("GET", "/v1/status")}


def echoing(ledger: Path) -> list[dict[str, Any]]:
    """sim_a fails to acquire and sim_b to release, each vendor's message quoting the
    API key it was sent."""
    return sim_resources(
        ledger, sim_a={"API_KEY": KEY, "ACQUIRE_ERROR": f"the key {KEY} is not valid"},
        sim_b={"API_KEY": KEY, "RELEASE_ERROR": f"cannot end the session of key {KEY}"})


def test_a_vendor_error_echoing_the_api_key_is_masked_in_every_answer_the_journal_and_the_log(
        start_broker: StartBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = start_broker(echoing(tmp_path / "ledger.jsonl"))
    _logging("info", None, b.service.config)  # the broker's log, as `slurm-qpu broker` has it

    failed = b.acquire(5, "sim_a")  # the prolog's answer: into lease files and stderr
    assert failed["state"] == "failed"
    assert failed["error"] == f"cannot acquire QPU sim_a: the key {MASK} is not valid"
    rows = status(b)
    assert rows["sim_a"]["last_error"] == failed["error"]

    assert b.acquire(6, "sim_b")["state"] == "acquired"
    released = b.node().release(6)  # the epilog's answer
    assert released["release_errors"] == [
        f"cannot release QPU sim_b (token {released['resources'][0]['token']}): "
        f"cannot end the session of key {MASK}"]

    assert KEY not in json.dumps([failed, released, status(b), b.node().leases()])
    assert KEY not in journal_text(b)
    assert b.service.journal.current(5).error == failed["error"]  # type: ignore[union-attr]
    log = capsys.readouterr().err
    assert f"job 5: cannot acquire QPU sim_a: the key {MASK} is not valid" in log
    assert f"cannot end the session of key {MASK}" in log
    assert KEY not in log


def test_a_qpu_added_by_a_config_reload_has_its_secret_masked_in_the_log_and_stored_errors(
        start_broker: StartBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = tmp_path / "ledger.jsonl"
    b = start_broker(sim_resources(ledger))
    _logging("info", None, b.service.config)
    assert b.acquire(5, "sim_a")["state"] == "acquired"  # the broker at work, config read

    write_config(b.config_path, sim_resources(ledger, sim_c={
        "API_KEY": LATE_KEY, "ACQUIRE_ERROR": f"no such key: {LATE_KEY}"}))
    failed = b.acquire(6, "sim_c")
    assert failed["error"] == f"cannot acquire QPU sim_c: no such key: {MASK}"
    assert b.service.last_errors["sim_c"][1] == failed["error"]
    assert status(b)["sim_c"]["last_error"] == failed["error"]
    # any line, the SDKs' included, once the broker has read the new config
    logging.getLogger("some.vendor.sdk").warning("sending key %s", LATE_KEY)

    assert LATE_KEY not in json.dumps([failed, status(b)])
    assert LATE_KEY not in journal_text(b)
    log = capsys.readouterr().err
    assert f"sending key {MASK}" in log and f"no such key: {MASK}" in log
    assert LATE_KEY not in log


def test_the_vendors_status_note_is_masked_too(start_broker: StartBroker, tmp_path: Path
                                               ) -> None:
    from slurm_qpu.acquire.vendor_status import QpuStatus
    from slurm_qpu.broker.availability import Availability

    b = start_broker(sim_resources(tmp_path / "ledger.jsonl", sim_a={"API_KEY": KEY}))
    watcher = b.service.availability = Availability(b.service.config.get, b.service.factory)
    watcher.check()
    watcher._status["sim_a"] = QpuStatus("sim_a", "local-simulator", state="unknown",
                                         reason=f"IAM refused key {KEY}")
    assert status(b)["sim_a"]["reason"] == f"IAM refused key {MASK}"


# ------------------------------------------------------------------------ /v1/status access

def test_status_needs_a_munge_credential_from_any_uid(start_broker: StartBroker,
                                                     tmp_path: Path) -> None:
    b = start_broker(sim_resources(tmp_path / "ledger.jsonl"))
    b.acquire(5, "sim_a")
    anonymous = raw(b.url, "GET", "/v1/status")
    assert anonymous.status == 401
    assert anonymous.message == "node requests need a MUNGE credential"
    assert b"sim_a" not in anonymous.body
    forged = raw(b.url, "GET", "/v1/status", headers={"Authorization": "MUNGE nonsense"})
    assert forged.status == 401
    other = raw(b.url, "GET", "/v1/status", headers={"Authorization": "MUNGE " + fake_credential(
        munge_payload("GET", "/v1/leases", b""), 1000)})
    assert (other.status, other.message) == (401, "the MUNGE credential was made for another "
                                                  "request")
    for uid in (1000, 0):  # a user on a login node, root
        assert status(b, uid)["sim_a"]["jobs"] == [5]
    # the routes without job ids or secrets stay open
    for path in ("/v1/health", "/v1/catalog", "/metrics"):
        assert httpx.get(b.url + path).status_code == 200, path


def test_slurm_qpu_status_asks_with_the_users_munge_credential(
        start_broker: StartBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from slurm_qpu import munge
    from slurm_qpu.cli import main

    b = start_broker(sim_resources(tmp_path / "ledger.jsonl"))
    b.acquire(5, "sim_a")
    made: list[float | None] = []

    def user_munge(payload: bytes, timeout: float | None = None) -> str:
        made.append(timeout)
        return fake_credential(payload, uid=1000)

    monkeypatch.setattr(munge, "encode", user_munge)
    assert main(["status", "--broker", b.url, "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["sim_a"]["jobs"] == [5] and rows["sim_b"]["jobs"] == []
    assert len(made) == 1 and made[0] is not None and 0 < made[0] <= 10
