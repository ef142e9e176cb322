"""Research cycles, round 2: item failures remembered under their analyser and recorded once each, and
the one-cycle-at-a-time lease (activities/storage/research_queue.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:  # batch: SQLite cannot ALTER everything in place
        batch.add_column(sa.Column("failed_analyser", sa.String(255), nullable=True))
    op.create_table(
        "analysis_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False, unique=True),
        sa.Column("analyser", sa.String(255), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_analysis_failures_item_id", "analysis_failures", ["item_id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_analysis_failures_item_id", table_name="analysis_failures")
    op.drop_table("analysis_failures")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("failed_analyser")
