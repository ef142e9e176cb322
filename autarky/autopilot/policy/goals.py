"""Goals the autopilot works towards, and how far along each is (pure code)."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from autarky.autopilot.settings import ThresholdRules
from autarky.autopilot.types import Goal, MetricPoint


def goal_targets(rules: ThresholdRules) -> list[tuple[str, float, str]]:
    """(metric, target, direction): stay below each threshold rule."""
    return [
        ("cpu_percent", rules.cpu_percent, "below"),
        ("memory_percent", rules.memory_percent, "below"),
        ("disk_percent", rules.disk_percent, "below"),
        ("network_latency_ms", rules.network_latency_ms, "below"),
    ]


def progress(current: float | None, target: float, direction: str) -> float:
    """1.0 when the goal is met; otherwise how close, as target/current (or current/target for above)."""
    if current is None:
        return 0.0
    if direction == "below":
        return 1.0 if current <= target else max(0.0, target / current)
    return 1.0 if current >= target else max(0.0, current / target) if target else 1.0


def evaluate_goals(window: Sequence[MetricPoint], rules: ThresholdRules) -> list[Goal]:
    """Each goal's current value is the mean over the rules' window, as the rules see it: one spike (or
    the first sample after a start) does not make a goal missed."""
    recent = list(window)[-rules.window :]
    goals = []
    for metric, target, direction in goal_targets(rules):
        values = [v for v in (getattr(p, metric) for p in recent) if v is not None]
        current = round(fmean(values), 3) if values else None
        p = progress(current, target, direction)
        goals.append(
            Goal(
                metric=metric,
                target=target,
                direction=direction,
                current=current,
                achieved=p >= 1.0,
                progress=round(p, 4),
            )
        )
    return goals
