"""The model registry's statistics reads: per-arm statistics for the A/B test, the guardrails' window,
and which metrics a slot's outcomes carry. Methods of `ModelRegistry` (activities/models/registry.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from activities.models.registry_tables import ModelOutcome
from autarky.models.types import ArmsInput, ArmStats, MetricSummary, WindowInput, WindowStats

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from activities.storage.knowledge_base import KnowledgeBase

P95_WINDOW = 10_000  # newest latencies per arm the p95 is computed from
# Slots the A/B test drives with labelled examples by default (workflows/ab_test.py's `drive_offline`).
OFFLINE_SUFFIX = "-offline"
ALL_METRICS = ("quality", "valid", "latency_ms", "cost")  # ArmMetric's order


def p95(values: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile: the smallest value at least 95 % of `values` do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


class OutcomeStats:
    """Methods of `ModelRegistry`; `kb`, `_require_slot` and `_require_variants` are its."""

    if TYPE_CHECKING:  # what the mixin uses of ModelRegistry, for the type checker only
        kb: KnowledgeBase

        def _require_slot(self, connection: Connection, name: str) -> Any: ...

        def _require_variants(self, connection: Connection, slot: str, variants: Sequence[str]) -> None: ...

    def arm_stats(self, request: ArmsInput) -> list[ArmStats]:
        """Per variant of `request.variants` (in that order), its outcomes since `request.since`.

        calls, errors and cost count every call; valid_rate and latency p95 only the calls without an
        error. The metric: "quality" over the calls that have one, "valid" 1 or 0, "latency_ms", or "cost"
        (over every call); with `errors_count` an errored call counts as the worst outcome (ArmsInput).
        units: distinct routing keys (an outcome without one counts alone). p95 reads the newest
        P95_WINDOW latencies."""
        request = ArmsInput.model_validate(request.model_dump())
        o = ModelOutcome
        ok = sa.not_(o.error)

        def when(condition: Any, value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=0)), 0)

        has, value = _metric(request)
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
                (sa.func.count(sa.distinct(o.routing_key)) + when(o.routing_key.is_(None), 1)).label("units"),
            )
            .where(o.slot == request.slot, o.variant.in_(request.variants), o.at >= request.since)
            .group_by(o.variant)
        )
        with self.kb._transaction() as connection:
            self._require_variants(connection, request.slot, request.variants)
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

    def window_stats(self, request: WindowInput) -> list[WindowStats]:
        """The guardrails' view of incumbent and challenger (in that order) since `request.since`: calls,
        errors, answered calls, cost sums, each arm's p95 of answered calls (nearest rank, computed in
        the database) and `slow`, its answered calls slower than the incumbent's p95."""
        request = WindowInput.model_validate(request.model_dump())
        o = ModelOutcome
        ok = sa.not_(o.error)
        arms = [request.incumbent, request.challenger]
        in_window = sa.and_(o.slot == request.slot, o.variant.in_(arms), o.at >= request.since)
        # The absolute p95 guardrail's count: answered calls over the limit (when one is set).
        over = (
            sa.and_(ok, o.latency_ms > request.latency_limit_ms)
            if request.latency_limit_ms is not None
            else sa.false()
        )

        def when(condition: Any, value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=0)), 0)

        with self.kb._transaction() as connection:
            self._require_variants(connection, request.slot, arms)
            totals = {
                row.variant: row
                for row in connection.execute(
                    sa.select(
                        o.variant,
                        sa.func.count(o.id).label("calls"),
                        when(o.error, 1).label("errors"),
                        when(ok, 1).label("answered"),
                        sa.func.coalesce(sa.func.sum(o.cost), 0.0).label("cost_sum"),
                        sa.func.coalesce(sa.func.sum(o.cost * o.cost), 0.0).label("cost_sumsq"),
                        when(over, 1).label("over_limit"),
                    )
                    .where(in_window)
                    .group_by(o.variant)
                )
            }
            p95s: dict[str, float | None] = {}
            for variant in arms:
                answered = int(totals[variant].answered) if variant in totals else 0
                # Nearest rank: the ceil(0.95 n)-th smallest, picked by the database (the arm's index
                # narrows the scan to the window; nothing but one value comes back).
                p95s[variant] = (
                    connection.execute(
                        sa.select(o.latency_ms)
                        .where(o.slot == request.slot, o.variant == variant, o.at >= request.since, ok)
                        .order_by(o.latency_ms)
                        .offset(max(0, math.ceil(0.95 * answered) - 1))
                        .limit(1)
                    ).scalar_one()
                    if answered
                    else None
                )
            bound = p95s[request.incumbent]
            slow: dict[str, int] = {}
            if bound is not None:
                slow = {
                    variant: int(count)
                    for variant, count in connection.execute(
                        sa.select(o.variant, sa.func.count(o.id))
                        .where(in_window, ok, o.latency_ms > bound)
                        .group_by(o.variant)
                    )
                }
        return [
            WindowStats(
                variant=variant,
                calls=int(totals[variant].calls) if variant in totals else 0,
                errors=int(totals[variant].errors) if variant in totals else 0,
                answered=int(totals[variant].answered) if variant in totals else 0,
                slow=slow.get(variant, 0),
                cost_sum=float(totals[variant].cost_sum) if variant in totals else 0.0,
                cost_sumsq=float(totals[variant].cost_sumsq) if variant in totals else 0.0,
                p95_ms=p95s[variant],
                over_limit=(int(totals[variant].over_limit) if variant in totals else 0)
                if request.latency_limit_ms is not None
                else None,
            )
            for variant in arms
        ]

    def recorded_metrics(self, slot: str) -> list[str]:
        """The A/B metrics the slot's outcomes carry, in ArmMetric order: "quality" when some outcome has
        a quality, "valid", "latency_ms" and "cost" when it has outcomes at all. An offline slot (one the
        A/B test drives with labelled examples: its name ends with OFFLINE_SUFFIX) records all of them,
        outcomes yet or not: every evaluated example has a quality."""
        o = ModelOutcome
        with self.kb._transaction() as connection:
            self._require_slot(connection, slot)
            if slot.endswith(OFFLINE_SUFFIX):
                return list(ALL_METRICS)

            def exists(*conditions: Any) -> bool:
                return (
                    connection.execute(sa.select(o.id).where(o.slot == slot, *conditions).limit(1)).first()
                    is not None
                )

            if not exists():
                return []
            quality = ["quality"] if exists(o.quality.is_not(None)) else []
            return [*quality, "valid", "latency_ms", "cost"]


def _metric(request: ArmsInput) -> tuple[Any, Any]:
    """(which calls count, their value) of the request's metric, as SQL expressions."""
    o = ModelOutcome
    ok = sa.not_(o.error)
    counted = request.errors_count
    if request.metric == "quality":
        if counted:  # an errored call is the worst quality: 0
            return sa.or_(o.error, o.quality.is_not(None)), sa.case((o.error, 0.0), else_=o.quality)
        return sa.and_(ok, o.quality.is_not(None)), o.quality
    if request.metric == "valid":
        valid = sa.case((sa.and_(ok, o.valid), 1.0), else_=0.0)
        return (sa.true() if counted else ok), valid
    if request.metric == "latency_ms":
        if counted:  # an errored call took at least as long as the bound (e.g. it timed out)
            bound = float(request.error_latency_ms or 0.0)
            worst = sa.case((o.latency_ms > bound, o.latency_ms), else_=bound)
            return sa.true(), sa.case((o.error, worst), else_=o.latency_ms)
        return ok, o.latency_ms
    return sa.true(), o.cost


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
        units=int(row.units),
    )
