"""Analyze stage, scaling part, round 1 (kept for replay; autarky.scaling.pool_policy is round 2): whether a
host's local worker pool should grow or shrink (pure code).

The pool's load is the host's CPU and the backlog of the pool's queue (from the host probe); the
scaling policy (autarky.scaling.policy) decides the capacity, with its memory (stabilisation window,
last change) kept per host. An overload warning (latency and CPU rising together) asks for one more
member even while the policy still sees the utilisation within its band.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from autarky.autopilot.types import MetricPoint
from autarky.core.findings import Finding
from autarky.scaling.policy_round1 import clamp, cooldown_remaining, recommend
from autarky.scaling.policy_types import LoadSample, ResourceKind, ResourceRef, ScalingMemory, ScalingPolicy
from autarky.scaling.pool_policy import DESIRED, POOL_MEMBER, RESOURCE


def pool_members(point: MetricPoint) -> int:
    return sum(1 for process in point.process_rss_bytes if process.startswith(POOL_MEMBER))


def pool_scaling_findings(
    host: str,
    window: Sequence[MetricPoint],
    memory: ScalingMemory,
    policy: ScalingPolicy,
    overload: Finding | None,
    now: datetime,
) -> list[Finding]:
    """A `pool_overloaded` or `pool_underused` finding naming the capacity to scale to, or nothing."""
    if not window:
        return []
    latest = window[-1]
    current = pool_members(latest)
    if current == 0:
        return []  # no pool on this host (worker_pool_size = 0, or a worker without `autarky up`)
    sample = LoadSample(
        at=latest.at,
        utilisation=latest.cpu_percent / 100,
        backlog=latest.pool_backlog,
        backlog_age_seconds=latest.pool_backlog_age_seconds,
    )
    recommendation = recommend(policy, current, sample, memory)
    desired, reason = recommendation.desired, recommendation.reason
    if (
        desired == current
        and overload is not None
        and clamp(policy, current + 1) > current
        and cooldown_remaining(policy, memory.last_scaled_at, sample.at) == timedelta(0)
    ):
        desired, reason = current + 1, f"overload warning: {overload.message}"
    if desired == current:
        return []
    resource = ResourceRef(kind=ResourceKind.LOCAL_POOL, name=host)
    return [
        Finding(
            kind="pool_overloaded" if desired > current else "pool_underused",
            metric="cpu_percent",
            value=round(latest.cpu_percent, 1),
            threshold=100
            * (policy.scale_up_utilisation if desired > current else policy.scale_down_utilisation),
            message=f"{resource.id}: {current} → {desired} members ({reason})",
            observed_at=now,
            subject=resource.id,
            params={RESOURCE: resource.id, DESIRED: str(desired)},
        )
    ]
