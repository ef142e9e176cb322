"""Threshold rules, the playbook from findings to candidate actions, and goals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autarky.autopilot.policy.goals import evaluate_goals
from autarky.autopilot.policy.remediation import candidates_for
from autarky.autopilot.policy.rules import ThresholdAnalyzer
from autarky.autopilot.settings import ThresholdRules
from autarky.autopilot.types import MetricPoint, Priority
from autarky.core.findings import Severity

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# One sample is evidence enough in the tests of what a rule says (tests/test_evidence.py: when it may).
ONE_SAMPLE = ThresholdRules(window=1, min_samples=1, min_span=timedelta(0))


def points(**series: list[float]) -> list[MetricPoint]:
    n = len(next(iter(series.values())))
    base = {"cpu_percent": 10.0, "memory_percent": 10.0, "disk_percent": 10.0, "network_latency_ms": 1.0}
    return [
        MetricPoint(at=T0 + timedelta(seconds=30 * i), **{**base, **{k: v[i] for k, v in series.items()}})
        for i in range(n)
    ]


def test_rule_fires_on_the_window_mean_not_a_single_spike() -> None:
    analyzer = ThresholdAnalyzer(ThresholdRules(window=3))
    assert analyzer.analyze(points(cpu_percent=[10, 10, 99])) == []  # mean 39.7
    [finding] = analyzer.analyze(points(cpu_percent=[90, 90, 90]))
    assert finding.kind == "cpu_high" and finding.value == 90 and finding.threshold == 85
    assert finding.severity == Severity.WARNING and "over the last 3 samples" in finding.message


def test_critical_severity_and_latency_rule() -> None:
    findings = ThresholdAnalyzer(ONE_SAMPLE).analyze(points(disk_percent=[97], network_latency_ms=[120]))
    by_kind = {f.kind: f for f in findings}
    assert by_kind["disk_high"].severity == Severity.CRITICAL
    assert by_kind["network_latency_high"].value == 120
    assert "memory_high" not in by_kind


def test_empty_window_has_no_findings() -> None:
    assert ThresholdAnalyzer(ThresholdRules()).analyze([]) == []


def test_playbook_one_candidate_per_type_most_urgent_wins() -> None:
    # Whoever holds the CPU and memory (restart_pool_share 0): this test is about the playbook's order.
    rules = ONE_SAMPLE.model_copy(update={"restart_pool_share": 0.0})
    findings = ThresholdAnalyzer(rules).analyze(
        points(cpu_percent=[90], memory_percent=[90], disk_percent=[97])
    )
    cands = {c.action_type: c for c in candidates_for(findings)}
    assert set(cands) == {"restart_worker_pool", "notify", "clear_cache", "prune_cache"}
    assert cands["clear_cache"].priority == Priority.CRITICAL  # disk at 97 % is critical
    assert cands["prune_cache"].priority == Priority.CRITICAL
    assert cands["restart_worker_pool"].priority == Priority.HIGH  # memory beats cpu's medium
    assert cands["notify"].priority == Priority.MEDIUM


def test_goals() -> None:
    goals = {
        g.metric: g for g in evaluate_goals(points(cpu_percent=[50], memory_percent=[170]), ThresholdRules())
    }
    assert goals["cpu_percent"].achieved and goals["cpu_percent"].progress == 1.0
    assert not goals["memory_percent"].achieved and goals["memory_percent"].progress == 0.5
    assert all(g.current is None and not g.achieved for g in evaluate_goals([], ThresholdRules()))
