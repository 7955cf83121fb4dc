"""Baseline: the registry of release 0.1 (devices, device_status, runs, rounds)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables of release 0.1 that are missing.

    Release 0.1 built its tables with create_all() and kept no revision; creating only what is
    missing lets the upgrade adopt such a database (older 0.1 builds lacked device_status).
    """
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "devices" not in existing:
        op.create_table(
            "devices",
            sa.Column("device_id", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("hostname", sa.String(255), nullable=False),
            sa.Column("platform", sa.String(255), nullable=False),
            sa.Column("agent_version", sa.String(64), nullable=False),
            sa.Column("labels", sa.JSON(), nullable=False),
            sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("supernode_state", sa.String(32), nullable=False),
            sa.Column("supernode_restarts", sa.Integer(), nullable=False),
        )
    if "device_status" not in existing:
        op.create_table(
            "device_status",
            sa.Column(
                "device_id",
                sa.String(64),
                sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("heartbeat", sa.JSON(), nullable=True),
            sa.Column("capabilities", sa.JSON(), nullable=True),
            sa.Column("capabilities_at", sa.DateTime(timezone=True), nullable=True),
        )
    if "runs" not in existing:
        op.create_table(
            "runs",
            sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("flower_run_id", sa.String(24), nullable=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("detail", sa.Text(), nullable=False),
            sa.Column("request", sa.JSON(), nullable=False),
            sa.Column("report_token", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        )
        op.create_index("ix_runs_flower_run_id", "runs", ["flower_run_id"])
        op.create_index("ix_runs_status", "runs", ["status"])
    if "rounds" not in existing:
        op.create_table(
            "rounds",
            sa.Column(
                "run_id",
                sa.Integer(),
                sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("round", sa.Integer(), primary_key=True),
            sa.Column("report", sa.JSON(), nullable=False),
        )


def downgrade() -> None:
    """Drop every table of release 0.1."""
    for table in ("rounds", "runs", "device_status", "devices"):
        op.drop_table(table)
