"""`slurm-qpu broker`: it refuses to start with its secrets readable by others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slurm_qpu.cli import main

CONFIG = {"resources": [{"name": "sim_a", "type": "local-simulator",
                         "environment": {"QRMI_LOCAL_SIM_API_KEY": "k-123456"}}]}


pytestmark = pytest.mark.usefixtures("keep_logging")


def write_config(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "qrmi_config.json"
    path.write_text(json.dumps(CONFIG))
    path.chmod(mode)
    return path


def run(tmp_path: Path, config: Path, *extra: str) -> int:
    return main(["broker", "--config", str(config), "--journal",
                 str(tmp_path / "j" / "journal.sqlite"), "--port", "0", *extra])


def test_broker_refuses_to_start_with_a_config_readable_by_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 0o644)
    assert run(tmp_path, config) == 1
    assert capsys.readouterr().err == (
        f"slurm-qpu broker: {config} is readable or writable by others (mode 644) and holds "
        f"QPU credentials; run: chmod 600 {config}\n")
    assert not (tmp_path / "j").exists()  # refused before touching anything


def test_broker_refuses_a_config_owned_by_another_user(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 0o600)
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    os.chown(config, 12345, -1)
    assert run(tmp_path, config) == 1
    assert capsys.readouterr().err == (
        f"slurm-qpu broker: {config} belongs to uid 12345, not to the broker's user (uid 0); "
        "chown it to the broker's user\n")


def test_broker_says_when_the_config_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, tmp_path / "none.json") == 1
    assert capsys.readouterr().err == (
        f"slurm-qpu broker: cannot read the QPU config {tmp_path / 'none.json'}: "
        "No such file or directory\n")


def test_broker_reports_a_malformed_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "qrmi_config.json"
    config.write_text('{"resources": [{"name": "bad-name", "type": "local-simulator"}]}')
    config.chmod(0o600)
    assert run(tmp_path, config) == 1
    err = capsys.readouterr().err
    assert err.startswith("slurm-qpu broker: ") and "bad-name" in err


def test_broker_refuses_a_journal_from_a_newer_slurm_qpu(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    journal = tmp_path / "j" / "journal.sqlite"
    journal.parent.mkdir()
    with sqlite3.connect(journal) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    assert run(tmp_path, write_config(tmp_path, 0o600)) == 1
    assert "has schema version 99, newer than this slurm-qpu understands" in \
        capsys.readouterr().err


def test_broker_help_explains_broker_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["broker", "--help"])
    out = capsys.readouterr().out
    assert "broker=URL" in out and "chmod 600" in out


def test_log_format_json_puts_the_job_id_on_every_line_of_a_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness import lease_service, sim_resources

    from slurm_qpu.broker.service import AcquireRequest
    from slurm_qpu.cli.broker import _logging

    service = lease_service(tmp_path, sim_resources(tmp_path / "ledger.jsonl"))
    _logging("info", None, service.config, "json")
    service.acquire(AcquireRequest(6, user="bob", uid=1001, qpus="sim_a", time_limit=60))
    service.release(6)
    lines = [json.loads(raw) for raw in capsys.readouterr().err.splitlines()]
    assert [(line["job_id"], line["level"], line["component"]) for line in lines
            if line["logger"].startswith("slurm_qpu")] == [
        (6, "info", "broker"), (6, "info", "broker")]
    assert [line["message"] for line in lines] == ["job 6: acquired sim_a for bob",
                                                   "job 6: released sim_a"]


def test_a_trusted_proxy_that_is_no_address_is_refused_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 0o600)
    assert run(tmp_path, config, "--trusted-proxy", "haproxy.example") == 1
    assert capsys.readouterr().err == (
        "slurm-qpu broker: --trusted-proxy haproxy.example: not an address or a network "
        "(e.g. 10.0.0.5 or 10.0.0.0/29)\n")


def test_tls_takes_a_certificate_and_its_key_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 0o600)
    assert run(tmp_path, config, "--tls-cert", str(tmp_path / "c.pem")) == 1
    assert capsys.readouterr().err == ("slurm-qpu broker: --tls-cert and --tls-key go "
                                       "together: the certificate and its key\n")
    from slurm_qpu_lab.certificates import make

    certs = make(tmp_path / "tls")
    certs.key.chmod(0o644)
    assert run(tmp_path, config, "--tls-cert", str(certs.cert), "--tls-key",
               str(certs.key)) == 1
    assert capsys.readouterr().err == (
        f"slurm-qpu broker: the TLS key {certs.key} is readable or writable by others "
        f"(mode 644); run: chmod o-rwx {certs.key}\n")


def test_a_tls_broker_serves_https_and_gives_jobs_https_endpoints_by_default(
        tmp_path: Path) -> None:
    import signal
    import socket
    import ssl
    import subprocess
    import sys
    import time

    import httpx

    from slurm_qpu_lab.certificates import make

    certs = make(tmp_path / "tls")
    config = write_config(tmp_path, 0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("slurm-qpu")), "broker", "--config",
             str(config), "--journal", str(tmp_path / "journal.sqlite"), "--host",
             "127.0.0.1", "--port", str(port), "--tls-cert", str(certs.cert), "--tls-key",
             str(certs.key), "--squeue", "/bin/false", "--status-interval", "0"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        verify = ssl.create_default_context(cafile=str(certs.ca))
        for _ in range(200):
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/v1/health", verify=verify)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
        assert answer.json()["status"] == "ok"
        text = log.read_text()
        assert f"listening at https://127.0.0.1:{port} (jobs reach it as https://" in text
        assert f":{port});" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
