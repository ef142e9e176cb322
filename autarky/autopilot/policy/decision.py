"""The risk-aware decision engine: pure code, no I/O.

For each candidate action:
    success probability p  = posterior mean of a Beta prior updated by decayed outcomes of its type
    expected improvement ê = the playbook's figure, shrunk toward what the type really achieved
                             (both from autarky.autopilot.policy.learning)
    expected value      EV = ê × p
    score                  = EV − risk_weight × risk
    execute                iff EV ≥ min_expected_value, risk ≤ max_risk and score > 0
    needs approval         iff risk > approval_risk_threshold, or the priority is critical and
                           risk > critical_approval_risk_threshold (urgency orders; only risk asks a person)
Candidates are ordered by priority (critical first), then expected improvement (higher first), then
risk (lower first), then success probability (higher first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from autarky.autopilot.policy import learning
from autarky.autopilot.settings import DecisionThresholds
from autarky.autopilot.types import ActionTypeStats, CandidateAction, Decision, Priority

PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
DEFAULT_PRIOR = 0.5


def probability(
    stats: ActionTypeStats | None, prior: float, thresholds: DecisionThresholds, now: datetime
) -> float:
    """The success probability `evaluate` uses: the learnt one, decayed to `now`."""
    return learning.success_probability(
        stats, prior, thresholds.prior_strength, now, thresholds.evidence_half_life
    )


def evaluate(
    candidate: CandidateAction,
    stats: ActionTypeStats | None,
    thresholds: DecisionThresholds,
    prior: float,
    now: datetime,
) -> Decision:
    p = probability(stats, prior, thresholds, now)
    improvement = learning.expected_improvement(
        stats,
        candidate.expected_improvement,
        thresholds.improvement_prior_strength,
        now,
        thresholds.evidence_half_life,
    )
    needs_approval = candidate.risk > thresholds.approval_risk_threshold or (
        candidate.priority == Priority.CRITICAL
        and candidate.risk > thresholds.critical_approval_risk_threshold
    )
    expected_value = improvement * p
    score = expected_value - thresholds.risk_weight * candidate.risk
    refusals = []
    if expected_value < thresholds.min_expected_value:
        refusals.append(f"expected value {expected_value:.3f} < {thresholds.min_expected_value}")
    if candidate.risk > thresholds.max_risk:
        refusals.append(f"risk {candidate.risk:.2f} > {thresholds.max_risk}")
    if score <= 0:
        refusals.append(f"score {score:.3f} ≤ 0")
    if refusals:
        why = "not worth it: " + ", ".join(refusals)
    else:
        why = f"EV {expected_value:.3f} (p={p:.2f}, improvement {improvement:.3f}), score {score:.3f}"
        if needs_approval:
            why += (
                f"; risk {candidate.risk:.2f} > approval threshold {thresholds.approval_risk_threshold}"
                if candidate.risk > thresholds.approval_risk_threshold
                else "; critical priority"
            )
    return Decision(
        candidate=candidate,
        success_probability=p,
        expected_value=expected_value,
        improvement=improvement,
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
    priors: Mapping[str, float] | None,
    now: datetime,
) -> list[Decision]:
    """Evaluate every candidate and return the decisions in execution order (refused ones included)."""
    priors = priors or {}
    decisions = [
        evaluate(c, knowledge.get(c.action_type), thresholds, priors.get(c.action_type, DEFAULT_PRIOR), now)
        for c in candidates
    ]
    return sorted(decisions, key=order_key)
