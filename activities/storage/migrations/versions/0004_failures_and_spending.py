"""Analysis failures per item (an item that keeps failing is set aside) and a spending ledger (LLM calls
whose cost is not an analysis: failed analyses, experiment plans), both for the daily budget.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:  # batch: SQLite cannot ALTER … ADD with defaults
        batch.add_column(sa.Column("analysis_failures", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_analysis_error", sa.Text, nullable=True))
    op.create_table(
        "spending",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.UniqueConstraint("purpose", "ref", name="uq_spending_ref"),
    )
    op.create_index("ix_spending_at", "spending", ["at"])


def downgrade() -> None:
    op.drop_index("ix_spending_at", table_name="spending")
    op.drop_table("spending")
    # Not batch mode: on SQLite it rebuilds `items` (DROP TABLE), which cascades to every analysis.
    op.drop_column("items", "last_analysis_error")
    op.drop_column("items", "analysis_failures")
