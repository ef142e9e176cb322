"""The risk-aware decision engine: pure code, no I/O.

For each candidate action:
    success probability p  = posterior mean of a Beta prior updated by past outcomes of its type
    expected value      EV = expected improvement × p
    score                  = EV − risk_weight × risk
    execute                iff EV ≥ min_expected_value, risk ≤ max_risk and score > 0
    needs approval         iff priority is critical or risk > approval_risk_threshold
Candidates are ordered by priority (critical first), then expected improvement (higher first), then
risk (lower first), then success probability (higher first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from autarky.config import DecisionThresholds
from autarky.types import ActionTypeStats, CandidateAction, Decision, Priority

PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
DEFAULT_PRIOR = 0.5


def success_probability(
    stats: ActionTypeStats | None, prior: float = DEFAULT_PRIOR, prior_strength: float = 2.0
) -> float:
    """Posterior mean of Beta(prior·k + successes, (1−prior)·k + failures), k = prior_strength."""
    successes = stats.successes if stats else 0
    attempts = stats.attempts if stats else 0
    return (prior * prior_strength + successes) / (prior_strength + attempts)


def record_outcome(stats: ActionTypeStats | None, success: bool, improvement: float) -> ActionTypeStats:
    """The knowledge after one more outcome (returns a new object; the input is not changed)."""
    base = stats or ActionTypeStats()
    return ActionTypeStats(
        attempts=base.attempts + 1,
        successes=base.successes + (1 if success else 0),
        total_improvement=base.total_improvement + improvement,
    )


def evaluate(
    candidate: CandidateAction,
    stats: ActionTypeStats | None,
    thresholds: DecisionThresholds,
    prior: float = DEFAULT_PRIOR,
) -> Decision:
    p = success_probability(stats, prior, thresholds.prior_strength)
    expected_value = candidate.expected_improvement * p
    score = expected_value - thresholds.risk_weight * candidate.risk
    refusals = []
    if expected_value < thresholds.min_expected_value:
        refusals.append(f"expected value {expected_value:.3f} < {thresholds.min_expected_value}")
    if candidate.risk > thresholds.max_risk:
        refusals.append(f"risk {candidate.risk:.2f} > {thresholds.max_risk}")
    if score <= 0:
        refusals.append(f"score {score:.3f} ≤ 0")
    needs_approval = (
        candidate.priority == Priority.CRITICAL or candidate.risk > thresholds.approval_risk_threshold
    )
    if refusals:
        why = "not worth it: " + ", ".join(refusals)
    else:
        why = f"EV {expected_value:.3f} (p={p:.2f}), score {score:.3f}"
        if needs_approval:
            why += (
                "; critical priority"
                if candidate.priority == Priority.CRITICAL
                else f"; risk {candidate.risk:.2f} > approval threshold {thresholds.approval_risk_threshold}"
            )
    return Decision(
        candidate=candidate,
        success_probability=p,
        expected_value=expected_value,
        score=score,
        execute=not refusals,
        needs_approval=needs_approval and not refusals,
        why=why,
    )


def order_key(decision: Decision) -> tuple[int, float, float, float]:
    c = decision.candidate
    return (PRIORITY_RANK[c.priority], -c.expected_improvement, c.risk, -decision.success_probability)


def plan(
    candidates: Iterable[CandidateAction],
    knowledge: Mapping[str, ActionTypeStats],
    thresholds: DecisionThresholds,
    priors: Mapping[str, float] | None = None,
) -> list[Decision]:
    """Evaluate every candidate and return the decisions in execution order (refused ones included)."""
    priors = priors or {}
    decisions = [
        evaluate(c, knowledge.get(c.action_type), thresholds, priors.get(c.action_type, DEFAULT_PRIOR))
        for c in candidates
    ]
    return sorted(decisions, key=order_key)
