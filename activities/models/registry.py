"""The model registry: model slots, their variants and traffic split, call outcomes, in the knowledge base.

Usable directly, e.g. from a notebook or a script that calls an external model::

    from activities.models.registry import ModelRegistry
    from activities.storage.knowledge_base import KnowledgeBase
    from autarky.models.types import OutcomeIn, Variant

    kb = KnowledgeBase(url)  # e.g. autarky.core.settings.load_settings().knowledge_db_url
    kb.migrate()
    registry = ModelRegistry(kb)
    registry.register_slot("summaries", [Variant(name="gpt", provider="external", model="gpt-x")], "gpt")
    registry.record_outcome(OutcomeIn(slot="summaries", variant="gpt", latency_ms=812, quality=0.9))

The tables live in the knowledge base (declared on its `Base`; revision 0005 creates them), so
`KnowledgeBase.migrate()` covers them. Like the knowledge base, every call is one transaction and bad
input is refused with a ValueError before anything changes. Changes of a slot's routing (split, promote,
restore) carry a key: the `model_changes` table remembers it, so applying the same key again is a no-op
that returns the slot as it is (an activity retried after its change committed changes nothing twice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime
from autarky.models.routing import validate_split
from autarky.models.types import ArmsInput, ArmStats, MetricSummary, OutcomeIn, SlotInfo, Variant

P95_WINDOW = 10_000  # newest latencies per arm the p95 is computed from


class ModelSlot(Base):
    __tablename__ = "model_slots"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    external: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    active: Mapped[str] = mapped_column(sa.String(128))
    split: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


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


def _now() -> datetime:
    return datetime.now(UTC)


def p95(values: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile: the smallest value at least 95 % of `values` do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


class ModelRegistry:
    """Slots, variants, routing changes and outcomes in a knowledge base (which must be migrated)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    # --- slots and variants ----------------------------------------------------------------------------

    def register_slot(
        self,
        name: str,
        variants: Iterable[Variant],
        active: str,
        description: str = "",
        external: bool = False,
    ) -> SlotInfo:
        """Create the slot (split: all to `active`) or, when it exists, add the variants it lacks. The
        active variant, split, description and external flag of an existing slot are never changed; a
        variant registered again must be the same (a variant is immutable: register a new name)."""
        variants = [Variant.model_validate(v.model_dump()) for v in variants]
        if not name or len(name) > 128:
            raise ValueError(f"a slot name must have 1 to 128 characters, got {name!r}")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat in {names}")
        now = _now()
        with self.kb._transaction() as connection:
            existing = self._slot_row(connection, name)
            if existing is None:
                if active not in names:
                    raise ValueError(f"active variant {active!r} is not among the variants {names}")
                connection.execute(
                    self.kb._insert(ModelSlot)
                    .values(
                        name=name,
                        description=description,
                        external=external,
                        active=active,
                        split={active: 1.0},
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            else:
                known = {v.name for v in self._variants(connection, name)}
                if active not in known | set(names):
                    raise ValueError(f"active variant {active!r} is not a variant of slot {name!r}")
            for variant in variants:
                self._add_variant(connection, name, variant, now)
            return self._info(connection, name)

    def add_variant(self, slot: str, variant: Variant) -> SlotInfo:
        """Add a variant to an existing slot (again, the same: a no-op); it gets no traffic until a split
        gives it some."""
        variant = Variant.model_validate(variant.model_dump())
        with self.kb._transaction() as connection:
            self._require_slot(connection, slot)
            self._add_variant(connection, slot, variant, _now())
            return self._info(connection, slot)

    def slot(self, name: str) -> SlotInfo:
        with self.kb._transaction() as connection:
            return self._info(connection, name)

    def slots(self) -> list[SlotInfo]:
        with self.kb._transaction() as connection:
            names = connection.execute(sa.select(ModelSlot.name).order_by(ModelSlot.name)).scalars().all()
            return [self._info(connection, name) for name in names]

    # --- routing changes -------------------------------------------------------------------------------

    def set_split(self, slot: str, split: dict[str, float], key: str) -> SlotInfo:
        """Route `split` of the slot's calls to its variants (shares of known variants, summing to 1)."""
        return self._change(slot, "split", key, {"split": validate_split(split)})

    def promote(self, slot: str, variant: str, key: str) -> SlotInfo:
        """Make `variant` the active one, with all the traffic."""
        return self._change(slot, "promote", key, {"variant": variant})

    def restore(self, slot: str, incumbent: str, key: str) -> SlotInfo:
        """Give `incumbent` all the traffic again (the A/B test's rollback); the active variant stays."""
        return self._change(slot, "restore", key, {"variant": incumbent})

    def changes(self, slot: str) -> list[dict[str, Any]]:
        """The slot's routing changes, oldest first (key, kind, payload, at)."""
        with self.kb._transaction() as connection:
            rows = connection.execute(
                sa.select(ModelChange.key, ModelChange.kind, ModelChange.payload, ModelChange.at)
                .where(ModelChange.slot == slot)
                .order_by(ModelChange.id)
            )
            return [dict(row._mapping) for row in rows]

    def _change(self, slot: str, kind: str, key: str, payload: dict[str, Any]) -> SlotInfo:
        if not key or len(key) > 255:
            raise ValueError(f"a change key must have 1 to 255 characters, got {key!r}")
        now = _now()
        with self.kb._transaction() as connection:
            info = self._info(connection, slot)
            known = {v.name for v in info.variants}
            named = set(payload["split"]) if kind == "split" else {payload["variant"]}
            unknown = sorted(named - known)
            if unknown:
                raise ValueError(
                    f"slot {slot!r} has no variant {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(sorted(known))})"
                )
            inserted = connection.execute(
                self.kb._insert(ModelChange)
                .values(key=key, slot=slot, kind=kind, payload=payload, at=now)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(ModelChange.id)
            ).scalar_one_or_none()
            if inserted is None:
                done = connection.execute(
                    sa.select(ModelChange.slot, ModelChange.kind, ModelChange.payload).where(
                        ModelChange.key == key
                    )
                ).one()
                if (done.slot, done.kind, done.payload) != (slot, kind, payload):
                    raise ValueError(
                        f"change key {key!r} was used for another change ({done.kind} of slot "
                        f"{done.slot!r}: {done.payload}); use a new key for a new change"
                    )
                return info  # applied before: a no-op
            values: dict[str, Any] = {"updated_at": now}
            if kind == "split":
                values["split"] = payload["split"]
            else:
                values["split"] = {payload["variant"]: 1.0}
                if kind == "promote":
                    values["active"] = payload["variant"]
            connection.execute(sa.update(ModelSlot).where(ModelSlot.name == slot).values(**values))
            return self._info(connection, slot)

    # --- outcomes --------------------------------------------------------------------------------------

    def record_outcome(self, outcome: OutcomeIn) -> bool:
        """Record one call's outcome; True when recorded now (False: its `ref` was recorded before)."""
        return self.record_outcomes([outcome]) == 1

    def record_outcomes(self, outcomes: Sequence[OutcomeIn]) -> int:
        """Record outcomes in one transaction (all or none); how many were new (not a known `ref`)."""
        checked = [OutcomeIn.model_validate(o.model_dump()) for o in outcomes]
        now = _now()
        created = 0
        with self.kb._transaction() as connection:
            variants: dict[str, set[str]] = {}
            for outcome in checked:
                if outcome.slot not in variants:
                    variants[outcome.slot] = {v.name for v in self._info(connection, outcome.slot).variants}
                if outcome.variant not in variants[outcome.slot]:
                    raise ValueError(
                        f"slot {outcome.slot!r} has no variant {outcome.variant!r} "
                        f"(known: {', '.join(sorted(variants[outcome.slot]))})"
                    )
            for outcome in checked:
                values = outcome.model_dump() | {"at": outcome.at or now}
                insert = self.kb._insert(ModelOutcome).values(**values)
                if outcome.ref is not None:
                    insert = insert.on_conflict_do_nothing(index_elements=["slot", "ref"])
                inserted = connection.execute(insert.returning(ModelOutcome.id)).scalar_one_or_none()
                created += inserted is not None
        return created

    def count_refs(self, slot: str, prefix: str) -> int:
        """How many outcomes of `slot` have a ref starting with `prefix`."""
        with self.kb._transaction() as connection:
            return connection.execute(
                sa.select(sa.func.count(ModelOutcome.id)).where(
                    ModelOutcome.slot == slot, ModelOutcome.ref.startswith(prefix, autoescape=True)
                )
            ).scalar_one()

    def outcome_counts(self, slot: str, since: datetime) -> dict[str, int]:
        """Outcomes per variant of the slot since `since` (every variant listed, 0 when none)."""
        with self.kb._transaction() as connection:
            info = self._info(connection, slot)
            rows = connection.execute(
                sa.select(ModelOutcome.variant, sa.func.count(ModelOutcome.id))
                .where(ModelOutcome.slot == slot, ModelOutcome.at >= since)
                .group_by(ModelOutcome.variant)
            )
            counts = dict.fromkeys((v.name for v in info.variants), 0)
            counts.update({variant: n for variant, n in rows})
            return counts

    def arm_stats(self, request: ArmsInput) -> list[ArmStats]:
        """Per variant of `request.variants` (in that order), its outcomes since `request.since`.

        calls, errors and cost count every call; valid_rate, latency p95 and the quality metric only the
        calls without an error. The metric: "quality" over the calls that have one, "valid" 1 or 0,
        "latency_ms", or "cost" (over every call). p95 reads the newest P95_WINDOW latencies."""
        request = ArmsInput.model_validate(request.model_dump())
        o = ModelOutcome
        ok = sa.not_(o.error)

        def when(condition: Any, value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=0)), 0)

        if request.metric == "quality":
            has, value = sa.and_(ok, o.quality.is_not(None)), o.quality
        elif request.metric == "valid":
            has, value = ok, sa.case((o.valid, 1.0), else_=0.0)
        elif request.metric == "latency_ms":
            has, value = ok, o.latency_ms
        else:
            has, value = sa.true(), o.cost
        query = (
            sa.select(
                o.variant,
                sa.func.count(o.id).label("calls"),
                when(o.error, 1).label("errors"),
                when(sa.and_(ok, o.valid), 1).label("valid"),
                when(ok, 1).label("answered"),
                sa.func.coalesce(sa.func.sum(o.cost), 0.0).label("cost"),
                when(has, 1).label("n"),
                when(has, value).label("total"),
                when(has, value * value).label("squares"),
            )
            .where(o.slot == request.slot, o.variant.in_(request.variants), o.at >= request.since)
            .group_by(o.variant)
        )
        with self.kb._transaction() as connection:
            info = self._info(connection, request.slot)
            known = {v.name for v in info.variants}
            unknown = [v for v in request.variants if v not in known]
            if unknown:
                raise ValueError(
                    f"slot {request.slot!r} has no variant {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(sorted(known))})"
                )
            rows = {row.variant: row for row in connection.execute(query)}
            stats = []
            for variant in request.variants:
                row = rows.get(variant)
                latencies = (
                    connection.execute(
                        sa.select(o.latency_ms)
                        .where(o.slot == request.slot, o.variant == variant, o.at >= request.since, ok)
                        .order_by(o.at.desc(), o.id.desc())
                        .limit(P95_WINDOW)
                    )
                    .scalars()
                    .all()
                    if row is not None
                    else []
                )
                stats.append(_arm(variant, row, latencies))
            return stats

    # --- helpers ---------------------------------------------------------------------------------------

    def _add_variant(self, connection: Connection, slot: str, variant: Variant, now: datetime) -> None:
        values = variant.model_dump()
        connection.execute(
            self.kb._insert(ModelVariant)
            .values(slot=slot, created_at=now, **values)
            .on_conflict_do_nothing(index_elements=["slot", "name"])
        )
        stored = next(v for v in self._variants(connection, slot) if v.name == variant.name)
        if stored != variant:
            raise ValueError(
                f"slot {slot!r} already has a variant {variant.name!r} that differs "
                f"({stored.model_dump()}): a variant is immutable, register it under a new name"
            )

    @staticmethod
    def _slot_row(connection: Connection, name: str) -> Any:
        return connection.execute(sa.select(ModelSlot.__table__).where(ModelSlot.name == name)).first()

    def _require_slot(self, connection: Connection, name: str) -> Any:
        row = self._slot_row(connection, name)
        if row is None:
            known = connection.execute(sa.select(ModelSlot.name).order_by(ModelSlot.name)).scalars().all()
            raise ValueError(f"unknown model slot {name!r} (known: {', '.join(known) or 'none'})")
        return row

    @staticmethod
    def _variants(connection: Connection, slot: str) -> list[Variant]:
        rows = connection.execute(
            sa.select(
                ModelVariant.name,
                ModelVariant.provider,
                ModelVariant.model,
                ModelVariant.prompt_version,
                ModelVariant.params,
            )
            .where(ModelVariant.slot == slot)
            .order_by(ModelVariant.id)
        )
        return [Variant.model_validate(dict(row._mapping)) for row in rows]

    def _info(self, connection: Connection, name: str) -> SlotInfo:
        row = self._require_slot(connection, name)
        return SlotInfo(
            name=row.name,
            description=row.description or "",
            external=bool(row.external),
            active=row.active,
            split=row.split,
            variants=self._variants(connection, name),
            updated_at=row.updated_at,
        )


def _arm(variant: str, row: Any, latencies: Sequence[float]) -> ArmStats:
    if row is None:
        return ArmStats(
            variant=variant,
            calls=0,
            errors=0,
            error_rate=0.0,
            valid_rate=0.0,
            latency_p95_ms=None,
            cost_per_call=0.0,
            metric=MetricSummary(n=0, mean=0.0, variance=0.0),
        )
    calls, errors, answered, n = int(row.calls), int(row.errors), int(row.answered), int(row.n)
    total, squares = float(row.total), float(row.squares)
    mean = total / n if n else 0.0
    variance = max(0.0, (squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    return ArmStats(
        variant=variant,
        calls=calls,
        errors=errors,
        error_rate=errors / calls if calls else 0.0,
        valid_rate=int(row.valid) / answered if answered else 0.0,
        latency_p95_ms=p95(latencies),
        cost_per_call=float(row.cost) / calls if calls else 0.0,
        metric=MetricSummary(n=n, mean=mean, variance=variance),
    )
