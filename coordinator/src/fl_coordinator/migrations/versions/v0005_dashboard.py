"""Dashboard: devices get an indexed training speed and name; selection decisions per round."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Only ADD COLUMN, CREATE TABLE and CREATE INDEX here (see v0002): no table is rebuilt.


def upgrade() -> None:
    """Add the speed column, the sort indexes and the round_selection table, then fill them."""
    # A SQLite registry downgraded from here kept the column: upgrading again reuses it.
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("devices")}
    if "train_samples_per_s" not in columns:
        op.add_column("devices", sa.Column("train_samples_per_s", sa.Float(), nullable=True))
    op.create_index("ix_devices_name_device_id", "devices", ["name", "device_id"])
    op.create_index(
        "ix_devices_train_samples_per_s_device_id",
        "devices",
        ["train_samples_per_s", "device_id"],
    )
    op.create_table(
        "round_selection",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("round", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("predicted_s", sa.Float(), nullable=True),
    )
    op.create_index(
        "ix_round_selection_device_id_run_id_round",
        "round_selection",
        ["device_id", "run_id", "round"],
    )
    _fill_speed()
    _fill_selection()


def _number(value: Any) -> float | None:
    """A finite float, or None (what the columns hold)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fill_speed() -> None:
    bind = op.get_bind()
    status = sa.table(
        "device_status", sa.column("device_id", sa.String), sa.column("capabilities", sa.JSON)
    )
    devices = sa.table(
        "devices", sa.column("device_id", sa.String), sa.column("train_samples_per_s", sa.Float)
    )
    found = bind.execute(
        sa.select(status.c.device_id, status.c.capabilities).where(
            status.c.capabilities.is_not(None)
        )
    ).all()
    for device_id, caps in found:
        speed = (caps.get("speed") or {}) if isinstance(caps, dict) else {}
        value = _number(speed.get("torch_train_samples_per_s")) if isinstance(speed, dict) else None
        if value is not None and value > 0:
            bind.execute(
                devices.update()
                .where(devices.c.device_id == device_id)
                .values(train_samples_per_s=value)
            )


def _fill_selection() -> None:
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
        decisions = (report or {}).get("selection") if isinstance(report, dict) else None
        for decision in decisions or []:
            if not isinstance(decision, dict) or not decision.get("device_id"):
                continue
            device_id = str(decision["device_id"])[:64]
            rows[(run_id, round_number, device_id)] = {
                "run_id": run_id,
                "round": round_number,
                "device_id": device_id,
                "selected": bool(decision.get("selected")),
                "reason": str(decision.get("reason") or "")[:200],
                "score": _number(decision.get("score")),
                "predicted_s": _number(decision.get("predicted_s")),
            }
    if rows:
        op.bulk_insert(
            sa.table(
                "round_selection",
                sa.column("run_id", sa.Integer),
                sa.column("round", sa.Integer),
                sa.column("device_id", sa.String),
                sa.column("selected", sa.Boolean),
                sa.column("reason", sa.Text),
                sa.column("score", sa.Float),
                sa.column("predicted_s", sa.Float),
            ),
            list(rows.values()),
        )


def downgrade() -> None:
    """Drop what upgrade() added (on SQLite the device column stays; older code ignores it)."""
    op.drop_table("round_selection")
    op.drop_index("ix_devices_train_samples_per_s_device_id", "devices")
    op.drop_index("ix_devices_name_device_id", "devices")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("devices", "train_samples_per_s")
