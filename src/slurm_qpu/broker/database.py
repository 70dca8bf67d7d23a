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

Several brokers on one database coordinate through it: ``named_lock`` holds one of the
server's named locks (GET_LOCK) on a connection of its own for as long as a job's
acquisition or release runs, so the prologs of one job reaching two brokers at once make
one acquisition; ``leads`` keeps a named lock for as long as this broker runs the reaper
or the availability watcher, so one broker at a time does. The server frees a lock the
moment its connection ends: a broker that dies (SIGKILL, a lost host) leaves no lock
behind, and another broker takes over its role at its next try. On SQLite both are
trivially this process's (one broker per file).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import ssl
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

URL_SCHEMES = ("mysql://", "mariadb://")
# PyMySQL's codes for a connection that was gone before the statement went out (server
# gone away, cannot connect, PyMySQL found it closed): retrying cannot run it twice. A
# connection lost during a statement (2013) may have run it: only reads are retried then.
GONE_BEFORE = {2006, 2003, 2055, 0}
LOST_DURING = 2013
DUPLICATE_COLUMN = 1060  # ALTER TABLE ... ADD COLUMN of a column already there
# lock connections: at most this many jobs' locks held or awaited at once per broker, all
# kept open for the next ones (a new connection costs the server a login and PyMySQL a TLS
# set-up: with 100 prologs at once, opening them was most of the broker's CPU,
# BENCHMARKS.md item 7). MariaDB's default max_connections is 151 and slurmdbd uses the
# same server: three brokers hold about 105.
JOB_LOCKS = 24
IDLE_LOCK_CONNECTIONS = JOB_LOCKS
# journal connections: the broker's threads read and write the journal on up to this many
# at once (one each, for as long as a journal call or transaction lasts), so that one
# thread's round trip or commit does not hold up the others and the server can commit
# them together; with JOB_LOCKS and the leaders' two, three brokers hold about 105
JOURNAL_CONNECTIONS = 8
# a lock connection idle this long is closed by the server, freeing its lock: what a
# broker on a host that was lost (no FIN) holds comes free in minutes, not hours
LOCK_IDLE_SECONDS = 300


class DatabaseError(Exception):
    """The journal's database cannot be reached or used; the text says which and why."""


def is_url(where: str) -> bool:
    return where.startswith(URL_SCHEMES)


class Sqlite:
    """A SQLite file: the connection the journal shares between its threads, one thread
    at a time (``exclusive``)."""

    kind = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: str) -> None:
        self.where = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self._exclusive = threading.RLock()

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """What a thread holds while it uses the database (re-entrant): the one
        connection, to itself."""
        return self._exclusive

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

    @contextlib.contextmanager
    def named_lock(self, name: str, timeout: float, pooled: bool = True) -> Iterator[None]:
        yield  # one broker per file: its own locks already order its threads

    def leads(self, role: str) -> bool:
        return True


