"""The journal in MariaDB: where it is said by a URL that holds no secret, a server that
restarts under it, a server that is down (the health check says so), a broker whose
leases are there, and a journal of an older slurm-qpu upgraded by brokers starting on it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from harness import StartBroker, fake_credential, read_ledger, sim_resources

from slurm_qpu.broker.client import BrokerClient, BrokerError
from slurm_qpu.broker.database import DatabaseError, _connection_params
from slurm_qpu.broker.journal import SCHEMA_VERSION, Held, Journal, JournalError, State
from slurm_qpu_lab.mariadb import MariaDBServer
from slurm_qpu_lab.old_journal import make_v1


def test_a_server_restart_between_two_writes_loses_nothing(
        mariadb_server: MariaDBServer) -> None:
    journal = Journal(mariadb_server.create_database("restarts"))
    lease = journal.begin(5, user="alice", uid=1000, names=["a"], overrides={},
                          expires_at=None)
    journal.add_held(lease, Held("a", "local-simulator", "tok-a", 1.0))
    mariadb_server.restart()
    journal.set_state(lease, State.ACQUIRED)  # on a new connection, once
    got = journal.current(5)
    assert got is not None and got.state is State.ACQUIRED and got.held[0].token == "tok-a"
    journal.check()
    journal.close()


def test_while_the_server_is_down_the_journal_says_it_cannot_be_read(
        mariadb_server: MariaDBServer) -> None:
    journal = Journal(mariadb_server.create_database("down"))
    mariadb_server.stop(remove=False)
    try:
        with pytest.raises(JournalError) as raised:
            journal.check()
        assert str(raised.value).startswith(f"cannot read the broker journal {journal.path}: ")
    finally:
        mariadb_server.resume()
    journal.check()  # and back once the server is
    journal.close()


def test_an_unreachable_server_is_named_in_the_error_without_secrets(tmp_path: Path) -> None:
    with pytest.raises(JournalError) as raised:
        Journal(f"mysql://qpu@localhost/leases?unix_socket={tmp_path}/no.sock")
    message = str(raised.value)
    assert message.startswith("cannot open the broker journal: cannot connect to the journal "
                              f"database mysql://qpu@localhost(socket {tmp_path}/no.sock)/"
                              "leases: ")


def test_the_url_takes_the_password_from_a_file_and_refuses_one_in_itself(
        tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    shown, params = _connection_params(
        f"mariadb://slurm-qpu@db.example:3307/qpu?password_file={secret}")
    assert params == {"user": "slurm-qpu", "database": "qpu", "password": "s3cret",
                      "host": "db.example", "port": 3307}
    assert shown == "mariadb://slurm-qpu@db.example:3307/qpu" and "s3cret" not in shown
    with pytest.raises(DatabaseError, match="put the password in a file"):
        _connection_params("mysql://u:pw@db/qpu")
    with pytest.raises(DatabaseError, match=r"unknown parameter\(s\) ssl \(known: "):
        _connection_params("mysql://u@db/qpu?ssl=1")
    with pytest.raises(DatabaseError, match="expected mysql://USER@HOST"):
        _connection_params("mysql://u@db/")
    with pytest.raises(DatabaseError, match="cannot read the password file"):
        _connection_params(f"mysql://u@db/qpu?password_file={tmp_path}/none")


def test_a_broker_keeps_its_leases_in_mariadb_across_a_restart(
        mariadb_server: MariaDBServer, start_broker: StartBroker, tmp_path: Path) -> None:
    url = mariadb_server.create_database("broker")
    ledger = tmp_path / "ledger.jsonl"
    first = start_broker(sim_resources(ledger), journal=url)  # type: ignore[arg-type]
    acquired = first.acquire(7, "sim_a")
    assert acquired["state"] == "acquired"
    first.broker.stop()
    first.service.journal.close()
    again = start_broker(sim_resources(ledger), journal=url)  # type: ignore[arg-type]
    again.jobs.ids.add(7)
    assert [lease["job_id"] for lease in again.node().leases()] == [7]
    assert again.node().release(7)["state"] == "released"
    assert [event for event, _, _ in read_ledger(ledger)] == ["acquire", "release"]


def test_a_prolog_that_meets_the_database_down_is_told_to_retry_and_gets_its_lease_after(
        mariadb_server: MariaDBServer, start_broker: StartBroker, tmp_path: Path) -> None:
    import threading

    b = start_broker(sim_resources(tmp_path / "ledger.jsonl"),
                     journal=mariadb_server.create_database("away"))  # type: ignore[arg-type]
    b.jobs.ids.add(9)
    mariadb_server.stop(remove=False)
    try:
        raw = BrokerClient(b.url, deadline=0.5, encode=lambda p: fake_credential(p, 0))
        with pytest.raises(BrokerError, match=r"HTTP 503"):  # retried, then given up
            raw.acquire(9, qpus="sim_a", user="alice", uid=1000)
        prolog = BrokerClient(b.url, deadline=60, encode=lambda p: fake_credential(p, 0))
        answers: list[dict[str, object]] = []
        thread = threading.Thread(target=lambda: answers.append(
            prolog.acquire(9, qpus="sim_a", user="alice", uid=1000)))
        thread.start()
    finally:
        mariadb_server.resume()  # the database is back while the prolog still waits
    thread.join(60)
    assert answers and answers[0]["state"] == "acquired"
    lease = b.service.journal.current(9)
    assert lease is not None and lease.state is State.ACQUIRED


# ------------------------------------------------------ several brokers on one database
def test_the_prologs_of_one_job_reaching_two_brokers_at_once_make_one_acquisition(
        mariadb_server: MariaDBServer, start_broker: StartBroker, tmp_path: Path) -> None:
    import threading

    url = mariadb_server.create_database("two_brokers")
    ledger = tmp_path / "ledger.jsonl"
    resources = sim_resources(ledger, sim_a={"ACQUIRE_DELAY": "0.5"})
    brokers = [start_broker(resources, journal=url),  # type: ignore[arg-type]
               start_broker(resources, journal=url)]  # type: ignore[arg-type]
    for b in brokers:
        b.jobs.ids.add(11)
    answers: list[dict[str, object]] = []

    def prolog(k: int) -> None:  # a four-node job: two nodes' prologs reach each broker
        b = brokers[k % 2]
        client = BrokerClient(b.url, deadline=30, encode=lambda p: fake_credential(p, 0))
        answers.append(client.acquire(11, qpus="sim_a", user="alice", uid=1000))

    threads = [threading.Thread(target=prolog, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 4 and {a["state"] for a in answers} == {"acquired"}
    tokens = {json.dumps(a["env"], sort_keys=True) for a in answers}
    assert len(tokens) == 1  # one lease, the same environment on every node
    assert [event for event, _, _ in read_ledger(ledger)] == ["acquire"]  # one session
    # a job's token is good at either broker: they derive it from one key
    lease = brokers[0].service.journal.current(11)
    assert lease is not None
    assert brokers[0].service.job_token(lease) == brokers[1].service.job_token(lease)
    # the epilogs, too, reach both: one release
    for k in range(4):
        assert brokers[k % 2].node().release(11)["state"] == "released"
    assert [event for event, _, _ in read_ledger(ledger)] == ["acquire", "release"]


def test_one_broker_at_a_time_runs_the_reaper_and_another_takes_over_when_it_goes(
        mariadb_server: MariaDBServer) -> None:
    url = mariadb_server.create_database("leaders")
    first, second = Journal(url), Journal(url)
    assert first.signing_key() == second.signing_key()
    assert first.leads("reaper") and first.leads("reaper")  # taken, then kept
    assert not second.leads("reaper")
    assert second.leads("availability")  # roles are apart
    assert not first.leads("availability")
    first.close()  # the broker goes (a SIGKILL closes its connections the same way)
    assert second.leads("reaper")
    second.close()


def test_an_acquisition_another_broker_undid_meanwhile_is_given_back_and_asked_again(
        tmp_path: Path) -> None:
    # the database dropped this broker's lock while it asked the vendor, and a prolog of
    # the same job at another broker undid the half-made lease: this broker must not write
    # it back as acquired (a second session nobody would ever release)
    import threading

    from harness import lease_service

    from slurm_qpu.broker.service import AcquireRequest

    ledger = tmp_path / "ledger.jsonl"
    service = lease_service(tmp_path, sim_resources(ledger, sim_a={"ACQUIRE_DELAY": "0.6"}))
    outcome: list[BaseException | object] = []

    def prolog() -> None:
        try:
            outcome.append(service.acquire(AcquireRequest(12, user="alice", uid=1000,
                                                          qpus="sim_a", time_limit=60)))
        except JournalError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=prolog)
    thread.start()
    other = Journal(tmp_path / "journal.sqlite")  # the other broker's view of the journal

    def half_made() -> bool:
        lease = other.current(12)
        return lease is not None and lease.state is State.ACQUIRING

    deadline = time.monotonic() + 10
    while not half_made() and time.monotonic() < deadline:
        time.sleep(0.02)
    lease = other.current(12)
    assert lease is not None
    assert other.set_state(lease, State.RELEASED, expect=State.ACQUIRING)  # its undo
    thread.join(10)
    assert isinstance(outcome[0], JournalError)
    assert "taken over by another broker; ask again" in str(outcome[0])
    assert [event for event, _, _ in read_ledger(ledger)] == ["acquire", "release"]
    got = other.current(12)
    assert got is not None and got.state is State.RELEASED  # not written back as acquired
    other.close()


def test_lock_names_stay_apart_however_long_the_database_name(
        mariadb_server: MariaDBServer) -> None:
    name = "a_database_name_long_enough_to_push_lock_names_past"  # 51: names > 64
    first = Journal(mariadb_server.create_database(name))
    second = Journal(mariadb_server.url(name))
    assert first.leads("reaper") and second.leads("availability")  # two roles, two locks
    assert not second.leads("reaper") and not first.leads("availability")
    first.close()
    second.close()


def test_a_password_in_the_url_is_never_repeated(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as raised:
        _connection_params("mysql://u:s3cret@db/")
    assert "s3cret" not in str(raised.value)


def v1_journal(mariadb_server: MariaDBServer, name: str) -> str:
    """A MariaDB journal of schema version 1 holding job 9's lease of sim_a, with one
    vendor job."""
    url = mariadb_server.create_database(name)

    def execute(sql: str) -> object:
        return mariadb_server.sql(sql, name)

    make_v1(execute)
    execute("INSERT INTO leases VALUES (9, 1, 'acquired', 'alice', 1000, '[\"sim_a\"]', "
            "'{}', NULL, 's', 1000.0, 5000.0, NULL, '[]')")
    execute("INSERT INTO held (job_id, gen, name, type, token, acquired_at) VALUES "
            "(9, 1, 'sim_a', 'local-simulator', 'tok-a', 1001.0)")
    execute("INSERT INTO vendor_jobs VALUES (9, 1, 'sim_a', 'vj-1', 1002.0)")
    return url


def test_a_version_1_mariadb_journal_is_migrated_and_keeps_its_lease(
        mariadb_server: MariaDBServer) -> None:
    journal = Journal(v1_journal(mariadb_server, "journal_v1_one"))
    assert journal._meta("schema_version") == str(SCHEMA_VERSION)
    [lease] = journal.active()
    held = lease.holds("sim_a")
    assert held is not None and (lease.job_id, lease.state, held.token) == (
        9, State.ACQUIRED, "tok-a")
    assert (lease.request, lease.selected) == (None, {})
    assert journal.owns_vendor_job(lease, "sim_a", "vj-1")
    journal.add_vendor_job(lease, "sim_a", "vj-2", shots=100)
    journal.set_vendor_job_usage(lease, "sim_a", "vj-2", qpu_seconds=1.5)
    [usage] = journal.usage(lease)
    assert (usage.vendor_jobs, usage.shots, usage.qpu_seconds) == (2, 100, 1.5)
    journal.close()


def test_brokers_upgraded_at_once_migrate_the_journal_once_between_them(
        mariadb_server: MariaDBServer) -> None:
    url = v1_journal(mariadb_server, "journal_v1_many")
    opened: list[Journal] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Journal(url))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(opened) == 4
    for journal in opened:
        assert journal._meta("schema_version") == str(SCHEMA_VERSION)
        assert [lease.job_id for lease in journal.active()] == [9]
        journal.close()


def test_a_migration_a_broker_left_half_way_is_finished_by_the_next(
        mariadb_server: MariaDBServer) -> None:
    url = v1_journal(mariadb_server, "journal_v1_half")
    # a broker stopped after adding the first column of step 2 (MariaDB's ALTER commits)
    mariadb_server.sql("ALTER TABLE vendor_jobs ADD COLUMN shots BIGINT", "journal_v1_half")
    journal = Journal(url)
    assert journal._meta("schema_version") == str(SCHEMA_VERSION)
    assert [lease.job_id for lease in journal.active()] == [9]
    journal.close()
