"""Alembic migrations of the registry, shipped inside the package so an install can migrate."""

from fl_coordinator.migrations.migrator import (
    MigrationOutcome,
    alembic_config,
    head_revision,
    migrate,
)

__all__ = ["MigrationOutcome", "alembic_config", "head_revision", "migrate"]
