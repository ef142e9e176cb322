"""The registry's per-arm statistics as the A/B test's pure policies and its status take them, and the
status in words (the UI's current details)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from autarky.models.ab_types import ABTestInput, ABTestState, ABTestStatus, ArmView
from autarky.models.group_sequential import GroupSequentialResult
from autarky.models.guardrails import WindowArm
from autarky.models.sequential import ArmSummary, SequentialResult
from autarky.models.types import ArmStats, SlotInfo, WindowStats


def finite(value: float) -> float | None:
    """None for NaN / ±inf (an arm too small, a control mean of 0): shown as unknown."""
    return value if math.isfinite(value) else None


def arm_summary(arm: ArmStats) -> ArmSummary:
    return ArmSummary(n=arm.metric.n, mean=arm.metric.mean, variance=arm.metric.variance)


def window_arm(arm: WindowStats) -> WindowArm:
    return WindowArm(
        calls=arm.calls,
        errors=arm.errors,
        slow=arm.slow,
        answered=arm.answered,
        cost_sum=arm.cost_sum,
        cost_sumsq=arm.cost_sumsq,
        p95_ms=arm.p95_ms,
        over_p95_limit=arm.over_limit,
    )


def arm_view(arm: ArmStats) -> ArmView:
    return ArmView(
        variant=arm.variant,
        calls=arm.calls,
        samples=arm.metric.n,
        mean=arm.metric.mean if arm.metric.n else None,
        error_rate=arm.error_rate,
        latency_p95_ms=arm.latency_p95_ms,
        cost_per_call=arm.cost_per_call,
    )


def show_result(
    status: ABTestStatus, stats: list[ArmStats], result: SequentialResult | GroupSequentialResult
) -> None:
    status.arms = [arm_view(a) for a in stats]
    # NaN / infinite while an arm is too small or the control mean is 0: shown as unknown.
    status.estimate = finite(result.relative_effect)
    status.lower, status.upper = finite(result.lower), finite(result.upper)
    status.statistic = result.text()


def current_details(status: ABTestStatus) -> str:
    """E.g. "**running** · b vs a on quality (higher is better) · share 50% · a n=812, b n=790 · …"."""
    arms = ", ".join(f"{a.variant} n={a.samples}" for a in status.arms) or "no samples yet"
    state = "paused" if status.paused else status.decision
    return (
        f"**{state}** · {status.challenger} vs {status.incumbent} on {status.metric} "
        f"({status.direction} is better) · share {status.share:.0%} · {arms}"
        + (f" · {status.statistic}" if status.statistic else "")
        + (f" · {status.guardrails}" if status.guardrails else "")
        + (f" · {status.reason}" if status.reason else "")
    )


def challenger_refusal(slot: SlotInfo, challenger: str) -> str | None:
    """Why `challenger` cannot be tested in `slot` (unknown, or already the active variant), else None."""
    names = [v.name for v in slot.variants]
    if challenger not in names:
        return f"slot {slot.name!r} has no variant {challenger!r} (variants: {', '.join(names)})"
    if challenger == slot.active:
        return f"{challenger!r} is already the active variant of {slot.name!r}"
    return None


def paused_so_far(state: ABTestState, now: datetime) -> timedelta:
    """Time paused, the pause going on included: it does not count against max_duration."""
    ongoing = now - state.paused_at if state.paused and state.paused_at else timedelta(0)
    return state.paused_total + ongoing


def deadline_reason(input: ABTestInput, state: ABTestState, samples: int, now: datetime) -> str | None:
    """Why the test is out of time or samples (`samples`: the smaller arm's), checked every period in every
    phase (ramping, paused, testing, awaiting approval); None while it is not."""
    assert state.started_at is not None
    if now - state.started_at - paused_so_far(state, now) >= input.max_duration:
        return f"no decision within {input.max_duration}"
    if samples >= input.max_samples:
        return f"no decision within {input.max_samples} samples per arm"
    if state.paused and state.paused_at is not None and now - state.paused_at >= input.max_pause:
        return f"paused for longer than {input.max_pause}: the challenger does not keep its share"
    return None


def new_status(input: ABTestInput, state: ABTestState, workflow_id: str) -> ABTestStatus:
    """A run's status before its first reading (a continued run starts from its state)."""
    return ABTestStatus(
        workflow_id=workflow_id,
        slot=input.slot,
        incumbent=state.incumbent,
        challenger=input.challenger,
        share=0.0,
        metric=input.metric,
        direction=input.better_direction,
        decision="running",
        paused=state.paused,
    )
