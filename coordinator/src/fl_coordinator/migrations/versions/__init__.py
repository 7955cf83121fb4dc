"""Alembic revisions of the registry, oldest first (Alembic skips this file)."""
