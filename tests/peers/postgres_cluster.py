"""A PostgreSQL cluster of a test's own, which the test may stop and restart at will.

The shared cluster on port 5432 serves every other test and is never taken down. A test that
needs the store to go away starts a `PostgresCluster` instead:

- `initdb` (of the newest version under /usr/lib/postgresql) makes a cluster in a fresh
  temporary directory: superuser `postgres`, trust authentication, encoding UTF8;
- `start()` runs the `postgres` server itself (no pg_ctl, so the process is ours and its PID
  known) on a free port on 127.0.0.1, with its unix socket in the same directory, and waits
  until `pg_isready` says it accepts connections;
- `stop()` sends that PID SIGINT, PostgreSQL's "fast" shutdown: open sessions are cut, a
  checkpoint is written, nothing committed is lost; `restart(down_s)` stops, waits, starts
  again on the same port and directory.

PostgreSQL refuses to run as root. When the tests run as root (as they do here), initdb and
the server run as the `postgres` system user (subprocess's `user=`/`group=`), and the
temporary directory is handed to that user; otherwise they run as the current user.

    with PostgresCluster() as cluster:
        cluster.create_database("siem")
        engine = make_engine(cluster.url("siem"))
        cluster.restart(down_s=3)
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["PostgresCluster", "newest_bin_dir"]

POSTGRESQL_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # who runs initdb and the server when the tests run as root


def newest_bin_dir(root: Path = POSTGRESQL_ROOT) -> Path:
    """The `bin` directory of the newest PostgreSQL installed under `root` (e.g. .../16/bin)."""
    found = [server.parent for server in root.glob("*/bin/postgres")]
    if not found:
        raise RuntimeError(f"no PostgreSQL server under {root}/*/bin")
    return max(found, key=lambda bin_dir: [int(part) for part in bin_dir.parent.name.split(".")])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """One throw-away PostgreSQL cluster: made on first `start()`, removed by `close()`."""

    def __init__(
        self, *, bin_dir: Path | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        """`settings` are server settings (`-c name=value`) over the cluster's own, e.g.
        `{"fsync": "on", "shared_buffers": "1GB"}` for a server sized and as durable as a
        deployment's."""
        self.bin_dir = bin_dir or newest_bin_dir()
        self.settings = {"fsync": "off", **(settings or {})}  # fsync off: a throw-away cluster
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="xavyo-siem-pg-"))
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._server: subprocess.Popen[bytes] | None = None
        self._as_server_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._as_server_user = {
                "user": account.pw_uid,
                "group": account.pw_gid,
                "extra_groups": [],
            }

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        server = self._server
        return server.pid if server is not None and server.poll() is None else None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this cluster (TCP, user postgres)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the server (making the cluster first if needed); return once it accepts."""
        if self.running:
            return
        if not self.data_dir.exists():
            self._initdb()
        command = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.directory}",
        ]  # fmt: skip
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self._server = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                **self._as_server_user,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self._accepts_connections():
            if not self.running:
                raise RuntimeError(f"postgres exited at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:  # a start-up guard, not a speed check
                raise RuntimeError(f"postgres not ready within {timeout_s} s:\n{self._log_tail()}")
            time.sleep(0.05)

    def stop(self, *, timeout_s: float = 60.0) -> None:
        """Fast shutdown by the server's PID (SIGINT); SIGQUIT if it does not end in time."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGQUIT)  # immediate shutdown
            server.wait(timeout_s)

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop fast, stay down `down_s` seconds, start again (same port, same data)."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def create_database(self, name: str) -> None:
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def close(self) -> None:
        """Stop the server and remove the cluster's directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _initdb(self) -> None:
        made = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True, cwd=self.directory, check=False, **self._as_server_user,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{made.stdout.decode()}{made.stderr.decode()}")

    def _accepts_connections(self) -> bool:
        ready = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return ready.returncode == 0

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"
