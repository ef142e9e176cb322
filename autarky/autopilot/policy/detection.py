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

from autarky.autopilot.detectors.anomaly import AnomalyDetector
from autarky.autopilot.detectors.anomaly_round2 import AnomalyDetectorRound2
from autarky.autopilot.detectors.trend import (
    MIB,
    EarlyWarning,
    TrendSeries,
    detect_leak,
    early_warning,
    overload_warning,
)
from autarky.autopilot.settings import AnalysisSettings
from autarky.autopilot.types import DetectionState, MetricPoint
from autarky.core.findings import Finding, Severity

DISK = "disk_percent"
TEMPERATURE = "temperature_percent_of_critical"
RSS_PREFIX = "rss "
POOL_MEMBER = "pool member"
# A warning this close to its limit is critical: planned first (a risky remedy still asks a person).
CRITICAL_WITHIN = timedelta(hours=1)


def observe(state: DetectionState, point: MetricPoint, settings: AnalysisSettings) -> None:
    """Update every detector with one sample."""
    for metric in settings.anomaly_metrics:
        value = getattr(point, metric, None)
        if value is None:
            continue
        config = settings.anomaly.model_copy(
            update={"resolution": settings.metric_resolution.get(metric, 0.0)}
        )
        kind = AnomalyDetector if settings.detection_round >= 3 else AnomalyDetectorRound2
        detector = kind(config, state.anomaly.get(metric))
        score = detector.update(value, point.at)
        state.anomaly[metric] = detector.state
        if score >= settings.anomaly_threshold:
            state.anomalies.append(_anomaly_finding(metric, value, score, detector, point.at, settings))
    state.anomalies = [f for f in state.anomalies if _held(f, point.at, settings)]

    follow = settings.follow_clock_steps
    _series(state, DISK, settings).add(point.at, point.disk_percent, follow_clock_steps=follow)
    if point.temperature_celsius is not None and point.temperature_critical_celsius:
        # As a share of the reading sensor's own critical value: the hottest sensor may change from
        # sample to sample, and each must be extrapolated towards its own limit.
        share = 100 * point.temperature_celsius / point.temperature_critical_celsius
        _series(state, TEMPERATURE, settings).add(point.at, share, follow_clock_steps=follow)
    if point.memory_total_bytes:
        state.memory_total_bytes = point.memory_total_bytes
    for process, rss in point.process_rss_bytes.items():
        _series(state, RSS_PREFIX + process, settings).add(point.at, rss, follow_clock_steps=follow)
    for key in [k for k in state.trends if k.startswith(RSS_PREFIX)]:
        if key.removeprefix(RSS_PREFIX) not in point.process_rss_bytes:  # the process is gone
            del state.trends[key]


def detector_findings(
    state: DetectionState, window: Sequence[MetricPoint], settings: AnalysisSettings, now: datetime
) -> list[Finding]:
    """Findings from the detectors' current state (anomalies still held, leaks, early warnings)."""
    # Hold anomalies in sample time (the probes' clock), the clock they were stamped with.
    latest = window[-1].at if window else now
    findings = [f for f in state.anomalies if _held(f, latest, settings)]
    findings += _leaks(state, settings, now)
    horizon = settings.early_warning_horizon.total_seconds()
    disk = state.trends.get(DISK)
    if disk:
        warning = early_warning(
            disk.times,
            disk.values,
            settings.disk_limit_percent,
            horizon,
            subject="disk usage",
            unit="%",
            **_warning_checks(settings),
        )
        if warning:
            findings.append(_warning_finding("disk_full_soon", DISK, warning, now))
    temperature = state.trends.get(TEMPERATURE)
    if temperature:
        warning = early_warning(
            temperature.times,
            temperature.values,
            100.0,
            horizon,
            subject="temperature (share of the sensor's critical)",
            unit="%",
            **_warning_checks(settings),
        )
        if warning:
            findings.append(_warning_finding("thermal_warning", TEMPERATURE, warning, now))
    recent = list(window)[-settings.overload_points :]
    if len(recent) >= 2:
        overload = overload_warning(
            [p.at for p in recent],
            [p.network_latency_ms for p in recent],
            [p.cpu_percent for p in recent],
            autocorrelation=settings.robust_trends,
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


def _held(finding: Finding, latest: datetime, settings: AnalysisSettings) -> bool:
    """Anomalies are held in sample time. A host clock set back further than the hold lets older findings
    go, rather than keep them until the clock catches up with their stamps."""
    hold = settings.anomaly_hold
    if not settings.follow_clock_steps:  # round 1
        return finding.observed_at >= latest - hold
    return latest - hold <= finding.observed_at <= latest + hold


def _warning_checks(settings: AnalysisSettings) -> dict[str, bool]:
    robust = settings.robust_trends  # False: round 1's tests, for histories recorded with them
    round3 = robust and settings.detection_round >= 3  # wide and double steps are no rise
    return {"autocorrelation": robust, "still_rising": robust, "drift": robust, "round3": round3}


def _leak_checks(settings: AnalysisSettings) -> dict[str, bool | float]:
    if settings.robust_trends:
        # Round 3: slowing warm-ups, persistent noise, wide and double steps are no leak.
        return {"round3": settings.detection_round >= 3}
    return {"autocorrelation": False, "step_robust": False, "min_sustained_ratio": 0.0, "round3": False}


def _series(state: DetectionState, key: str, settings: AnalysisSettings) -> TrendSeries:
    # A little under the spacing, so Monitor's jitter does not drop every other point.
    spacing = 0.9 * settings.trend_spacing.total_seconds()
    series = state.trends.get(key)
    if series is None or (series.max_points, series.min_spacing_seconds) != (settings.trend_points, spacing):
        # New, or the settings changed (reconfigure): keep the points, apply the new bounds.
        state.trends[key] = series = TrendSeries(
            max_points=settings.trend_points,
            min_spacing_seconds=spacing,
            times=series.times if series else [],
            values=series.values if series else [],
        )
    return series


def _anomaly_finding(
    metric: str,
    value: float,
    score: float,
    detector: AnomalyDetector | AnomalyDetectorRound2,
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
            **_leak_checks(settings),
        )
        if report is None:
            continue
        eta = report.time_to_limit_seconds
        urgent = eta is not None and eta < CRITICAL_WITHIN.total_seconds()
        restartable = (
            process.startswith(POOL_MEMBER)  # only the pool's members are ours to restart
            and eta is not None
            and eta < settings.leak_restart_horizon.total_seconds()
        )
        findings.append(
            Finding(
                kind="worker_memory_leak" if restartable else "memory_leak",
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
