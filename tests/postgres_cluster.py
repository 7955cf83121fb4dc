"""A private, throw-away PostgreSQL cluster from Debian's ``postgresql`` package.

``private_postgres()`` runs initdb into a temporary directory, ``pg_ctl start`` on 127.0.0.1
and a free port (sockets in that directory), and stops the postmaster by PID when the block
ends, also on errors. Root cannot run PostgreSQL, so as root it runs as the ``postgres``
system user. Used by the registry contract tests and by ``bench/heartbeat_ingest.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

PG_ROOT = Path("/usr/lib/postgresql")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here."""


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: str

    def url(self, database: str) -> str:
        """SQLAlchemy URL of one database on this server."""
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        url = make_url(self.admin_url)
        return psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
        )

    def create_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _bindir() -> Path:
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0),
    )
    if not versions:
        raise PostgresUnavailable(
            f"no PostgreSQL server under {PG_ROOT}: install Debian's postgresql package "
            "(`apt-get install postgresql`; .ci/run does) or set FL_TEST_POSTGRES_URL"
        )
    return versions[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(pid: int) -> None:
    """Fast shutdown of the postmaster, then SIGKILL if it does not go within 20 s."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@contextmanager
def private_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a private cluster; ``durable`` keeps fsync and synchronous commits (benchmarks)."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="fl-pg-"))
    data, logfile = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run(
            _as_postgres([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = [str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data)]
        started = subprocess.run(
            _as_postgres([*pg_ctl, "-l", str(logfile), "-o", options]),
            capture_output=True,
            text=True,
            timeout=90,
        )
        if started.returncode != 0:
            log = logfile.read_text() if logfile.exists() else ""
            raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr.strip()}\n{log}")
        yield PostgresServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    finally:
        pidfile = data / "postmaster.pid"
        if pidfile.exists():
            _stop(int(pidfile.read_text().split()[0]))
        shutil.rmtree(root, ignore_errors=True)
