"""Fleet states: drain/revoke, labels and history tables, participation, run options."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Only ADD COLUMN, CREATE TABLE and CREATE INDEX here: on SQLite anything else rebuilds the
# table, and dropping a parent table with foreign keys on would cascade-delete its children.


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the columns and tables, then fill them from what the database already holds."""
    op.add_column("devices", sa.Column("arch", sa.String(64), nullable=False, server_default=""))
    op.add_column(
        "devices", sa.Column("has_gpu", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("devices", sa.Column("drained_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("devices", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "devices", sa.Column("status_reason", sa.Text(), nullable=False, server_default="")
    )
    op.create_index("ix_devices_arch", "devices", ["arch"])
    op.create_index("ix_devices_last_heartbeat_at", "devices", ["last_heartbeat_at"])
    op.create_index("ix_devices_registered_at_device_id", "devices", ["registered_at", "device_id"])
    op.add_column(
        "device_status",
        sa.Column("history_compacted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "device_labels",
        sa.Column(
            "device_id",
            sa.String(64),
            sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_index("ix_device_labels_key_value", "device_labels", ["key", "value"])
    op.create_table(
        "device_heartbeats",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column(
            "device_id",
            sa.String(64),
            sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        sa.Column("max_temp_c", sa.Float(), nullable=True),
        sa.Column("supernode_state", sa.String(32), nullable=False),
        sa.Column("activity", sa.Text(), nullable=False),
    )
    op.create_index("ix_device_heartbeats_device_id_at", "device_heartbeats", ["device_id", "at"])
    op.create_table(
        "round_devices",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("round", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("num_examples", sa.Integer(), nullable=False),
        sa.Column("train_seconds", sa.Float(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=False),
    )
    op.create_index("ix_round_devices_device_id", "round_devices", ["device_id"])
    op.add_column("runs", sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    op.add_column(
        "runs", sa.Column("resumed_from_round", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "runs",
        sa.Column("stop_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "runs", sa.Column("app_source", sa.Text(), nullable=False, server_default="builtin")
    )
    op.add_column(
        "runs",
        sa.Column("target_labels", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column(
        "runs",
        sa.Column("selection_policy", sa.String(64), nullable=False, server_default="fedavg-all"),
    )
    _fill_labels()
    _fill_hardware()
    _fill_participation()


def _fill_labels() -> None:
    devices = sa.table("devices", sa.column("device_id", sa.String), sa.column("labels", sa.JSON))
    rows = op.get_bind().execute(sa.select(devices.c.device_id, devices.c.labels))
    labels = [
        {"device_id": device_id, "key": str(key), "value": str(value)}
        for device_id, values in rows
        for key, value in (values or {}).items()
    ]
    if labels:
        op.bulk_insert(
            sa.table(
                "device_labels",
                sa.column("device_id", sa.String),
                sa.column("key", sa.Text),
                sa.column("value", sa.Text),
            ),
            labels,
        )


def _fill_hardware() -> None:
    bind = op.get_bind()
    status = sa.table(
        "device_status", sa.column("device_id", sa.String), sa.column("capabilities", sa.JSON)
    )
    devices = sa.table(
        "devices",
        sa.column("device_id", sa.String),
        sa.column("arch", sa.String),
        sa.column("has_gpu", sa.Boolean),
    )
    found = bind.execute(
        sa.select(status.c.device_id, status.c.capabilities).where(
            status.c.capabilities.is_not(None)
        )
    ).all()
    for device_id, caps in found:
        if not isinstance(caps, dict):
            continue
        identity: dict[str, Any] = caps.get("identity") or {}
        bind.execute(
            devices.update()
            .where(devices.c.device_id == device_id)
            .values(
                arch=str(identity.get("arch") or "")[:64],
                has_gpu=bool(caps.get("nvidia_gpus")) or caps.get("jetson") is not None,
            )
        )


def _fill_participation() -> None:
    bind = op.get_bind()
    rounds = sa.table(
        "rounds",
        sa.column("run_id", sa.Integer),
        sa.column("round", sa.Integer),
        sa.column("report", sa.JSON),
    )
    rows: dict[tuple[int, int, str], dict[str, Any]] = {}
    for run_id, round_number, report in bind.execute(
        sa.select(rounds.c.run_id, rounds.c.round, rounds.c.report)
    ):
        for device in (report or {}).get("devices") or []:
            if not isinstance(device, dict) or not device.get("device_id"):
                continue
            rows[(run_id, round_number, str(device["device_id"]))] = {
                "run_id": run_id,
                "round": round_number,
                "device_id": str(device["device_id"])[:64],
                "num_examples": int(device.get("num_examples") or 0),
                "train_seconds": float(device.get("train_seconds") or 0.0),
                "train_loss": float(device.get("train_loss") or 0.0),
            }
    if rows:
        op.bulk_insert(
            sa.table(
                "round_devices",
                sa.column("run_id", sa.Integer),
                sa.column("round", sa.Integer),
                sa.column("device_id", sa.String),
                sa.column("num_examples", sa.Integer),
                sa.column("train_seconds", sa.Float),
                sa.column("train_loss", sa.Float),
            ),
            list(rows.values()),
        )


def downgrade() -> None:
    """Drop what upgrade() added (on SQLite, release 0.1 ignores the extra columns)."""
    op.drop_table("round_devices")
    op.drop_table("device_heartbeats")
    op.drop_table("device_labels")
    op.drop_index("ix_devices_registered_at_device_id", "devices")
    op.drop_index("ix_devices_last_heartbeat_at", "devices")
    op.drop_index("ix_devices_arch", "devices")
    if op.get_bind().dialect.name != "sqlite":
        for column in ("arch", "has_gpu", "drained_at", "revoked_at", "status_reason"):
            op.drop_column("devices", column)
        op.drop_column("device_status", "history_compacted_at")
        for column in (
            "attempt",
            "resumed_from_round",
            "stop_requested",
            "app_source",
            "target_labels",
            "selection_policy",
        ):
            op.drop_column("runs", column)
