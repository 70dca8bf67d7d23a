"""The database under the broker's journal: a SQLite file (the default, for one broker)
or a MariaDB/MySQL database (the one slurmdbd needs, which a site already runs and keeps
available), behind one small connection object, so that broker/journal.py writes its SQL
and its logic once.

The journal's SQL is SQLite's; the MariaDB connection translates the few words that
differ (``?`` placeholders, ``INSERT OR REPLACE``/``OR IGNORE``, ``rowid``) and each
backend has its own table definitions (journal.py). Where the journal is:

    /var/lib/slurm-qpu-broker/journal.sqlite           a SQLite file
    mysql://USER@HOST[:PORT]/DATABASE                  MariaDB or MySQL (mariadb:// too)
        ?password_file=PATH                            the password, from a file only the
                                                       broker's user reads (never the URL)
        &unix_socket=PATH                              a local server's socket, instead of TCP

MariaDB is reached with PyMySQL (pure Python), imported only when a URL names it. A
connection lost between two statements (a server restart, an idle timeout) is opened again
and the statement retried once, outside transactions; inside one, the error ends it and
nothing of it is kept.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

URL_SCHEMES = ("mysql://", "mariadb://")
# PyMySQL's codes for a connection that is gone: server gone away, lost during a query,
# cannot connect, and a connection PyMySQL itself found closed
LOST = {2006, 2013, 2003, 2055, 0}


class DatabaseError(Exception):
    """The journal's database cannot be reached or used; the text says which and why."""


def is_url(where: str) -> bool:
    return where.startswith(URL_SCHEMES)


class Sqlite:
    """A SQLite file: the connection the journal shares between its threads (under its
    own lock)."""

    kind = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: str) -> None:
        self.where = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                    check_same_thread=False)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params)

    def script(self, statements: Iterable[str]) -> None:
        self.conn.executescript(";\n".join(statements) + ";")

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class MariaDB:
    """A MariaDB (or MySQL) database, through PyMySQL, in autocommit mode except inside
    ``begin``/``commit``."""

    kind = "mariadb"

    def __init__(self, url: str) -> None:
        try:
            import pymysql
        except ImportError:
            raise DatabaseError("a MariaDB journal needs PyMySQL in the broker's venv "
                                "(pip install PyMySQL)") from None
        self._pymysql = pymysql
        self.errors: tuple[type[Exception], ...] = (pymysql.err.Error,)
        self.where, self._params = _connection_params(url)
        self._in_tx = False
        self._sql: dict[str, str] = {}
        self.conn = self._connect()

    def _connect(self) -> Any:
        try:
            return self._pymysql.connect(**self._params, autocommit=True, charset="utf8mb4",
                                         connect_timeout=10, read_timeout=60,
                                         write_timeout=60)
        except self._pymysql.err.Error as exc:
            raise DatabaseError(f"cannot connect to the journal database {self.where}: "
                                f"{_reason(exc)}") from None

    def _translate(self, sql: str) -> str:
        done = self._sql.get(sql)
        if done is None:
            done = self._sql[sql] = (
                sql.replace("%", "%%").replace("?", "%s")
                .replace("INSERT OR REPLACE", "REPLACE").replace("INSERT OR IGNORE",
                                                                 "INSERT IGNORE")
                .replace("ORDER BY rowid", "ORDER BY seq"))
        return done

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        query = self._translate(sql)
        try:
            cursor = self.conn.cursor()
            cursor.execute(query, tuple(params))
            return cursor
        except self._pymysql.err.OperationalError as exc:
            if self._in_tx or exc.args[0] not in LOST:
                raise
        except self._pymysql.err.InterfaceError:  # PyMySQL found the connection closed
            if self._in_tx:
                raise
        self.conn = self._connect()  # once: a server that restarted, an idle timeout
        cursor = self.conn.cursor()
        cursor.execute(query, tuple(params))
        return cursor

    def script(self, statements: Iterable[str]) -> None:
        for statement in statements:
            self.execute(statement)

    def begin(self) -> None:
        self.execute("START TRANSACTION")
        self._in_tx = True

    def commit(self) -> None:
        self._in_tx = False
        self.conn.commit()

    def rollback(self) -> None:
        self._in_tx = False
        self.conn.rollback()

    def close(self) -> None:
        with contextlib.suppress(self._pymysql.err.Error):  # already gone
            self.conn.close()


def _reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(exc.args)
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def _connection_params(url: str) -> tuple[str, dict[str, Any]]:
    """(the URL without secrets, for messages; PyMySQL's connect arguments)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise DatabaseError(f"journal URL {url}: expected mysql://USER@HOST[:PORT]/DATABASE")
    if parts.password is not None:
        raise DatabaseError("journal URL: put the password in a file and name it with "
                            "?password_file=PATH (a URL on the command line is visible "
                            "to every user of the host)")
    params: dict[str, Any] = {"user": unquote(parts.username or "slurm-qpu"),
                              "database": database}
    password_file = query.pop("password_file", None)
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                params["password"] = f.read().strip()
        except OSError as exc:
            raise DatabaseError(f"journal URL: cannot read the password file "
                                f"{password_file}: {exc.strerror}") from None
    socket_path = query.pop("unix_socket", None)
    if socket_path:
        params["unix_socket"] = socket_path
    else:
        params["host"] = parts.hostname or "localhost"
        params["port"] = parts.port or 3306
    if query:
        raise DatabaseError(f"journal URL: unknown parameter(s) {', '.join(sorted(query))} "
                            "(known: password_file, unix_socket)")
    shown = f"{parts.scheme}://{params['user']}@" + (
        f"{params['host']}:{params['port']}" if "host" in params else
        f"localhost(socket {socket_path})") + f"/{database}"
    return shown, params


def open_database(where: str) -> Sqlite | MariaDB:
    """The database at ``where`` (a path, or a mysql:// URL)."""
    return MariaDB(where) if is_url(where) else Sqlite(where)
