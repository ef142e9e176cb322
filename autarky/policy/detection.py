"""Analyze stage, statistical part: the detectors over the autopilot's samples (pure code).

`observe` feeds one Monitor sample to the streaming detectors (each value is seen exactly once);
`detector_findings` turns what they see into findings with evidence: anomalies (held for a while,
since an anomaly is a moment and planning runs less often), memory leaks of Autarky's own processes,
disk-full and thermal early warnings, and overload (latency and CPU rising together). All state lives
in `DetectionState`, which the workflow carries across continue-as-new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from autarky.config import AnalysisSettings
from autarky.detectors.anomaly import AnomalyDetector
from autarky.detectors.trend import (
    MIB,
    EarlyWarning,
    TrendSeries,
    detect_leak,
    early_warning,
    overload_warning,
)
from autarky.types import DetectionState, Finding, MetricPoint, Severity

DISK = "disk_percent"
TEMPERATURE = "temperature_celsius"
RSS_PREFIX = "rss "
POOL_MEMBER = "pool member"
# A warning this close to its limit is critical (and so its remedy waits for a person's approval).
CRITICAL_WITHIN = timedelta(hours=1)


def observe(state: DetectionState, point: MetricPoint, settings: AnalysisSettings) -> None:
    """Update every detector with one sample."""
    for metric in settings.anomaly_metrics:
        value = getattr(point, metric, None)
        if value is None:
            continue
        detector = AnomalyDetector(settings.anomaly, state.anomaly.get(metric))
        score = detector.update(value, point.at)
        state.anomaly[metric] = detector.state
        if score >= settings.anomaly_threshold:
            state.anomalies.append(_anomaly_finding(metric, value, score, detector, point.at, settings))
    hold_from = point.at - settings.anomaly_hold
    state.anomalies = [f for f in state.anomalies if f.observed_at >= hold_from]

    _series(state, DISK, settings).add(point.at, point.disk_percent)
    if point.temperature_celsius is not None:
        _series(state, TEMPERATURE, settings).add(point.at, point.temperature_celsius)
        state.temperature_critical_celsius = point.temperature_critical_celsius
    if point.memory_total_bytes:
        state.memory_total_bytes = point.memory_total_bytes
    for process, rss in point.process_rss_bytes.items():
        _series(state, RSS_PREFIX + process, settings).add(point.at, rss)
    for key in [k for k in state.trends if k.startswith(RSS_PREFIX)]:
        if key.removeprefix(RSS_PREFIX) not in point.process_rss_bytes:  # the process is gone
            del state.trends[key]


def detector_findings(
    state: DetectionState, window: Sequence[MetricPoint], settings: AnalysisSettings, now: datetime
) -> list[Finding]:
    """Findings from the detectors' current state (anomalies still held, leaks, early warnings)."""
    findings = [f for f in state.anomalies if f.observed_at >= now - settings.anomaly_hold]
    findings += _leaks(state, settings, now)
    horizon = settings.early_warning_horizon.total_seconds()
    disk = state.trends.get(DISK)
    if disk:
        warning = early_warning(
            disk.times, disk.values, settings.disk_limit_percent, horizon, subject="disk usage", unit="%"
        )
        if warning:
            findings.append(_warning_finding("disk_full_soon", DISK, warning, now))
    temperature = state.trends.get(TEMPERATURE)
    if temperature and state.temperature_critical_celsius:
        warning = early_warning(
            temperature.times,
            temperature.values,
            state.temperature_critical_celsius,
            horizon,
            subject="temperature",
            unit="°C",
        )
        if warning:
            findings.append(_warning_finding("thermal_warning", TEMPERATURE, warning, now))
    recent = list(window)[-settings.overload_points :]
    if len(recent) >= 2:
        overload = overload_warning(
            [p.at for p in recent],
            [p.network_latency_ms for p in recent],
            [p.cpu_percent for p in recent],
        )
        if overload:
            findings.append(
                Finding(
                    kind="overload_warning",
                    metric="network_latency_ms",
                    value=round(recent[-1].network_latency_ms or 0.0, 3),
                    threshold=0.0,
                    message=overload.describe(),
                    observed_at=now,
                    slope_per_hour=overload.signal_slope_per_second * 3600,
                )
            )
    return findings


def _series(state: DetectionState, key: str, settings: AnalysisSettings) -> TrendSeries:
    if key not in state.trends:
        state.trends[key] = TrendSeries(
            max_points=settings.trend_points, min_spacing_seconds=settings.trend_spacing.total_seconds()
        )
    return state.trends[key]


def _anomaly_finding(
    metric: str,
    value: float,
    score: float,
    detector: AnomalyDetector,
    at: datetime,
    settings: AnalysisSettings,
) -> Finding:
    low, high = detector.expected or (value, value)
    return Finding(
        kind="anomaly",
        metric=metric,
        value=round(value, 3),
        threshold=settings.anomaly_threshold,
        score=round(score, 3),
        expected_low=round(low, 3),
        expected_high=round(high, 3),
        message=f"{metric} = {value:.4g} is unusual for this host (expected {low:.4g} – {high:.4g}, "
        f"{detector.z:.1f} robust σ from the recent median; anomaly score {score:.2f})",
        observed_at=at,
    )


def _leaks(state: DetectionState, settings: AnalysisSettings, now: datetime) -> list[Finding]:
    limit = settings.process_memory_limit_bytes or state.memory_total_bytes
    findings = []
    for key, series in state.trends.items():
        if not key.startswith(RSS_PREFIX):
            continue
        process = key.removeprefix(RSS_PREFIX)
        report = detect_leak(
            series.times,
            series.values,
            limit,
            p_value=settings.leak_p_value,
            min_span_seconds=settings.leak_min_span.total_seconds(),
            subject=process,
        )
        if report is None:
            continue
        urgent = report.time_to_limit_seconds is not None and report.time_to_limit_seconds < (
            CRITICAL_WITHIN.total_seconds()
        )
        findings.append(
            Finding(
                # Only the pool's members can be restarted by the autopilot; others are reported.
                kind="worker_memory_leak" if process.startswith(POOL_MEMBER) else "memory_leak",
                metric="rss_bytes",
                value=round(report.current_bytes),
                threshold=float(limit or 0),
                severity=Severity.CRITICAL if urgent else Severity.WARNING,
                message=report.describe(),
                observed_at=now,
                subject=process,
                slope_per_hour=round(report.slope_mib_per_hour * MIB),
                time_to_limit_seconds=report.time_to_limit_seconds,
            )
        )
    return findings


def _warning_finding(kind: str, metric: str, warning: EarlyWarning, now: datetime) -> Finding:
    urgent = warning.time_to_limit_seconds < CRITICAL_WITHIN.total_seconds()
    return Finding(
        kind=kind,
        metric=metric,
        value=round(warning.current, 3),
        threshold=warning.limit,
        severity=Severity.CRITICAL if urgent else Severity.WARNING,
        message=warning.describe(),
        observed_at=now,
        slope_per_hour=round(warning.slope_per_second * 3600, 4),
        time_to_limit_seconds=warning.time_to_limit_seconds,
    )
