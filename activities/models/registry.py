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

The tables live in the knowledge base (registry_tables.py, declared on its `Base`; revisions 0005 and 0012),
so `KnowledgeBase.migrate()` covers them. Like the knowledge base, every call is one transaction and bad
input is refused with a ValueError before anything changes. Changes of a slot's routing (split, promote,
restore) carry a key: the `model_changes` table remembers it, so applying the same key again is a no-op that
returns the slot as it is (an activity retried after its change committed changes nothing twice). A test's
split may carry a lease (`expires_at`, renewed by `renew_split`) and a salt; promote and restore clear both
(autarky/models/types.py says what they do to routing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from activities.models.outcome_stats import OFFLINE_SUFFIX, P95_WINDOW, OutcomeStats, p95
from activities.models.registry_tables import ModelChange, ModelOutcome, ModelSlot, ModelVariant
from activities.storage.knowledge_base import KnowledgeBase
from autarky.models.routing import SPLIT_TOLERANCE, validate_split
from autarky.models.types import OutcomeIn, SlotInfo, Variant

# Re-exported: callers and tests import them from here.
__all__ = [
    "OFFLINE_SUFFIX",
    "P95_WINDOW",
    "ModelChange",
    "ModelOutcome",
    "ModelRegistry",
    "ModelSlot",
    "ModelVariant",
    "p95",
]


def _now() -> datetime:
    return datetime.now(UTC)


class ModelRegistry(OutcomeStats):
    """Slots, variants, routing changes and outcomes in a knowledge base (which must be migrated); the
    statistics reads are OutcomeStats' (outcome_stats.py)."""

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

    def set_split(
        self,
        slot: str,
        split: dict[str, float],
        key: str,
        salt: str | None = None,
        expires_at: datetime | None = None,
    ) -> SlotInfo:
        """Route `split` of the slot's calls to its variants (shares of known variants, summing to 1).
        `salt` (None: keep the slot's) salts the routing hash; `expires_at` makes the split a lease that
        lapses to the active variant unless renewed (None: no lease, the split holds until changed)."""
        payload: dict[str, Any] = {"split": validate_split(split)}
        # Only when given: a retried change of a caller from before round 2 compares equal to its record.
        if salt is not None:
            if len(salt) > 255:
                raise ValueError(f"a salt must have at most 255 characters, got {len(salt)}")
            payload["salt"] = salt
        if expires_at is not None:
            payload["expires_at"] = _aware(expires_at, "expires_at").isoformat()
        return self._change(slot, "split", key, payload)

    def renew_split(self, slot: str, split: dict[str, float], expires_at: datetime) -> bool:
        """Extend the lease of the slot's split to `expires_at` (never shortening it); True when renewed.
        False, changing nothing, when the slot no longer routes by `split` (restored, promoted, another
        split) or its lease already lapsed: the routers have sent that traffic to the incumbent since, so
        reopening it would hand a stopped test's share back to the challenger."""
        wanted = validate_split(split)
        expires_at = _aware(expires_at, "expires_at")
        now = _now()
        with self.kb._transaction() as connection:
            self._require_slot(connection, slot)
            # Locked (PostgreSQL; SQLite's write transactions queue anyway): a restore committing between
            # this read and the update below must not be followed by a renewal of the split it ended.
            row = connection.execute(
                sa.select(ModelSlot.split, ModelSlot.split_expires_at)
                .where(ModelSlot.name == slot)
                .with_for_update()
            ).one()
            if not _same_split(row.split, wanted):
                return False
            current = row.split_expires_at
            if current is not None and current <= now:
                return False
            if current is None or expires_at > current:
                connection.execute(
                    sa.update(ModelSlot).where(ModelSlot.name == slot).values(split_expires_at=expires_at)
                )
            return True

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
                if "salt" in payload:
                    values["salt"] = payload["salt"]
                expires = payload.get("expires_at")
                values["split_expires_at"] = datetime.fromisoformat(expires) if expires else None
            else:
                # The test is over: no salt, no lease (all traffic to one variant needs neither).
                values.update(split={payload["variant"]: 1.0}, salt="", split_expires_at=None)
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

    def _require_variants(self, connection: Connection, slot: str, variants: Sequence[str]) -> None:
        known = {v.name for v in self._info(connection, slot).variants}
        unknown = [v for v in variants if v not in known]
        if unknown:
            raise ValueError(
                f"slot {slot!r} has no variant {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )

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
            salt=row.salt or "",
            split_expires_at=row.split_expires_at,
        )


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone, got {value.isoformat()}")
    return value.astimezone(UTC)


def _same_split(stored: dict[str, float], wanted: dict[str, float]) -> bool:
    """The same routing: the same shares (within the split tolerance), zero shares aside."""
    names = {n for n, s in stored.items() if s > 0} | {n for n, s in wanted.items() if s > 0}
    return all(abs(stored.get(n, 0.0) - wanted.get(n, 0.0)) <= SPLIT_TOLERANCE for n in names)
