"""Looks at an agent's decision part, per data version: each comparison spends part of the false-promotion
allowance (activities/selfmod/decision_looks.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_decision_looks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("data_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(256), nullable=False),
        sa.Column("looked_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent", "data_version", "run_id", name="uq_agent_decision_looks_run"),
    )


def downgrade() -> None:
    op.drop_table("agent_decision_looks")
