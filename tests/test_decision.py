"""The decision engine's formula and ordering, as properties (hypothesis) and worked examples."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autarky.autopilot.policy import learning
from autarky.autopilot.policy.decision import PRIORITY_RANK, evaluate, plan
from autarky.autopilot.settings import DecisionThresholds
from autarky.autopilot.types import ActionTypeStats, CandidateAction, Priority

THRESHOLDS = DecisionThresholds()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HALF_LIFE = THRESHOLDS.evidence_half_life
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
priorities = st.sampled_from(list(Priority))
stats = st.builds(
    lambda attempts, share: ActionTypeStats(attempts=attempts, successes=int(attempts * share)),
    st.integers(min_value=0, max_value=500),
    unit,
)


def success_probability(seen: ActionTypeStats, prior: float) -> float:
    return learning.success_probability(seen, prior, THRESHOLDS.prior_strength, NOW, HALF_LIFE)


candidates = st.builds(
    CandidateAction,
    action_type=st.sampled_from(["a", "b", "c"]),
    priority=priorities,
    expected_improvement=unit,
    risk=unit,
    reason=st.just("test"),
)


@given(candidates, stats, unit)
def test_formula(candidate: CandidateAction, seen: ActionTypeStats, prior: float) -> None:
    d = evaluate(candidate, seen, THRESHOLDS, prior, NOW)
    p = success_probability(seen, prior)
    assert d.success_probability == pytest.approx(p)
    # Counts with no measured improvement: the playbook's figure is the expected improvement.
    assert d.expected_value == pytest.approx(candidate.expected_improvement * p)
    assert d.score == pytest.approx(d.expected_value - 0.5 * candidate.risk)
    should = d.expected_value >= 0.05 and candidate.risk <= 0.7 and d.score > 0
    assert d.execute == should
    wants_person = candidate.risk > 0.5 or (candidate.priority == Priority.CRITICAL and candidate.risk > 0.3)
    assert d.needs_approval == (should and wants_person)


@given(stats, unit)
def test_success_probability_is_a_probability_between_prior_and_evidence(
    seen: ActionTypeStats, prior: float
) -> None:
    p = success_probability(seen, prior)
    assert 0.0 <= p <= 1.0
    if seen.attempts:
        observed = seen.successes / seen.attempts
        assert min(prior, observed) - 1e-9 <= p <= max(prior, observed) + 1e-9


@given(stats, unit, st.booleans())
def test_an_outcome_moves_the_probability_its_way(seen: ActionTypeStats, prior: float, success: bool) -> None:
    before = success_probability(seen, prior)
    after = success_probability(learning.record(seen, NOW, HALF_LIFE, success, 0.1), prior)
    assert (after >= before - 1e-12) if success else (after <= before + 1e-12)


# Few distinct values, so ties on priority and improvement happen and the later tie-breaks are exercised.
coarse_candidates = st.builds(
    CandidateAction,
    action_type=st.sampled_from(["a", "b", "c"]),
    priority=priorities,
    expected_improvement=st.sampled_from([0.1, 0.3]),
    risk=st.sampled_from([0.0, 0.2]),
    reason=st.just("t"),
)


@given(st.lists(st.one_of(candidates, coarse_candidates), max_size=12))
def test_ordering(cands: list[CandidateAction]) -> None:
    decisions = plan(cands, {}, THRESHOLDS, {"a": 0.9, "b": 0.5, "c": 0.2}, NOW)
    assert len(decisions) == len(cands)
    for first, second in itertools.pairwise(decisions):
        a, b = first.candidate, second.candidate
        key_a = (PRIORITY_RANK[a.priority], -a.expected_improvement, a.risk, -first.success_probability)
        key_b = (PRIORITY_RANK[b.priority], -b.expected_improvement, b.risk, -second.success_probability)
        assert key_a <= key_b


def test_worked_example() -> None:
    # p = (0.8·2 + 3) / (2 + 4) = 4.6 / 6; EV = 0.5 · p; score = EV − 0.5 · 0.2
    seen = ActionTypeStats(attempts=4, successes=3)
    candidate = CandidateAction(
        action_type="a", priority=Priority.HIGH, expected_improvement=0.5, risk=0.2, reason="x"
    )
    d = evaluate(candidate, seen, THRESHOLDS, 0.8, NOW)
    assert d.success_probability == pytest.approx(4.6 / 6)
    assert d.expected_value == pytest.approx(0.5 * 4.6 / 6)
    assert d.score == pytest.approx(0.5 * 4.6 / 6 - 0.1)
    assert d.execute and not d.needs_approval


def test_refusals_name_the_reason() -> None:
    risky = CandidateAction(
        action_type="a", priority=Priority.LOW, expected_improvement=1.0, risk=0.9, reason="x"
    )
    d = evaluate(risky, None, THRESHOLDS, 0.9, NOW)
    assert not d.execute and "risk 0.90 > 0.7" in d.why
    tiny = CandidateAction(
        action_type="a", priority=Priority.LOW, expected_improvement=0.04, risk=0.0, reason="x"
    )
    assert "expected value" in evaluate(tiny, None, THRESHOLDS, 1.0, NOW).why


def test_urgency_orders_and_only_risk_asks_a_person() -> None:
    def c(risk: float) -> CandidateAction:
        return CandidateAction(
            action_type="a", priority=Priority.CRITICAL, expected_improvement=0.5, risk=risk, reason="x"
        )

    assert not evaluate(c(0.0), None, THRESHOLDS, 0.9, NOW).needs_approval
    d = evaluate(c(0.35), None, THRESHOLDS, 0.9, NOW)
    assert d.execute and d.needs_approval and "critical" in d.why


def test_tie_breaks_risk_then_success_rate() -> None:
    def c(action_type: str, risk: float) -> CandidateAction:
        return CandidateAction(
            action_type=action_type, priority=Priority.HIGH, expected_improvement=0.5, risk=risk, reason="x"
        )

    order = plan(
        [c("a", 0.2), c("b", 0.1), c("c", 0.1)], {}, THRESHOLDS, {"a": 0.99, "b": 0.6, "c": 0.9}, NOW
    )
    assert [d.candidate.action_type for d in order] == ["c", "b", "a"]
