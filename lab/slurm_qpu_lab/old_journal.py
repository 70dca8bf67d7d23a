"""The broker's journal as a slurm-qpu of schema version 1 left it in MariaDB, for the
tests that upgrade one: a broker started on it must migrate it (several at once too) and
keep every lease. The tables are version 1's columns in the MariaDB types the current
schema uses; the rows are each test's own."""

from __future__ import annotations

from collections.abc import Callable

_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

MARIADB_V1 = (
    f"CREATE TABLE meta (`key` VARCHAR(64) NOT NULL PRIMARY KEY, value TEXT NOT NULL) {_TABLE}",
    f"""CREATE TABLE leases (
        job_id BIGINT NOT NULL, gen INT NOT NULL, state VARCHAR(16) NOT NULL,
        user VARCHAR(255), uid BIGINT, names TEXT NOT NULL, overrides TEXT NOT NULL,
        error TEXT, salt VARCHAR(64) NOT NULL, created_at DOUBLE NOT NULL,
        expires_at DOUBLE, released_at DOUBLE, release_errors TEXT NOT NULL,
        PRIMARY KEY (job_id, gen), KEY leases_state (state)) {_TABLE}""",
    f"""CREATE TABLE held (
        job_id BIGINT NOT NULL, gen INT NOT NULL, name VARCHAR(255) NOT NULL,
        type VARCHAR(64) NOT NULL, token TEXT NOT NULL, acquired_at DOUBLE NOT NULL,
        released_at DOUBLE, error TEXT, seq BIGINT NOT NULL AUTO_INCREMENT,
        PRIMARY KEY (job_id, gen, name), UNIQUE KEY held_seq (seq)) {_TABLE}""",
    f"""CREATE TABLE vendor_jobs (
        job_id BIGINT NOT NULL, gen INT NOT NULL, name VARCHAR(255) NOT NULL,
        vendor_job_id VARCHAR(255) NOT NULL, created_at DOUBLE NOT NULL,
        PRIMARY KEY (name, vendor_job_id), KEY vendor_jobs_job (job_id, gen)) {_TABLE}""",
    "INSERT INTO meta VALUES ('schema_version', '1')",
)
TABLES = ("meta", "leases", "held", "vendor_jobs")


def make_v1(execute: Callable[[str], object]) -> None:
    """Replace the journal's tables by version 1's, empty but for its version
    (``execute``: runs one statement on the journal's database)."""
    for table in TABLES:
        execute(f"DROP TABLE IF EXISTS {table}")
    for statement in MARIADB_V1:
        execute(statement)
