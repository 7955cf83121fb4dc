"""SQLAlchemy tables of the registry; Alembic migrations (fl_coordinator.migrations) build them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits, because a big
# fleet writes billions of heartbeat rows over the years.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class DeviceRow(Base):
    """One enrolled device; ``arch``, ``has_gpu`` and ``train_samples_per_s`` are copied from
    its capabilities (so that listings filter and sort on indexed columns)."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_registered_at_device_id", "registered_at", "device_id"),
        Index("ix_devices_name_device_id", "name", "device_id"),
        Index("ix_devices_train_samples_per_s_device_id", "train_samples_per_s", "device_id"),
    )

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    platform: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    # The labels as one JSON object (what listings show); device_labels indexes them.
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    supernode_state: Mapped[str] = mapped_column(String(32), default="starting")
    supernode_restarts: Mapped[int] = mapped_column(Integer, default=0)
    arch: Mapped[str] = mapped_column(String(64), default="", server_default="", index=True)
    has_gpu: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    drained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Filled at enrollment. Flower node ids are unsigned 64-bit: kept as text, like run ids.
    node_id: Mapped[str | None] = mapped_column(String(24), index=True)
    public_key: Mapped[str | None] = mapped_column(Text)
    # capabilities.speed.torch_train_samples_per_s (finite and positive, else NULL).
    train_samples_per_s: Mapped[float | None] = mapped_column(Float)


class DeviceLabelRow(Base):
    """One label of a device, so that label filters use an index."""

    __tablename__ = "device_labels"
    __table_args__ = (Index("ix_device_labels_key_value", "key", "value"),)

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class DeviceStatusRow(Base):
    """What a device last said about itself: heartbeat payload and capabilities."""

    __tablename__ = "device_status"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
    )
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    capabilities_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    history_compacted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HeartbeatRow(Base):
    """One point of a device's heartbeat history: a raw beat, or a 5-minute or 1-hour summary."""

    __tablename__ = "device_heartbeats"
    __table_args__ = (Index("ix_device_heartbeats_device_id_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolution_s: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=1)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    max_temp_c: Mapped[float | None] = mapped_column(Float)
    supernode_state: Mapped[str] = mapped_column(String(32), default="")
    activity: Mapped[str] = mapped_column(Text, default="")


class RunRow(Base):
    """One training run."""

    __tablename__ = "runs"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Flower run ids are unsigned 64-bit: kept as text so every backend stores them whole.
    flower_run_id: Mapped[str | None] = mapped_column(String(24), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    report_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    resumed_from_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    app_source: Mapped[str] = mapped_column(Text, default="builtin", server_default="builtin")
    target_labels: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    selection_policy: Mapped[str] = mapped_column(
        String(64), default="fedavg-all", server_default="fedavg-all"
    )


class RoundRow(Base):
    """One round of a run, as the ServerApp reported it."""

    __tablename__ = "rounds"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class RoundDeviceRow(Base):
    """One device's part in one round; no foreign key to devices: history outlives a device."""

    __tablename__ = "round_devices"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    num_examples: Mapped[int] = mapped_column(Integer)
    train_seconds: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)


class RoundSelectionRow(Base):
    """One selection decision about a device in one round (RoundReport.selection); no foreign
    key to devices: history outlives a device."""

    __tablename__ = "round_selection"
    __table_args__ = (
        Index("ix_round_selection_device_id_run_id_round", "device_id", "run_id", "round"),
    )

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    selected: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float)
    predicted_s: Mapped[float | None] = mapped_column(Float)


class ApiTokenRow(Base):
    """One credential: an admin, read-only, enrollment or device token; only its hash is kept."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text, default="")
    # SHA-256 hex of the secret. Secrets are 256-bit random, so a fast unsalted hash is right:
    # nobody can guess one, and a slow KDF would only cost every authenticated request.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The labels a device enrolled with this (enrollment) token gets.
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