class MariaDB:
    """A MariaDB (or MySQL) database, through PyMySQL, in autocommit mode except inside
    ``begin``/``commit``. Each thread uses a connection of its own while it holds
    ``exclusive()`` (at most JOURNAL_CONNECTIONS at once, kept open for the next ones): the
    database, not this process, orders what they do."""

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
        self._sql: dict[str, str] = {}
        # TLS to the server, as PyMySQL's default ("preferred": used when the server
        # offers it) decided once, by the first connection: the later ones reuse its
        # context (making one loads the system's CA store, ~15 ms of CPU) or go without.
        # Not over a local socket, where it protects nothing.
        self._tls: Any = False if "unix_socket" in self._params else None
        self._local = threading.local()  # the thread's connection, depth, transaction
        self._slots = threading.BoundedSemaphore(JOURNAL_CONNECTIONS)
        self._idle_conns: list[Any] = [self._connect()]  # (reachable, or an error now)
        self._closed = False
        # connections that hold (or held) named locks, one per lock while it is held
        self._idle_lock_conns: list[Any] = []
        self._own: dict[str, Any] = {}  # unpooled lock name -> its connection
        self._leaders: dict[str, Any] = {}  # role -> the connection that holds its lock
        self._guard = threading.Lock()
        self._job_slots = threading.BoundedSemaphore(JOB_LOCKS)

    def _connect(self, read_timeout: float = 60, idle: float | None = None) -> Any:
        """A new connection; ``idle``: the server closes it after that long unused."""
        from pymysql.constants import CLIENT

        tls = {} if self._tls is None else \
            {"ssl_disabled": True} if self._tls is False else {"ssl": self._tls}
        try:
            conn = self._pymysql.connect(**self._params, **tls, autocommit=True,
                                         charset="utf8mb4", connect_timeout=10,
                                         read_timeout=read_timeout, write_timeout=60,
                                         client_flag=CLIENT.FOUND_ROWS)
            if self._tls is None:  # the first: did the server take TLS?
                taken = isinstance(getattr(conn, "_sock", None), ssl.SSLSocket)
                self._tls = getattr(conn, "ctx", None) if taken else False
                logging.getLogger("slurm_qpu.broker").info(
                    "journal database %s: %s until the broker restarts", self.where,
                    "over TLS (the server offers it)" if taken else
                    "without TLS (the server offers none)")
            if idle is not None:
                with conn.cursor() as cursor:
                    cursor.execute("SET SESSION wait_timeout=%s", (int(idle),))
            return conn
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

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A connection of this thread's own for the block (re-entrant: the outermost
        block takes it and gives it back), waiting for one of JOURNAL_CONNECTIONS."""
        local = self._local
        if getattr(local, "depth", 0):
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
            return
        if not self._slots.acquire(timeout=60):
            raise DatabaseError(f"no connection to the journal database {self.where} came "
                                f"free in 60 s ({JOURNAL_CONNECTIONS} are in use)")
        try:
            with self._guard:
                local.conn = self._idle_conns.pop() if self._idle_conns else None
            local.depth, local.in_tx = 1, False
            try:
                yield
            finally:
                conn, local.conn, local.depth = local.conn, None, 0
                if local.in_tx and conn is not None:  # an error left a transaction open
                    with contextlib.suppress(self._pymysql.err.Error):
                        conn.close()
                    conn = None
                if conn is not None:
                    with self._guard:
                        if not self._closed:
                            self._idle_conns.append(conn)
                            conn = None
                    if conn is not None:
                        with contextlib.suppress(self._pymysql.err.Error):
                            conn.close()
        finally:
            self._slots.release()

    @property
    def conn(self) -> Any:
        """This thread's connection (opened on its first statement)."""
        local = self._local
        if not getattr(local, "depth", 0):
            raise AssertionError("a journal statement outside MariaDB.exclusive()")
        if local.conn is None:
            local.conn = self._connect()
        return local.conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not getattr(self._local, "depth", 0):
            with self.exclusive():
                return self.execute(sql, params)
        query = self._translate(sql)
        in_tx = self._local.in_tx
        try:
            cursor = self.conn.cursor()
            cursor.execute(query, tuple(params))
            return cursor
        except self._pymysql.err.OperationalError as exc:
            read = query.lstrip()[:6].upper() == "SELECT"
            if in_tx or not (exc.args[0] in GONE_BEFORE
                             or (exc.args[0] == LOST_DURING and read)):
                raise
        except self._pymysql.err.InterfaceError:  # PyMySQL found the connection closed
            if in_tx:
                raise
        with contextlib.suppress(self._pymysql.err.Error):
            self._local.conn.close()
        # once: a server that restarted, an idle timeout
        self._local.conn = self._connect()
        cursor = self._local.conn.cursor()
        cursor.execute(query, tuple(params))
        return cursor

    def script(self, statements: Iterable[str]) -> None:
        with self.exclusive():
            for statement in statements:
                self.execute(statement)

    def begin(self) -> None:
        self.execute("START TRANSACTION")
        self._local.in_tx = True

    def commit(self) -> None:
        self._local.in_tx = False
        self.conn.commit()

    def rollback(self) -> None:
        self._local.in_tx = False
        self.conn.rollback()

    def close(self) -> None:
        with self._guard:
            self._closed = True
            others = [*self._idle_conns, *self._idle_lock_conns, *self._own.values(),
                      *self._leaders.values()]
            self._idle_conns, self._idle_lock_conns, self._own, self._leaders = [], [], {}, {}
        for conn in others:
            with contextlib.suppress(self._pymysql.err.Error):  # already gone
                conn.close()

    def _lock_name(self, name: str) -> str:
        """Named locks are the server's, not a database's: the database names them (a
        digest when that is longer than the server's 64 characters)."""
        full = f"slurm-qpu:{self._params['database']}:{name}"
        if len(full) > 64:
            full = "slurm-qpu:" + hashlib.sha256(full.encode()).hexdigest()[:48]
        return full

    @staticmethod
    def _one(conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return row[0] if row else None

    @contextlib.contextmanager
    def named_lock(self, name: str, timeout: float, pooled: bool = True) -> Iterator[None]:
        """Hold the server's lock ``name`` for the block, waiting up to ``timeout`` s for a
        broker that holds it (DatabaseError past that, or when the server is away).
        ``pooled``: a job's lock, on one of at most JOB_LOCKS connections; otherwise a
        lock the caller takes one thread at a time, on a connection of its own (so that
        a thread holding a job's lock never waits for a pooled connection for it)."""
        if pooled and not self._job_slots.acquire(timeout=timeout):
            raise DatabaseError(f"{JOB_LOCKS} jobs' locks are held or awaited in the "
                                f"journal database {self.where}; {name!r} waited {timeout:g} s")
        try:
            conn = self._take_lock_connection(name, pooled, timeout)
            try:
                yield
            finally:
                self._give_back(name, pooled, conn)
        finally:
            if pooled:
                self._job_slots.release()

    def _take_lock_connection(self, name: str, pooled: bool, timeout: float) -> Any:
        full = self._lock_name(name)
        for attempt in (1, 2):  # a kept connection the server closed: once on a new one
            with self._guard:
                if pooled:
                    conn = self._idle_lock_conns.pop() if self._idle_lock_conns else None
                else:
                    conn = self._own.pop(name, None)
            kept = conn is not None
            try:
                # the wait for the lock is a query: its read timeout must outlast it
                conn = conn or self._connect(read_timeout=timeout + 30,
                                             idle=LOCK_IDLE_SECONDS)
                got = self._one(conn, "SELECT GET_LOCK(%s, %s)", (full, timeout))
            except (self._pymysql.err.Error, DatabaseError) as exc:
                if conn is not None:
                    with contextlib.suppress(self._pymysql.err.Error):
                        conn.close()
                if kept and attempt == 1:
                    continue  # an idle connection held no lock: safe to ask again
                reason = str(exc) if isinstance(exc, DatabaseError) else _reason(exc)
                raise DatabaseError(f"cannot take the lock {name!r} in the journal "
                                    f"database {self.where}: {reason}") from None
            if got != 1:
                self._keep(name, pooled, conn)
                raise DatabaseError(f"another broker has held the lock {name!r} in the "
                                    f"journal database {self.where} for over {timeout:g} s")
            return conn
        raise AssertionError("unreachable")

    def _give_back(self, name: str, pooled: bool, conn: Any) -> None:
        try:
            released = self._one(conn, "SELECT RELEASE_LOCK(%s)", (self._lock_name(name),))
        except self._pymysql.err.Error:
            released = None
        if released != 1:  # the connection (and with it the lock) was lost meanwhile
            with contextlib.suppress(self._pymysql.err.Error):
                conn.close()
            return
        self._keep(name, pooled, conn)

    def _keep(self, name: str, pooled: bool, conn: Any) -> None:
        with self._guard:
            if not pooled and name not in self._own:
                self._own[name] = conn
                return
            if pooled and len(self._idle_lock_conns) < IDLE_LOCK_CONNECTIONS:
                self._idle_lock_conns.append(conn)
                return
        with contextlib.suppress(self._pymysql.err.Error):
            conn.close()

    def leads(self, role: str) -> bool:
        """Whether this broker holds ``role`` (taking it if no broker does)."""
        full = self._lock_name(f"leader:{role}")
        with self._guard:
            conn = self._leaders.pop(role, None)
        try:
            if conn is not None and self._one(
                    conn, "SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (full,)) == 1:
                with self._guard:
                    self._leaders[role] = conn
                return True
            conn = conn or self._connect(idle=LOCK_IDLE_SECONDS)
            if self._one(conn, "SELECT GET_LOCK(%s, 0)", (full,)) == 1:
                with self._guard:
                    self._leaders[role] = conn
                return True
        except (self._pymysql.err.Error, DatabaseError):
            pass  # the server is away: lead nothing until it is back
        if conn is not None:
            with contextlib.suppress(self._pymysql.err.Error):
                conn.close()
        return False


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
    if parts.password is not None:  # first: the URL must never be repeated with it
        raise DatabaseError("journal URL: put the password in a file and name it with "
                            "?password_file=PATH (a URL on the command line is visible "
                            "to every user of the host)")
    if not database or "/" in database:
        raise DatabaseError(f"journal URL {url}: expected mysql://USER@HOST[:PORT]/DATABASE")
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
