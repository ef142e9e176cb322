"""The spending ledger: every paid LLM call, reserved before it is made and settled after
(activities/storage/ledger.py).

The analyses' costs recorded so far move into the ledger (one settled row each), so the budgets read the
ledger alone; from now on the gateway's row is an analysis's cost record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BACKFILL_PURPOSE = "analysis"  # ref: "analysis/<id>", so the backfill is idempotent per analysis


def upgrade() -> None:
    with op.batch_alter_table("spending") as batch:  # batch: SQLite cannot ALTER … ADD with defaults
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="settled"))
        batch.add_column(sa.Column("scope", sa.String(255), nullable=True))
        batch.add_column(sa.Column("attempt", sa.String(255), nullable=True))
        batch.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("cap", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("tokens_in", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("tokens_out", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_spending_scope", "spending", ["scope"])
    op.create_index("ix_spending_attempt", "spending", ["attempt"])
    analyses = sa.table(
        "analyses",
        sa.column("id", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("cost", sa.Float),
        sa.column("provider", sa.String),
        sa.column("model", sa.String),
        sa.column("tokens_in", sa.Integer),
        sa.column("tokens_out", sa.Integer),
    )
    spending = sa.table(
        "spending",
        *(
            sa.column(name)
            for name in ("at", "cost", "purpose", "ref", "state", "model", "cap", "tokens_in", "tokens_out")
        ),
    )
    ref = sa.literal("analysis/") + sa.cast(analyses.c.id, sa.String)
    rows = sa.select(
        analyses.c.created_at,
        analyses.c.cost,
        sa.literal(BACKFILL_PURPOSE),
        ref,
        sa.literal("settled"),
        analyses.c.provider + sa.literal(":") + analyses.c.model,
        analyses.c.cost,
        analyses.c.tokens_in,
        analyses.c.tokens_out,
    ).where(analyses.c.cost > 0)
    op.execute(
        spending.insert().from_select(
            ["at", "cost", "purpose", "ref", "state", "model", "cap", "tokens_in", "tokens_out"], rows
        )
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM spending WHERE purpose = :p").bindparams(p=BACKFILL_PURPOSE))
    op.drop_index("ix_spending_attempt", table_name="spending")
    op.drop_index("ix_spending_scope", table_name="spending")
    with op.batch_alter_table("spending") as batch:
        for name in ("tokens_out", "tokens_in", "cap", "model", "attempt", "scope", "state"):
            batch.drop_column(name)
