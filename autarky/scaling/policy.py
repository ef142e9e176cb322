"""The scaling policy, round 2 (pure code): how much capacity a resource should have, and when a change
needs a person.

- Demand is counted in units of capacity: the sample's `demand` (a worker pool: busy slots plus backlog per
  member's slots), else utilisation × the capacity in service.
- Grow to need = ceil((demand + expected rise) / target_utilisation), where the expected rise is the
  `headroom_quantile` of how much demand rose within one warm-up over the last `rise_history` (new
  capacity serves only after its warm-up, so it is sized for then). Capacity already starting counts
  (warm-up accounting, as AWS target tracking does): there is no scale-up cooldown.
- Shrink only to what keeps the utilisation at or below `scale_down_target`, and only as far as every such
  need within `stabilisation_window` allows (Kubernetes' scale-down stabilisation): a dip does not shrink
  what the next peak needs, and noise around a unit's boundary does not flap.
- Each change stays within the blast radius of the capacity in service (both ways; HPA's default rate is
  double or +4 pods), so the policy never needs a person; a larger change asked for by a person does
  (`approval_needed`).
- With `min_capacity` 0, a resource without demand for `idle_window` goes to zero, and the first demand
  (a backlog) brings it back (KEDA's rule for a worker pool).

The same functions run in the autopilot (Analyze), the `ScalerWorkflow` (approval) and bench/scaling.py,
which replays load traces through them; bench/scaling_choose.py chose the defaults leave-one-trace-out.
Round 1's sizing (thresholds on utilisation, cooldown) went in release 29; its rule for approving a growth,
which the scaler still uses, is in autarky.scaling.policy_round1.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from autarky.scaling.policy_types import (
    Capacity,
    LoadSample,
    Recommendation,
    Recommended,
    Rise,
    Rising,
    ScalingMemory,
    ScalingPolicy,
)

EPSILON = 1e-9
# Readings missing for longer than this (and than the windows) are a gap: start watching afresh. Not
# shorter: a stabilisation window below the sampling interval must not read every interval as a gap.
MIN_GAP = timedelta(minutes=10)


def clamp(policy: ScalingPolicy, capacity: int) -> int:
    return max(policy.min_capacity, min(policy.max_capacity, capacity))


def cooldown_remaining(policy: ScalingPolicy, last_event_at: datetime | None, now: datetime) -> timedelta:
    if last_event_at is None:
        return timedelta(0)
    return max(timedelta(0), last_event_at + policy.cooldown - now)


def blast_radius(policy: ScalingPolicy, base: int, *, shrinking: bool = False) -> int:
    """How many units a change from `base` may add (or remove) without a person: a share of `base`, or
    `blast_radius_units`, whichever is more. Shrinking is its mirror image: undoing a growth by the blast
    radius (100 %: double, or halve) is as routine as the growth."""
    share = policy.blast_radius / (1 + policy.blast_radius) if shrinking else policy.blast_radius
    # From (or down to) nothing, one unit is routine whatever the units setting: 0 → 1, 1 → 0.
    return max(policy.blast_radius_units, math.floor(share * base + EPSILON), 1 if base <= 1 else 0)


def approval_needed(policy: ScalingPolicy, current: int, desired: int) -> str | None:
    """Why a change from `current` to `desired` needs a person's approval, or None."""
    change = abs(desired - current)
    if change > blast_radius(policy, current, shrinking=desired < current):
        verb = "grows" if desired > current else "shrinks"
        return (
            f"{current} → {desired} {verb} capacity by {change} units, more than the blast radius "
            f"(+{policy.blast_radius:.0%} or -{policy.blast_radius / (1 + policy.blast_radius):.0%} of "
            f"{current}, or {policy.blast_radius_units} units)"
        )
    if (
        desired > current
        and policy.unit_cost_per_hour is not None
        and policy.cost_ceiling_per_hour is not None
    ):
        cost = desired * policy.unit_cost_per_hour
        if cost > policy.cost_ceiling_per_hour:
            ceiling = policy.cost_ceiling_per_hour
            return f"{desired} units cost {cost:.2f}/h, above the ceiling of {ceiling:.2f}/h"
    return None


def record_event(memory: ScalingMemory, at: datetime) -> None:
    """A change of capacity happened (the scaler's cooldown, if any, starts now)."""
    memory.last_scaled_at = at


def demand_of(sample: LoadSample, capacity: Capacity) -> float | None:
    if sample.demand is not None:
        return sample.demand
    if sample.utilisation is None or capacity.in_service == 0:
        return None
    return sample.utilisation * capacity.in_service


