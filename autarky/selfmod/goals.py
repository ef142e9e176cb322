"""When an agent is worth evolving (pure code, no I/O): the autopilot's goal check asks it for each agent.

An evolution costs a look at the decision part (each look makes the next one stricter: policy.look_confidence)
and sandbox hours, so it starts only when there is reason to expect a promotion:

- the agent is short of its goal by at least the bar: the bar is the smallest gain the comparison can
  tell from luck, so a goal closer than that is met by no promotion that means it, and a bar that overshoots
  the goal asks for more than the goal does (+15 % of 86.4 % accuracy needs 99.4 % against a goal of 90 %).
  Nor may the bar pass the best figure the metric can take.
- the last honest failures were not just repeated: after k evolutions in a row that promoted nothing, the
  next waits 2^k cooldowns (at most 2^MAX_DOUBLINGS), so a goal out of reach costs a run every few months,
  not every week. New data (a data version the decision part has not been read on) starts the count again.

A person (`autarky evolve`) or an approved experiment may start an evolution whatever this says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from autarky.selfmod.policy import better
from autarky.selfmod.types import AgentSpec

MAX_DOUBLINGS = 4  # a weekly cooldown backs off to 16 weeks at most


@dataclass(frozen=True)
class EvolutionDue:
    due: bool
    reason: str


def bar_figure(spec: AgentSpec, figure: float) -> float:
    """The figure a promotion from `figure` must reach (its estimate: autarky.selfmod.policy.clears_bar)."""
    sign = 1.0 if spec.direction == "max" else -1.0
    if spec.improvement == "absolute":
        return figure + sign * spec.threshold
    return figure + sign * abs(figure) * spec.threshold


def goal_reachable(spec: AgentSpec, figure: float) -> bool:
    """Whether the agent's goal is at least one bar away from `figure`, and the bar within the metric's
    best value (see the module)."""
    if spec.goal is None:
        return False
    needed = bar_figure(spec, figure)
    within = spec.best_possible is None or not better(needed, spec.best_possible, spec.direction)
    return within and not better(needed, spec.goal, spec.direction)


def backoff(cooldown: timedelta, failures: int) -> timedelta:
    """The wait after `failures` evolutions in a row that promoted nothing."""
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures!r}")
    return cooldown * 2 ** min(failures, MAX_DOUBLINGS)


def evolution_due(
    spec: AgentSpec,
    figure: float,
    *,
    failures: int,
    last_run: datetime | None,
    now: datetime,
    cooldown: timedelta,
    new_data: bool,
) -> EvolutionDue:
    """Whether the goal check should propose evolving `spec`'s agent, whose active version scores `figure`
    on the decision part; `failures`: its latest evolutions in a row that promoted nothing, the last one
    started at `last_run`; `new_data`: the decision part changed since they looked at it."""
    if spec.goal is None:
        return EvolutionDue(False, "it has no goal")
    if not better(spec.goal, figure, spec.direction):
        return EvolutionDue(False, f"it meets its goal ({figure:.2f}, goal {spec.goal:g})")
    if not goal_reachable(spec, figure):
        bar = f"+{spec.threshold:g} points" if spec.improvement == "absolute" else f"+{spec.threshold:.0%}"
        return EvolutionDue(
            False,
            f"its goal {spec.goal:g} is within one bar of {figure:.2f}: a promotion needs "
            f"{bar_figure(spec, figure):.2f} ({bar})",
        )
    counted = 0 if new_data else failures
    wait = backoff(cooldown, counted)
    if last_run is not None and now < last_run + wait:
        why = f"{counted} evolution(s) in a row promoted nothing" if counted else "it was evolved recently"
        return EvolutionDue(False, f"{why}: the next is due after {last_run + wait:%Y-%m-%d %H:%M}")
    return EvolutionDue(True, f"short of its goal ({figure:.2f}, goal {spec.goal:g})")
