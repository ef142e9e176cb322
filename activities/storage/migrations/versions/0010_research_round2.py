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
    # The range a capped fetch left unread (the next fetches read it).
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("backfill_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("backfill_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("backfill_before")
        batch.drop_column("backfill_after")
    op.drop_table("leases")
    op.drop_index("ix_analysis_failures_item_id", table_name="analysis_failures")
    op.drop_table("analysis_failures")
    # Not batch mode: on SQLite it rebuilds `items` (DROP TABLE), and with foreign keys on that delete
    # cascades to every analysis and experiment. SQLite 3.35+ drops a column in place.
    op.drop_column("items", "failed_analyser")
