"""A MariaDB server of the tests' own: Debian's mariadbd with its data directory, socket,
PID file and log under one directory, no TCP, started and stopped by its PID (another
server on the machine, the packaged one or another lab's, is never touched).

The journal's tests run against it the same way as against SQLite; the broker then keeps
its leases in a database of it (``url(database)``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"


class MariaDBError(RuntimeError):
    pass


class MariaDBServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket = root / "mysqld.sock"
        self.log = root / "mariadbd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """The journal URL of ``database`` on this server (as root, over its socket)."""
        return f"mysql://root@localhost/{database}?unix_socket={self.socket}"

    def start(self, timeout: float = 120) -> None:
        if not (Path(MARIADBD).exists() and Path(INSTALL_DB).exists()):
            # Debian's server, not started by its installation: this one is ours
            subprocess.run([str(REPO / "tools" / "install-deps.sh"), "--no-start",
                            "mariadb-server"], check=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.data.mkdir(parents=True)
        init = subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.data}",
                               "--user=root", "--auth-root-authentication-method=normal",
                               "--skip-test-db"], capture_output=True, text=True, check=False)
        if init.returncode != 0:
            raise MariaDBError("mariadb-install-db failed:\n" + init.stdout + init.stderr)
        self._run_server(timeout)

    def sql(self, statement: str, database: str | None = None) -> list[tuple[object, ...]]:
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.socket), user="root", database=database,
                               autocommit=True, connect_timeout=5)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """A new, empty database; its journal URL."""
        self.sql(f"DROP DATABASE IF EXISTS `{name}`")
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name)

    def restart(self) -> None:
        """Stop and start the server on the same data (what a site's restart does)."""
        self.stop(remove=False)
        self.resume()

    def resume(self) -> None:
        """Start the server again on its data, after ``stop(remove=False)``."""
        self._run_server()

    def _run_server(self, timeout: float = 120) -> None:
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
             f"--pid-file={self.root / 'mariadbd.pid'}", f"--log-error={self.log}",
             "--skip-networking", "--user=root", "--innodb-buffer-pool-size=64M",
             "--max-connections=200"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MariaDBError(f"mariadbd exited ({self.proc.returncode}):\n"
                                   + self.log_tail())
            if self.socket.exists():
                with contextlib.suppress(Exception):  # starting up: not answering yet
                    self.sql("SELECT 1")
                    return
            time.sleep(0.2)
        self.stop(remove=False)
        raise MariaDBError(f"mariadbd did not answer within {timeout:.0f} s:\n"
                           + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, remove: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
