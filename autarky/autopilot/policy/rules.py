"""Analyze stage: threshold rules over the recent window of metric points (pure code).

`Analyzer` is the seam for more stateless rules: anything with `analyze(window) -> list[Finding]` can
be added to `default_analyzers`. The stateful statistical detectors live in autopilot.policy.detection.

Evidence before action: a rule speaks only over enough samples covering enough time
(`ThresholdRules.min_samples`, `min_span`), and a CPU or memory finding names the pool's members as its
subject only when they hold enough of it (`restart_pool_share`): only then can a pool restart answer it
(autopilot.policy.remediation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from statistics import fmean
from typing import Protocol

from autarky.autopilot.policy.detection import POOL_MEMBER
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
# The subject of a CPU or memory finding the pool's members hold: a pool restart can act on it.
POOL_MEMBERS = "pool members"
# Monitor rounds drift by a little (activity start latency): a window of n samples at the interval spans
# a little under (n - 1) intervals.
_SPACING_SLACK = 0.9


class ThresholdAnalyzer:
    """A metric whose mean over the last `rules.window` points exceeds its threshold is a finding, once
    those points are enough evidence (`rules.min_samples` of them, covering `rules.min_span`)."""

    def __init__(self, rules: ThresholdRules, sample_interval: timedelta | None = None) -> None:
        self.rules = rules
        self.min_samples = min(rules.min_samples, rules.window)
        self.min_span = rules.min_span
        if sample_interval is not None:  # never ask for more time than the window's samples can cover
            self.min_span = min(self.min_span, _SPACING_SLACK * (rules.window - 1) * sample_interval)

    def analyze(self, window: Sequence[MetricPoint]) -> list[Finding]:
        recent = list(window)[-self.rules.window :]
        findings = []
        for kind, metric, unit, read, threshold_of in _RULES:
            seen = [(p, v) for p, v in ((p, read(p)) for p in recent) if v is not None]
            if not self._enough(seen):
                continue
            values = [v for _, v in seen]
            value, threshold = fmean(values), threshold_of(self.rules)
            if value <= threshold:
                continue
            critical = metric in _PERCENT_METRICS and value >= self.rules.critical_percent
            message = (
                f"{metric} averaged {value:.1f}{unit} over the last {len(values)} samples "
                f"(threshold {threshold:g}{unit})"
            )
            subject = None
            if metric in _POOL_SHARE and self.rules.restart_pool_share == 0:
                subject = POOL_MEMBERS  # whoever holds it (the rules before issue 25)
            elif metric in _POOL_SHARE:
                share = _POOL_SHARE[metric]([p for p, _ in seen])
                share_needed = self.rules.restart_pool_share
                subject = POOL_MEMBERS if share is not None and share >= share_needed else None
                message += _attribution(share, subject)
            findings.append(
                Finding(
                    kind=kind,
                    metric=metric,
                    value=round(value, 3),
                    threshold=threshold,
                    severity=Severity.CRITICAL if critical else Severity.WARNING,
                    message=message,
                    observed_at=recent[-1].at,
                    subject=subject,
                )
            )
        return findings

    def _enough(self, seen: list[tuple[MetricPoint, float]]) -> bool:
        if not seen or len(seen) < self.min_samples:
            return False
        return seen[-1][0].at - seen[0][0].at >= self.min_span


def _cpu_share(points: Sequence[MetricPoint]) -> float | None:
    """The pool members' share of the CPU used, over the points that say (None: none says)."""
    known = [p for p in points if p.pool_cpu_percent is not None]
    used = sum(p.cpu_percent for p in known)
    if not known or used <= 0:
        return None
    return min(1.0, sum(p.pool_cpu_percent or 0.0 for p in known) / used)


def _memory_share(points: Sequence[MetricPoint]) -> float | None:
    """The pool members' resident memory as a share of the memory used (None without the host's total)."""
    pool = used = 0.0
    for p in points:
        if not p.memory_total_bytes:
            continue
        used += p.memory_percent / 100 * p.memory_total_bytes
        pool += sum(rss for key, rss in p.process_rss_bytes.items() if key.startswith(POOL_MEMBER))
    return min(1.0, pool / used) if used > 0 else None


_POOL_SHARE: dict[str, Callable[[Sequence[MetricPoint]], float | None]] = {
    "cpu_percent": _cpu_share,
    "memory_percent": _memory_share,
}


def _attribution(share: float | None, subject: str | None) -> str:
    if share is None:
        return "; the sample does not say whose it is, so it is not the pool's to restart"
    held = f"; the pool's members hold {share:.0%} of it"
    return (
        held if subject == POOL_MEMBERS else held + ", other processes the rest: a pool restart cannot help"
    )


def default_analyzers(rules: ThresholdRules, sample_interval: timedelta | None = None) -> list[Analyzer]:
    """`sample_interval` (the monitor interval) caps `rules.min_span` at what the window can cover."""
    return [ThresholdAnalyzer(rules, sample_interval)]


def analyze(window: Sequence[MetricPoint], analyzers: Sequence[Analyzer]) -> list[Finding]:
    return [finding for analyzer in analyzers for finding in analyzer.analyze(window)]
