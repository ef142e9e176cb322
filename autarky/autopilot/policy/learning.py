"""What the autopilot learns from outcomes: pure code, no I/O.

Per action type it keeps decayed evidence (`ActionTypeStats`):
- each outcome counts with weight 2^(−age / half-life), so a change in an action's behaviour shows
  within a few half-lives instead of being outvoted by months of old outcomes;
- success probability  p = (prior · k + S) / (k + N), S and N the decayed successes and attempts,
  k = `prior_strength` (a Beta prior of k pseudo-observations);
- expected improvement ê = (playbook figure · m + I) / (m + M), I the decayed sum of improvements
  measured on successes and M their decayed count, m = `improvement_prior_strength`: with little
  evidence ê stays near the playbook's figure, with much it is what the action really achieves.
The decision engine uses EV = ê × p. An action that measures nothing (a notification) teaches success
only; an action with nothing to do (an empty pool) teaches nothing and is not recorded here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from autarky.autopilot.types import ActionTypeStats


def decay_factor(since: datetime | None, now: datetime, half_life: timedelta) -> float:
    """How much evidence last updated at `since` still counts at `now` (1 when `since` is None or later)."""
    if since is None or now <= since:
        return 1.0
    return 0.5 ** ((now - since) / half_life)


def as_of(stats: ActionTypeStats | None, now: datetime, half_life: timedelta) -> ActionTypeStats:
    """The evidence decayed to `now` (a new object). Stats from before decay existed start undecayed."""
    base = stats or ActionTypeStats()
    if base.updated_at is None and base.weight == 0 and base.attempts:
        # Carried over from the counting-only model: its counts are the evidence, as of now.
        base = base.model_copy(update={"weight": float(base.attempts), "weighted_successes": base.successes})
    f = decay_factor(base.updated_at, now, half_life)
    return base.model_copy(
        update={
            "weight": base.weight * f,
            "weighted_successes": base.weighted_successes * f,
            "improvement_weight": base.improvement_weight * f,
            "weighted_improvement": base.weighted_improvement * f,
            "updated_at": max(now, base.updated_at) if base.updated_at else now,
        }
    )


def record(
    stats: ActionTypeStats | None,
    now: datetime,
    half_life: timedelta,
    success: bool,
    improvement: float | None,
) -> ActionTypeStats:
    """The knowledge after one more outcome; `improvement` None means the action measured none."""
    current = as_of(stats, now, half_life)
    measured = success and improvement is not None
    return current.model_copy(
        update={
            "attempts": current.attempts + 1,
            "successes": current.successes + (1 if success else 0),
            "total_improvement": current.total_improvement + (improvement or 0.0),
            "weight": current.weight + 1.0,
            "weighted_successes": current.weighted_successes + (1.0 if success else 0.0),
            "improvement_weight": current.improvement_weight + (1.0 if measured else 0.0),
            "weighted_improvement": current.weighted_improvement
            + ((improvement or 0.0) if measured else 0.0),
        }
    )


def success_probability(
    stats: ActionTypeStats | None, prior: float, prior_strength: float, now: datetime, half_life: timedelta
) -> float:
    current = as_of(stats, now, half_life)
    return (prior * prior_strength + current.weighted_successes) / (prior_strength + current.weight)


def expected_improvement(
    stats: ActionTypeStats | None,
    playbook_figure: float,
    prior_strength: float,
    now: datetime,
    half_life: timedelta,
) -> float:
    current = as_of(stats, now, half_life)
    return (playbook_figure * prior_strength + current.weighted_improvement) / (
        prior_strength + current.improvement_weight
    )
