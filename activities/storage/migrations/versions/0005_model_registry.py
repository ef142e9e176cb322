"""The model registry: model slots, their variants, call outcomes and routing changes (by idempotency key).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_slots",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("external", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("active", sa.String(128), nullable=False),
        sa.Column("split", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_variants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "slot", sa.String(128), sa.ForeignKey("model_slots.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_version", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("slot", "name", name="uq_model_variants_name"),
    )
    op.create_table(
        "model_outcomes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slot", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("valid", sa.Boolean, nullable=False),
        sa.Column("error", sa.Boolean, nullable=False),
        sa.Column("quality", sa.Float, nullable=True),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["slot", "variant"],
            ["model_variants.slot", "model_variants.name"],
            ondelete="CASCADE",
            name="fk_model_outcomes_variant",
        ),
        sa.UniqueConstraint("slot", "ref", name="uq_model_outcomes_ref"),
        sa.CheckConstraint("latency_ms >= 0", name="ck_model_outcomes_latency"),
        sa.CheckConstraint(
            "quality IS NULL OR (quality >= 0 AND quality <= 1)", name="ck_model_outcomes_quality"
        ),
    )
    op.create_index("ix_model_outcomes_arm", "model_outcomes", ["slot", "variant", "at"])
    op.create_table(
        "model_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "slot", sa.String(128), sa.ForeignKey("model_slots.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_changes_slot", "model_changes", ["slot"])


def downgrade() -> None:
    op.drop_index("ix_model_changes_slot", table_name="model_changes")
    op.drop_table("model_changes")
    op.drop_index("ix_model_outcomes_arm", table_name="model_outcomes")
    op.drop_table("model_outcomes")
    op.drop_table("model_variants")
    op.drop_table("model_slots")
