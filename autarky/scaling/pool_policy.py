"""Analyze stage, scaling part: whether a host's local worker pool should grow or shrink (pure code).

The pool scales on what more members relieve: activity tasks in flight on its members plus the backlog of
its queue, in members' worth of slots (the host probe reads both), never on host CPU, which other processes
may spend (a CPU-bound host is the threshold rules' finding, and a person's). The scaling policy
(autarky.scaling.policy) sizes the pool with its memory kept per host; a pool may go to zero members when
its queue has had no work for the idle window, and the first backlog brings a member back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from autarky.autopilot.types import MetricPoint
from autarky.core.findings import Finding
from autarky.scaling.effect import BACKLOG, BACKLOG_AGE
from autarky.scaling.policy import recommend
from autarky.scaling.policy_types import (
    Capacity,
    LoadSample,
    ResourceKind,
    ResourceRef,
    ScalingMemory,
    ScalingPolicy,
)

POOL_MEMBER = "pool member"
RESOURCE = "resource"
DESIRED = "desired"
POOL_DEMAND = "pool_demand"
POOL_MEMBER_SLOTS = 10  # a pool member's activity slots on the pool's queue (workers/main.py runs it so)


def pool_demand(point: MetricPoint) -> float | None:
    """Tasks running on the pool plus waiting for it, in members' worth of slots; None: not measured. A pool
    at zero members has none to report its slots: it would start members of the usual size."""
    if point.pool_desired is None or point.pool_backlog is None:
        return None  # no pool here, or its queue could not be read: unknown, not idle
    if point.pool_in_flight is None and (point.pool_members or 0) > 0:
        return None  # members that have not said how busy they are
    slots = point.pool_slots_per_member or POOL_MEMBER_SLOTS
    return ((point.pool_in_flight or 0) + (point.pool_backlog or 0)) / slots


def pool_scaling_findings(
    host: str,
    window: Sequence[MetricPoint],
    memory: ScalingMemory,
    policy: ScalingPolicy,
    now: datetime,
) -> list[Finding]:
    """A `pool_overloaded` or `pool_underused` finding naming the members to scale to, or nothing."""
    if not window:
        return []
    latest = window[-1]
    demand = pool_demand(latest)
    if demand is None or latest.pool_desired is None:
        return []  # no pool on this host (or a probe that does not read the pool's load)
    desired = latest.pool_desired
    capacity = Capacity(desired=desired, in_service=min(desired, latest.pool_members or 0))
    sample = LoadSample(
        at=latest.at,
        demand=demand,
        backlog=latest.pool_backlog,
        backlog_age_seconds=latest.pool_backlog_age_seconds,
    )
    recommendation = recommend(policy, capacity, sample, memory)
    if recommendation.desired == desired:
        return []
    resource = ResourceRef(kind=ResourceKind.LOCAL_POOL, name=host)
    growing = recommendation.desired > desired
    return [
        Finding(
            kind="pool_overloaded" if growing else "pool_underused",
            metric=POOL_DEMAND,
            value=round(demand, 2),
            threshold=round(
                desired * (policy.target_utilisation if growing else policy.scale_down_target), 2
            ),
            message=f"{resource.id}: {desired} → {recommendation.desired} members ({recommendation.reason})",
            observed_at=now,
            subject=resource.id,
            # The load that asked for the change, so that its effect can be judged (autarky.scaling.effect).
            params={
                RESOURCE: resource.id,
                DESIRED: str(recommendation.desired),
                BACKLOG: str(latest.pool_backlog or 0),
                BACKLOG_AGE: f"{latest.pool_backlog_age_seconds or 0.0:.1f}",
            },
        )
    ]