def expected_rise(policy: ScalingPolicy, memory: ScalingMemory, at: datetime, demand: float) -> float:
    """Remember this reading and return the rise of demand expected within one warm-up (never below 0)."""
    open_, closed = [], []
    for r in memory.rising:
        if at - r.at <= policy.warmup:
            r.peak = demand if r.peak is None else max(r.peak, demand)
        (closed if at - r.at >= policy.warmup else open_).append(r)
    for r in closed:
        memory.rises.append(Rise.model_construct(at=r.at, size=0.0 if r.peak is None else r.peak - r.demand))
    memory.rising = [*open_, Rising.model_construct(at=at, demand=demand, peak=None)]
    start = at - policy.rise_history
    expired = 0
    while expired < len(memory.rises) and memory.rises[expired].at < start:  # oldest first
        expired += 1
    del memory.rises[:expired]
    if not memory.rises:
        return 0.0
    sizes = sorted(r.size for r in memory.rises)
    index = min(len(sizes) - 1, max(0, math.ceil(policy.headroom_quantile * len(sizes)) - 1))
    return max(0.0, sizes[index])


def units_for(demand: float, utilisation: float) -> int:
    return max(0, math.ceil(demand / utilisation - EPSILON))


def recommend(
    policy: ScalingPolicy, capacity: Capacity, sample: LoadSample, memory: ScalingMemory
) -> Recommendation:
    """The capacity this sample calls for. Updates `memory` (rises, stabilisation window, idle time)."""
    current, in_service, at = capacity.desired, capacity.in_service, sample.at
    demand = demand_of(sample, capacity)

    def result(desired: int, why: str) -> Recommendation:
        return Recommendation(current=current, desired=desired, reason=why, demand=demand)

    if current < policy.min_capacity:
        return result(policy.min_capacity, f"below the minimum of {policy.min_capacity}")
    if current > policy.max_capacity:
        return result(policy.max_capacity, f"above the maximum of {policy.max_capacity}")
    if demand is None:
        return result(current, "demand unknown (no utilisation reading and nothing in service)")

    window = policy.stabilisation_window
    last = memory.recommendations[-1].at if memory.recommendations else None
    if memory.observed_since is None or (
        last is not None and at - last > max(window, policy.warmup, MIN_GAP)
    ):
        memory.observed_since = at  # a fresh start, or a gap: the window has seen nothing yet
        memory.rising, memory.rises, memory.idle_since = [], [], None
    rise = expected_rise(policy, memory, at, demand)
    backlog = bool(sample.backlog)
    idle = demand <= EPSILON and not backlog
    memory.idle_since = (memory.idle_since or at) if idle else None
    # A resource that may go to zero keeps one unit until it has been idle for the idle window.
    lowest = policy.min_capacity
    if lowest == 0 and not (idle and at - memory.idle_since >= policy.idle_window):
        lowest = 1 if current > 0 or not idle else 0
    need_up = max(lowest, units_for(demand + rise, policy.target_utilisation))
    need_down = clamp(policy, max(lowest, units_for(demand + rise, policy.scale_down_target)))
    memory.recommendations = [r for r in memory.recommendations if r.at > at - window]
    memory.recommendations.append(Recommended.model_construct(at=at, capacity=need_down))
    seen = f"demand {demand:.2f} units" + (f" + expected rise {rise:.2f}" if rise else "")

    backlog_old = (
        sample.backlog_age_seconds is not None
        and sample.backlog_age_seconds > policy.backlog_age_limit.total_seconds()
    )
    if backlog_old and current == in_service and need_up <= current:
        # Work waits longer than it should while every unit serves: one more, whatever the demand reads.
        need_up = current + 1
        seen = f"backlog waited {sample.backlog_age_seconds:.0f} s (limit {policy.backlog_age_limit})"
    if need_up > current:
        limit = in_service + blast_radius(policy, in_service)
        desired = clamp(policy, min(need_up, limit))
        why = f"{seen} needs {need_up} at {policy.target_utilisation:.0%}"
        if current > in_service:
            why += f" (counting {current - in_service} starting)"
        bound = "the maximum" if desired == policy.max_capacity else "the blast radius of what serves"
        if desired <= current:
            return result(current, f"{why}, but held at {current} by {bound}")
        if desired < need_up:
            why += f"; {desired} is as far as {bound} allows"
        return result(desired, why)
    if lowest == 0 and idle and current > 0:
        # Idle for the whole idle window: that is the stabilisation for going to zero.
        desired = max(0, current - blast_radius(policy, current, shrinking=True))
        return result(
            desired, f"no demand for {policy.idle_window} (idle since {memory.idle_since:%H:%M:%S})"
        )
    stable = max(need_up, max(r.capacity for r in memory.recommendations))
    if stable >= current:
        starting = f" (counting {current - in_service} starting)" if current > in_service else ""
        return result(current, f"{seen} fits {current} units{starting}")
    why = f"{seen} fits {stable} at {policy.scale_down_target:.0%}"
    if at - memory.observed_since < window:
        return result(
            current, f"{why}; waits until the load was seen for a whole stabilisation window ({window})"
        )
    desired = clamp(policy, max(stable, current - blast_radius(policy, current, shrinking=True)))
    if stable > need_down:
        why += f"; held at {stable} by the stabilisation window ({window})"
    return result(desired, why)
