"""Agent versions every host agrees on: pointer changes and git objects (activities/selfmod/agent_store.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_pointers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("commit_id", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pointer", sa.Text, nullable=False),
        sa.UniqueConstraint("agent", "seq", name="uq_agent_pointers_seq"),
    )
    op.create_table(
        "agent_objects",
        sa.Column("oid", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_objects")
    op.drop_table("agent_pointers")
