"""The model registry's tables, declared on the knowledge base's `Base` (revision 0005 creates them, 0012
adds the slot's salt and split lease), so `KnowledgeBase.migrate()` covers them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.schema import Base, UtcDateTime


class ModelSlot(Base):
    __tablename__ = "model_slots"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    external: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    active: Mapped[str] = mapped_column(sa.String(128))
    split: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Revision 0012: the current test's routing salt and the lease of its split (None: no lease).
    salt: Mapped[str] = mapped_column(sa.String(255), server_default="")
    split_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ModelVariant(Base):
    __tablename__ = "model_variants"
    __table_args__ = (sa.UniqueConstraint("slot", "name", name="uq_model_variants_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slot: Mapped[str] = mapped_column(sa.ForeignKey("model_slots.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(128))
    provider: Mapped[str] = mapped_column(sa.String(64))
    model: Mapped[str] = mapped_column(sa.String(128))
    prompt_version: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ModelOutcome(Base):
    __tablename__ = "model_outcomes"
    __table_args__ = (
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
        sa.Index("ix_model_outcomes_arm", "slot", "variant", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slot: Mapped[str] = mapped_column(sa.String(128))
    variant: Mapped[str] = mapped_column(sa.String(128))
    routing_key: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    tokens_in: Mapped[int] = mapped_column(sa.Integer)
    tokens_out: Mapped[int] = mapped_column(sa.Integer)
    cost: Mapped[float] = mapped_column(sa.Float)
    valid: Mapped[bool] = mapped_column(sa.Boolean)
    error: Mapped[bool] = mapped_column(sa.Boolean)
    quality: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    ref: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)


class ModelChange(Base):
    """A change of a slot's routing, by its idempotency key."""

    __tablename__ = "model_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    slot: Mapped[str] = mapped_column(sa.ForeignKey("model_slots.name", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
