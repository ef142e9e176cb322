"""The scaling policy (pure code): how much capacity a resource should have, and when a change needs a person.

- Above `scale_up_utilisation` (or with a backlog older than `backlog_age_limit`) add 1 unit, or up to
  `max_step_up` when one unit would still leave the resource above the threshold.
- Below `scale_down_utilisation` (and no backlog) remove `step_down` units, but only as far as keeps the
  utilisation at or below `scale_up_utilisation` (a change never calls for its own reversal), and never
  below the highest capacity recommended within the stabilisation window (as Kubernetes' HPA does): the
  signal must have stayed low for the whole window, and a dip does not shrink what the next peak needs.
- Nothing changes within `cooldown` of the last event, and the result stays within the bounds (a
  resource outside them is brought back at once, cooldown or not).

The same functions run in the autopilot (Analyze), the `ScalerWorkflow` (validation) and bench/scaling.py,
which replays load traces through them and chose the defaults (see ScalingPolicy).
"""

from __future__ import annotations

import math
from datetime import timedelta

from autarky.scaling.policy import clamp, cooldown_remaining, record_event  # shared with round 2
from autarky.scaling.policy_types import LoadSample, Recommendation, Recommended, ScalingMemory, ScalingPolicy

__all__ = ["approval_needed", "clamp", "cooldown_remaining", "recommend", "record_event"]


def recommend(
    policy: ScalingPolicy, current: int, sample: LoadSample, memory: ScalingMemory
) -> Recommendation:
    """The capacity this sample calls for. Updates `memory` (the stabilisation window)."""
    raw, why = _raw_recommendation(policy, current, sample)
    window = policy.stabilisation_window
    window_start = sample.at - window
    last = memory.recommendations[-1].at if memory.recommendations else None
    if memory.observed_since is None or (last is not None and sample.at - last > window):
        memory.observed_since = sample.at  # a fresh start, or a gap: the window has seen nothing yet
    memory.recommendations = [r for r in memory.recommendations if r.at >= window_start]
    memory.recommendations.append(Recommended(at=sample.at, capacity=raw))
    desired = raw
    if raw < current <= policy.max_capacity:
        # Scale down by at most step_down, and only as far as every recommendation in the window allows;
        # a window not yet seen in full (just started, or after a gap) allows nothing.
        stable = max(r.capacity for r in memory.recommendations)
        desired = min(current, max(stable, current - policy.step_down))
        if sample.at - memory.observed_since < window:
            desired = current
            why += f"; waits until the load was seen for a whole stabilisation window ({window})"
        elif desired == stable > raw:
            why += f"; held at {desired} by the stabilisation window ({window})"
    if desired != current and policy.min_capacity <= current <= policy.max_capacity:  # bounds don't wait
        remaining = cooldown_remaining(policy, memory.last_scaled_at, sample.at)
        if remaining > timedelta(0):
            return Recommendation(
                current=current,
                desired=current,
                reason=f"{why}; but the last change was under {policy.cooldown} ago "
                f"({remaining.total_seconds():.0f} s of cooldown left)",
            )
    return Recommendation(current=current, desired=desired, reason=why)


def approval_needed(policy: ScalingPolicy, current: int, desired: int) -> str | None:
    """Why a change from `current` to `desired` needs a person's approval, or None."""
    if desired <= current:
        return None
    growth = desired - current
    if growth > max(policy.blast_radius * max(current, 1), policy.blast_radius_units):
        return (
            f"{current} → {desired} grows capacity by {growth} units, more than the blast radius "
            f"(+{policy.blast_radius:.0%} of {current})"
        )
    if policy.unit_cost_per_hour is not None and policy.cost_ceiling_per_hour is not None:
        cost = desired * policy.unit_cost_per_hour
        if cost > policy.cost_ceiling_per_hour:
            ceiling = policy.cost_ceiling_per_hour
            return f"{desired} units cost {cost:.2f}/h, above the ceiling of {ceiling:.2f}/h"
    return None


def _raw_recommendation(policy: ScalingPolicy, current: int, sample: LoadSample) -> tuple[int, str]:
    utilisation = sample.utilisation
    backlog_old = (
        sample.backlog_age_seconds is not None
        and sample.backlog_age_seconds > policy.backlog_age_limit.total_seconds()
    )
    if current < policy.min_capacity:
        return policy.min_capacity, f"below the minimum of {policy.min_capacity}"
    if current > policy.max_capacity:
        return policy.max_capacity, f"above the maximum of {policy.max_capacity}"
    if backlog_old or (utilisation is not None and utilisation > policy.scale_up_utilisation):
        step = 1
        if utilisation is not None and current > 0:
            # Units needed to bring utilisation back under the threshold, at most max_step_up.
            needed = math.ceil(current * utilisation / policy.scale_up_utilisation) - current
            step = max(1, min(policy.max_step_up, needed))
        desired = clamp(policy, current + step)
        why = (
            f"backlog waited {sample.backlog_age_seconds:.0f} s (limit {policy.backlog_age_limit})"
            if backlog_old
            else f"utilisation {utilisation:.0%} above {policy.scale_up_utilisation:.0%}"
        )
        if desired == current:
            why += f", but already at the maximum of {policy.max_capacity}"
        return desired, why
    if (
        utilisation is not None
        and utilisation < policy.scale_down_utilisation
        and not sample.backlog
        and current > policy.min_capacity
    ):
        # The fewest units that keep the utilisation at or below the scale-up threshold: shrinking further
        # would call for growing again. The window remembers this, and recommend() steps by step_down.
        fewest = clamp(policy, math.ceil(current * utilisation / policy.scale_up_utilisation - 1e-9))
        why = f"utilisation {utilisation:.0%} below {policy.scale_down_utilisation:.0%}"
        if fewest >= current:
            return (
                current,
                f"{why}, but {current - 1} units would run above {policy.scale_up_utilisation:.0%}",
            )
        return fewest, why
    shown = "unknown" if utilisation is None else f"{utilisation:.0%}"
    return current, f"utilisation {shown} within the band"
