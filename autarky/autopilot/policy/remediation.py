"""Plan stage, first half: which candidate actions could help with each finding (pure code).

A remedy is proposed only when it can act on the finding's cause: a pool restart only for what the pool's
members hold (the threshold rules and the leak detector name them as the finding's subject), never for a
host whose CPU or memory other processes spend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from autarky.autopilot.actions import (
    CLEAR_CACHE,
    EVOLVE_AGENT,
    NOTIFY,
    PRUNE_CACHE,
    RESTART_WORKER_POOL,
    SCALE_POOL,
    START_ABTEST,
)
from autarky.autopilot.policy.decision import PRIORITY_RANK
from autarky.autopilot.policy.detection import POOL_MEMBER
from autarky.autopilot.types import CandidateAction, Priority
from autarky.core.findings import Finding, Severity

# finding kind -> (action type, priority, expected improvement, risk)
PLAYBOOK: dict[str, list[tuple[str, Priority, float, float]]] = {
    "cpu_high": [(RESTART_WORKER_POOL, Priority.MEDIUM, 0.3, 0.4), (NOTIFY, Priority.LOW, 0.1, 0.0)],
    "memory_high": [(RESTART_WORKER_POOL, Priority.HIGH, 0.4, 0.6), (NOTIFY, Priority.MEDIUM, 0.1, 0.0)],
    # Pruning old files first: it loses less than clearing everything, so it is even safer.
    "disk_high": [
        (PRUNE_CACHE, Priority.HIGH, 0.2, 0.05),
        (CLEAR_CACHE, Priority.HIGH, 0.3, 0.1),
        (NOTIFY, Priority.MEDIUM, 0.1, 0.0),
    ],
    "network_latency_high": [(NOTIFY, Priority.MEDIUM, 0.1, 0.0)],
    "network_loss_high": [(NOTIFY, Priority.HIGH, 0.1, 0.0)],
    # From the statistical detectors (autarky.autopilot.policy.detection):
    "anomaly": [(NOTIFY, Priority.MEDIUM, 0.1, 0.0)],
    # A rolling restart of the pool frees a leaking member's memory; it is routine, so low risk.
    "worker_memory_leak": [
        (RESTART_WORKER_POOL, Priority.HIGH, 0.4, 0.3),
        (NOTIFY, Priority.MEDIUM, 0.1, 0.0),
    ],
    "memory_leak": [(NOTIFY, Priority.HIGH, 0.1, 0.0)],  # not ours to restart
    "disk_full_soon": [(CLEAR_CACHE, Priority.HIGH, 0.3, 0.1), (NOTIFY, Priority.HIGH, 0.1, 0.0)],
    "thermal_warning": [(NOTIFY, Priority.HIGH, 0.1, 0.0)],
    "overload_warning": [(NOTIFY, Priority.MEDIUM, 0.1, 0.0)],
    # From the pool's scaling policy (autarky.scaling.pool_policy); the finding names the capacity.
    "pool_overloaded": [(SCALE_POOL, Priority.HIGH, 0.3, 0.2)],
    "pool_underused": [(SCALE_POOL, Priority.LOW, 0.1, 0.1)],
    # A registered model variant nobody tested: the test itself guards traffic (ramp, guardrails).
    "new_model_variant": [(START_ABTEST, Priority.LOW, 0.1, 0.05)],
    # An agent short of its goal: self-modification guards itself (sandbox, unseen data, approval, watch).
    "agent_below_goal": [(EVOLVE_AGENT, Priority.LOW, 0.1, 0.1)],
}


def _about_the_pool(finding: Finding) -> bool:
    # "pool members" (a rule: they hold the CPU or memory) or "pool member 4242" (a leak detector's).
    return (finding.subject or "").startswith(POOL_MEMBER)


# What a finding must be about for the remedy to act on its cause (remedies not named: anything).
ACTS_ON: dict[str, Callable[[Finding], bool]] = {RESTART_WORKER_POOL: _about_the_pool}


def candidates_for(findings: Iterable[Finding]) -> list[CandidateAction]:
    """One candidate per action type: the most urgent finding that calls for it wins."""
    best: dict[str, CandidateAction] = {}
    for finding in findings:
        for action_type, priority, improvement, risk in PLAYBOOK.get(finding.kind, []):
            if not ACTS_ON.get(action_type, lambda _: True)(finding):
                continue
            if finding.severity == Severity.CRITICAL and action_type != NOTIFY:
                priority = Priority.CRITICAL
            candidate = CandidateAction(
                action_type=action_type,
                priority=priority,
                expected_improvement=improvement,
                risk=risk,
                reason=finding.message,
                finding_kind=finding.kind,
                params=dict(finding.params),
            )
            current = best.get(action_type)
            if current is None or _urgency(candidate) < _urgency(current):
                best[action_type] = candidate
    return list(best.values())


def _urgency(candidate: CandidateAction) -> tuple[int, float]:
    return (PRIORITY_RANK[candidate.priority], -candidate.expected_improvement)
