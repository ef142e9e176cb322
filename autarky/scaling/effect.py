"""Did a change of capacity help? (pure code) The scaling request compares the load some time after a
change with the load that asked for it, and the autopilot learns from the answer like from any action's.

- A growth helped when the work that waited no longer waits too long (the backlog's age within the policy's
  `backlog_age_limit`) or the backlog at least halved; its improvement is how much the wait shrank.
- A shrink helped when it did no harm: the work still does not wait too long; its improvement is the share
  of capacity saved.
A change that did not help counts as a failure: the decision engine trusts that action less next time.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from autarky.scaling.policy_types import ScalingPolicy

BACKLOG = "backlog"
BACKLOG_AGE = "backlog_age_seconds"


class QueueLoad(BaseModel):
    """The work waiting for a pool: tasks in its queue and how long the oldest has waited."""

    backlog: int = Field(ge=0)
    backlog_age_seconds: float = Field(ge=0)


class Effect(BaseModel):
    helped: bool
    improvement: float | None  # None: nothing to measure (no wait before a growth)
    detail: str


def judge_effect(
    policy: ScalingPolicy, previous: int, target: int, before: QueueLoad, after: QueueLoad
) -> Effect:
    limit = policy.backlog_age_limit.total_seconds()
    waits = f"backlog {before.backlog} → {after.backlog}, oldest waited {before.backlog_age_seconds:.0f} s → "
    waits += f"{after.backlog_age_seconds:.0f} s (limit {limit:.0f} s)"
    within = after.backlog_age_seconds <= limit
    if target > previous:
        drained = after.backlog * 2 <= before.backlog and before.backlog > 0
        improvement = None
        if before.backlog_age_seconds > 0:
            improvement = max(0.0, 1 - after.backlog_age_seconds / before.backlog_age_seconds)
        helped = within or drained
        verdict = "helped" if helped else "did not help: the work still waits"
        return Effect(
            helped=helped, improvement=improvement, detail=f"{previous} → {target} {verdict}: {waits}"
        )
    saved = (previous - target) / previous if previous else 0.0
    verdict = "did no harm" if within else "hurt: work waits too long since"
    return Effect(
        helped=within,
        improvement=saved if within else None,
        detail=f"{previous} → {target} {verdict}: {waits}",
    )
