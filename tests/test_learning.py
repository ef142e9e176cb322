"""The learning model (autarky.autopilot.policy.learning) and how the engine uses it, as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autarky.autopilot.policy import learning
from autarky.autopilot.policy.decision import evaluate
from autarky.autopilot.settings import DecisionThresholds
from autarky.autopilot.types import ActionTypeStats, CandidateAction, Priority

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HALF_LIFE = timedelta(days=3)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
outcome = st.tuples(st.booleans(), st.one_of(st.none(), unit), st.floats(min_value=0, max_value=30 * 86400))
histories = st.lists(outcome, max_size=40)


def replay(history: list[tuple[bool, float | None, float]]) -> tuple[ActionTypeStats | None, datetime]:
    """Outcomes recorded at increasing times (each after a gap in seconds); returns stats and the time."""
    stats, now = None, T0
    for success, improvement, gap in history:
        now += timedelta(seconds=gap)
        stats = learning.record(stats, now, HALF_LIFE, success, improvement)
    return stats, now


@given(histories, unit, unit)
def test_estimates_stay_between_the_prior_and_the_evidence(history, prior: float, figure: float) -> None:
    stats, now = replay(history)
    p = learning.success_probability(stats, prior, 2.0, now, HALF_LIFE)
    e = learning.expected_improvement(stats, figure, 2.0, now, HALF_LIFE)
    assert 0.0 <= p <= 1.0 and 0.0 <= e <= 1.0
    if stats is not None and stats.weight > 0:
        observed = stats.weighted_successes / stats.weight
        assert min(prior, observed) - 1e-9 <= p <= max(prior, observed) + 1e-9
    if stats is not None and stats.improvement_weight > 0:
        mean = stats.weighted_improvement / stats.improvement_weight
        assert min(figure, mean) - 1e-9 <= e <= max(figure, mean) + 1e-9


@given(histories, st.floats(min_value=0, max_value=60 * 86400))
def test_evidence_fades_by_half_each_half_life_and_never_grows_on_its_own(history, wait: float) -> None:
    stats, now = replay(history)
    later = learning.as_of(stats, now + timedelta(seconds=wait), HALF_LIFE)
    current = learning.as_of(stats, now, HALF_LIFE)
    factor = 0.5 ** (wait / HALF_LIFE.total_seconds())
    assert later.weight == pytest.approx(current.weight * factor, abs=1e-9)
    assert later.weighted_improvement == pytest.approx(current.weighted_improvement * factor, abs=1e-9)
    assert later.attempts == current.attempts  # the raw counts, for people, do not fade


@given(histories, unit, unit)
def test_with_no_fresh_evidence_estimates_drift_back_to_the_prior(
    history, prior: float, figure: float
) -> None:
    stats, now = replay(history)
    far = now + HALF_LIFE * 60
    assert learning.success_probability(stats, prior, 2.0, far, HALF_LIFE) == pytest.approx(prior, abs=1e-6)
    assert learning.expected_improvement(stats, figure, 2.0, far, HALF_LIFE) == pytest.approx(
        figure, abs=1e-6
    )


@given(histories, st.booleans(), unit)
def test_an_outcome_moves_the_estimates_its_way(history, success: bool, improvement: float) -> None:
    stats, now = replay(history)
    p_before = learning.success_probability(stats, 0.8, 2.0, now, HALF_LIFE)
    e_before = learning.expected_improvement(stats, 0.4, 2.0, now, HALF_LIFE)
    after = learning.record(stats, now, HALF_LIFE, success, improvement)
    p_after = learning.success_probability(after, 0.8, 2.0, now, HALF_LIFE)
    e_after = learning.expected_improvement(after, 0.4, 2.0, now, HALF_LIFE)
    assert (p_after >= p_before - 1e-12) if success else (p_after <= p_before + 1e-12)
    if success:  # the improvement moves toward what was measured
        assert abs(e_after - improvement) <= abs(e_before - improvement) + 1e-12
    else:  # a failure measures no improvement
        assert e_after == pytest.approx(e_before)


def test_a_restart_that_frees_nothing_loses_its_value_and_a_recent_change_shows_within_days() -> None:
    stats = None
    for day in range(30):  # a month of restarts that free 40 % of the pool's memory
        stats = learning.record(stats, T0 + timedelta(days=day), HALF_LIFE, True, 0.4)
    month = T0 + timedelta(days=30)
    assert learning.expected_improvement(stats, 0.4, 2.0, month, HALF_LIFE) == pytest.approx(0.4)
    for day in range(30, 36):  # then they succeed but free nothing (e.g. the leak moved elsewhere)
        stats = learning.record(stats, T0 + timedelta(days=day), HALF_LIFE, True, 0.0)
    later = learning.expected_improvement(stats, 0.4, 2.0, T0 + timedelta(days=36), HALF_LIFE)
    assert later < 0.21  # six days (two half-lives) on, the learned figure has about halved
    counting_only = stats.total_improvement / stats.attempts  # what plain averages would still say
    assert counting_only > 0.3


def test_notifications_teach_success_but_not_improvement() -> None:
    stats = learning.record(None, T0, HALF_LIFE, True, None)
    assert stats.weighted_successes == 1 and stats.improvement_weight == 0
    assert learning.expected_improvement(stats, 0.1, 2.0, T0, HALF_LIFE) == pytest.approx(0.1)


def test_counts_from_before_decay_are_read_as_evidence() -> None:
    old = ActionTypeStats(attempts=10, successes=2, total_improvement=0.5)
    p = learning.success_probability(old, 0.9, 2.0, T0, HALF_LIFE)
    assert p == pytest.approx((0.9 * 2 + 2) / (2 + 10))


candidates = st.builds(
    CandidateAction,
    action_type=st.just("a"),
    priority=st.sampled_from(list(Priority)),
    expected_improvement=unit,
    risk=unit,
    reason=st.just("test"),
)


@given(candidates, histories)
def test_the_engine_uses_learned_figures_and_only_risk_asks_a_person(candidate, history) -> None:
    thresholds = DecisionThresholds()
    stats, now = replay(history)
    d = evaluate(candidate, stats, thresholds, 0.7, now)
    p = learning.success_probability(stats, 0.7, thresholds.prior_strength, now, HALF_LIFE)
    e = learning.expected_improvement(stats, candidate.expected_improvement, 2.0, now, HALF_LIFE)
    assert d.expected_value == pytest.approx(p * e) and d.improvement == pytest.approx(e)
    risky = candidate.risk > thresholds.approval_risk_threshold
    risky_and_critical = (
        candidate.priority == Priority.CRITICAL
        and candidate.risk > thresholds.critical_approval_risk_threshold
    )
    assert d.needs_approval == (d.execute and (risky or risky_and_critical))
