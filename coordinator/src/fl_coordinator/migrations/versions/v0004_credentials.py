"""Credentials: the api_tokens table; devices get their Flower node id and public key."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Only ADD COLUMN, CREATE TABLE and CREATE INDEX here (see v0002): no table is rebuilt.


def upgrade() -> None:
    """Add the token table and the two nullable device columns."""
    # A SQLite registry downgraded from here kept the columns: upgrading again reuses them.
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("devices")}
    if "node_id" not in columns:
        op.add_column("devices", sa.Column("node_id", sa.String(24), nullable=True))
    if "public_key" not in columns:
        op.add_column("devices", sa.Column("public_key", sa.Text(), nullable=True))
    op.create_index("ix_devices_node_id", "devices", ["node_id"])
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_tokens_secret_hash", "api_tokens", ["secret_hash"], unique=True)
    op.create_index("ix_api_tokens_device_id", "api_tokens", ["device_id"])


def downgrade() -> None:
    """Drop what upgrade() added (on SQLite the device columns stay; older code ignores them)."""
    op.drop_table("api_tokens")
    op.drop_index("ix_devices_node_id", "devices")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("devices", "public_key")
        op.drop_column("devices", "node_id")
