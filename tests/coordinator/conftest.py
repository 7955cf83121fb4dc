"""Coordinator test fixtures: a fake clock, and registry URLs for SQLite and a real PostgreSQL.

The PostgreSQL server is a private throw-away cluster (``tests.postgres_cluster``) started once
per session and stopped by PID at the end, also when tests fail. Set ``FL_TEST_POSTGRES_URL``
(a server where that user may create databases) to use another server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.postgres_cluster import PostgresServer, PostgresUnavailable, private_postgres

BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for this test session (or FL_TEST_POSTGRES_URL)."""
    external = os.environ.get("FL_TEST_POSTGRES_URL")
    if external:
        yield PostgresServer(external)
        return
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(private_postgres())
        except PostgresUnavailable as exc:
            pytest.fail(str(exc))
        yield server


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry database on each backend: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"fl_test_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock at 2026-01-01 00:00 UTC that only moves when a test says so."""
    return FakeClock()
