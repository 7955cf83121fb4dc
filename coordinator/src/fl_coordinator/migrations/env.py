"""Alembic environment: migrates the connection that fl_coordinator.migrations hands over."""

from __future__ import annotations

from alembic import context

from fl_coordinator.registry_schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run registry migrations through fl_coordinator.migrations (python -m "
        "fl_coordinator.migrations --help): it opens the database and passes the connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them; a revision that needs it must say so explicitly.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
