"""migrate(): bring a registry database to the newest Alembic revision, adopting old ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from fl_coordinator.errors import RegistryError

log = structlog.get_logger(__name__)

# Serialises coordinators that start together on one PostgreSQL database ("FLRG").
_PG_LOCK_KEY = 0x464C5247


@dataclass(frozen=True)
class MigrationOutcome:
    """What migrate() found and left."""

    before: str | None
    after: str | None
    # True when the tables came from a release before migrations (create_all, no alembic_version).
    adopted: bool


def script_location() -> Path:
    """The directory of env.py and versions/, inside the installed package."""
    return Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration without alembic.ini, bound to ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    # Revision files are importable module names: v0003_add_something.py.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision this release knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrate(engine: Engine) -> MigrationOutcome:
    """Upgrade the database to head in one transaction.

    A database made by a release before migrations has the baseline tables but no
    ``alembic_version``: the baseline revision creates only the tables it lacks, so upgrading
    adopts it without touching its rows.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        adopted = before is None and inspect(conn).has_table("devices")
        if adopted:
            log.info("registry_adopting", database=engine.url.get_backend_name())
        try:
            command.upgrade(alembic_config(conn), "head")
        except CommandError as exc:
            raise RegistryError(
                f"the registry is at schema revision {before!r}, which this fl-coordinator "
                f"does not know ({exc}): it was migrated by a newer release; run that release "
                "or restore a backup of the database"
            ) from exc
        after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("registry_migrated", before=before, after=after, adopted=adopted)
    return MigrationOutcome(before=before, after=after, adopted=adopted)
