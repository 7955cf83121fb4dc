"""A device's training loss in a round may be unknown (NULL): its ClientApp sent none."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop NOT NULL from round_devices.train_loss (SQLite rebuilds that table: it has no
    children, so nothing cascades)."""
    with op.batch_alter_table("round_devices") as batch:
        batch.alter_column("train_loss", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    """Unknown losses become 0.0, then NOT NULL comes back."""
    op.execute("UPDATE round_devices SET train_loss = 0.0 WHERE train_loss IS NULL")
    with op.batch_alter_table("round_devices") as batch:
        batch.alter_column("train_loss", existing_type=sa.Float(), nullable=False)
