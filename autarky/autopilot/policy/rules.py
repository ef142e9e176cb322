"""Analyze stage: threshold rules over the recent window of metric points (pure code).

`Analyzer` is the seam for more stateless rules: anything with `analyze(window) -> list[Finding]` can
be added to `default_analyzers`. The stateful statistical detectors live in autopilot.policy.detection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean
from typing import Protocol

from autarky.autopilot.settings import ThresholdRules
from autarky.autopilot.types import MetricPoint
from autarky.core.findings import Finding, Severity


class Analyzer(Protocol):
    def analyze(self, window: Sequence[MetricPoint]) -> list[Finding]: ...


# (finding kind, metric name, unit, how to read the metric, which threshold applies)
_RULES: list[
    tuple[str, str, str, Callable[[MetricPoint], float | None], Callable[[ThresholdRules], float]]
] = [
    ("cpu_high", "cpu_percent", "%", lambda p: p.cpu_percent, lambda r: r.cpu_percent),
    ("memory_high", "memory_percent", "%", lambda p: p.memory_percent, lambda r: r.memory_percent),
    ("disk_high", "disk_percent", "%", lambda p: p.disk_percent, lambda r: r.disk_percent),
    (
        "network_latency_high",
        "network_latency_ms",
        " ms",
        lambda p: p.network_latency_ms,
        lambda r: r.network_latency_ms,
    ),
    (
        "network_loss_high",
        "network_loss_ratio",
        "",
        lambda p: p.network_loss_ratio,
        lambda r: r.network_loss_ratio,
    ),
]
_PERCENT_METRICS = {"cpu_percent", "memory_percent", "disk_percent"}


class ThresholdAnalyzer:
    """A metric whose mean over the last `rules.window` points exceeds its threshold is a finding."""

    def __init__(self, rules: ThresholdRules) -> None:
        self.rules = rules

    def analyze(self, window: Sequence[MetricPoint]) -> list[Finding]:
        recent = list(window)[-self.rules.window :]
        if not recent:
            return []
        findings = []
        for kind, metric, unit, read, threshold_of in _RULES:
            values = [v for v in (read(p) for p in recent) if v is not None]
            if not values:
                continue
            value, threshold = fmean(values), threshold_of(self.rules)
            if value <= threshold:
                continue
            critical = metric in _PERCENT_METRICS and value >= self.rules.critical_percent
            findings.append(
                Finding(
                    kind=kind,
                    metric=metric,
                    value=round(value, 3),
                    threshold=threshold,
                    severity=Severity.CRITICAL if critical else Severity.WARNING,
                    message=f"{metric} averaged {value:.1f}{unit} over the last {len(values)} samples "
                    f"(threshold {threshold:g}{unit})",
                    observed_at=recent[-1].at,
                )
            )
        return findings


def default_analyzers(rules: ThresholdRules) -> list[Analyzer]:
    return [ThresholdAnalyzer(rules)]


def analyze(window: Sequence[MetricPoint], analyzers: Sequence[Analyzer]) -> list[Finding]:
    return [finding for analyzer in analyzers for finding in analyzer.analyze(window)]
