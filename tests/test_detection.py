"""The Analyze stage's detectors over Monitor samples, and what the planner makes of their findings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from autarky.autopilot.actions import CLEAR_CACHE, PRIORS, RESTART_WORKER_POOL
from autarky.autopilot.detectors.anomaly import AnomalyConfig
from autarky.autopilot.policy import decision as engine
from autarky.autopilot.policy.detection import detector_findings, observe
from autarky.autopilot.policy.remediation import candidates_for
from autarky.autopilot.settings import AnalysisSettings, DecisionThresholds
from autarky.autopilot.types import DetectionState, MetricPoint

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIB = 1024 * 1024
GIB = 1024 * MIB
STEP = timedelta(minutes=5)


def point(i: int, **fields: object) -> MetricPoint:
    base: dict[str, object] = {
        "cpu_percent": 20.0,
        "memory_percent": 40.0,
        "disk_percent": 50.0,
        "network_latency_ms": 1.0,
        "memory_total_bytes": 8 * GIB,
    }
    return MetricPoint.model_validate({"at": T0 + i * STEP, **base, **fields})


def feed(points: list[MetricPoint], settings: AnalysisSettings) -> DetectionState:
    state = DetectionState()
    for p in points:
        observe(state, p, settings)
    return state


def plan(findings: list) -> list[engine.Decision]:  # type: ignore[name-defined]
    return engine.plan(candidates_for(findings), {}, DecisionThresholds(), PRIORS, T0)


def leaking(mib_per_hour: float, hours: float = 3.0, seed: int = 1) -> list[MetricPoint]:
    """A pool member from 200 MiB growing steadily, sampled every 5 min, with ±3 MiB of allocator noise."""
    rng = random.Random(seed)
    steps = int(hours * 12) + 1
    return [
        point(
            i,
            process_rss_bytes={
                "pool member 4242": int((200 + mib_per_hour * i / 12 + rng.uniform(-3, 3)) * MIB),
                "autarky 7": 90 * MIB,
            },
        )
        for i in range(steps)
    ]


def test_a_leaking_pool_member_is_found_with_its_time_to_limit_and_restarted() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0), process_memory_limit_bytes=GIB)
    points = leaking(40)
    findings = detector_findings(feed(points, settings), points, settings, points[-1].at)

    [leak] = [f for f in findings if f.kind == "worker_memory_leak"]
    assert leak.subject == "pool member 4242"
    assert leak.slope_per_hour is not None and abs(leak.slope_per_hour - 40 * MIB) < 8 * MIB
    true_hours_left = (1024 - 320) / 40  # 320 MiB after 3 h at 40 MiB/h: 17.6 h to 1 GiB
    assert leak.time_to_limit_seconds is not None
    assert abs(leak.time_to_limit_seconds / 3600 - true_hours_left) < 0.2 * true_hours_left
    assert "MiB/h" in leak.message and "limit" in leak.message
    assert not [f for f in findings if f.subject == "autarky 7"]  # the steady process is not a leak

    [restart] = [d for d in plan(findings) if d.candidate.action_type == RESTART_WORKER_POOL]
    assert restart.execute and not restart.needs_approval


def test_a_slow_leak_is_reported_but_not_restarted_for() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0), process_memory_limit_bytes=GIB)
    points = leaking(10)  # 79 h from the limit: beyond the 24 h restart horizon
    findings = detector_findings(feed(points, settings), points, settings, points[-1].at)
    assert [f.kind for f in findings] == ["memory_leak"]
    assert RESTART_WORKER_POOL not in {d.candidate.action_type for d in plan(findings)}


def test_a_worker_warming_up_then_levelling_off_is_not_a_leak() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0), process_memory_limit_bytes=GIB)
    rng = random.Random(4)
    # +60 MiB in the first 20 minutes (imports, caches), then flat with noise for 2.7 h.
    points = [
        point(i, process_rss_bytes={"pool member 9": int((200 + 15 * min(i, 4) + rng.uniform(-2, 2)) * MIB)})
        for i in range(37)
    ]
    assert detector_findings(feed(points, settings), points, settings, points[-1].at) == []


def test_a_steady_process_with_a_sawtooth_is_not_a_leak() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0))
    # Garbage collection: grows 40 MiB over 45 min, then drops back, for 3 h.
    points = [
        point(i, process_rss_bytes={"pool member 1": int(300 * MIB + (i % 9) * 5 * MIB)}) for i in range(37)
    ]
    state = feed(points, settings)
    assert not [f for f in detector_findings(state, points, settings, points[-1].at) if "leak" in f.kind]


def test_a_process_that_is_gone_is_forgotten() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0))
    state = feed([point(0, process_rss_bytes={"pool member 1": MIB})], settings)
    assert "rss pool member 1" in state.trends
    observe(state, point(1, process_rss_bytes={"pool member 2": MIB}), settings)
    assert set(state.trends) == {"disk_percent", "rss pool member 2"}


def test_a_filling_disk_warns_before_it_is_full_and_plans_a_cache_clean() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0), early_warning_horizon=timedelta(hours=6))
    # +2 % per hour from 60 %: 95 % is 17.5 h after the start.
    points = [point(i, disk_percent=60 + 2 * i * STEP / timedelta(hours=1)) for i in range(37)]
    state = feed(points, settings)
    assert not [
        f for f in detector_findings(state, points, settings, points[-1].at) if f.kind == "disk_full_soon"
    ]

    points = [point(i, disk_percent=60 + 10 * i * STEP / timedelta(hours=1)) for i in range(37)]  # +10 %/h
    state = feed(points, settings)
    [warning] = [
        f for f in detector_findings(state, points, settings, points[-1].at) if f.kind == "disk_full_soon"
    ]
    assert warning.threshold == 95.0
    assert warning.time_to_limit_seconds is not None
    assert abs(warning.time_to_limit_seconds - 0.5 * 3600) < 60  # 90 % now, 5 points to go at 10 %/h
    assert CLEAR_CACHE in {d.candidate.action_type for d in plan([warning]) if d.execute}


def test_rising_temperature_warns_against_the_sensors_critical_value() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0))
    points = [
        point(i, temperature_celsius=60 + 0.5 * i, temperature_critical_celsius=90.0) for i in range(30)
    ]
    state = feed(points, settings)
    [warning] = [
        f for f in detector_findings(state, points, settings, points[-1].at) if f.kind == "thermal_warning"
    ]
    assert warning.threshold == 100.0  # percent of the sensor's critical temperature
    assert warning.time_to_limit_seconds is not None
    assert abs(warning.time_to_limit_seconds - 31 * STEP.total_seconds()) < 60  # 74.5 → 90 °C at +0.5 a step


def test_overload_needs_latency_and_cpu_rising_together() -> None:
    settings = AnalysisSettings()
    both = [point(i, network_latency_ms=5 + i, cpu_percent=30 + 2 * i) for i in range(20)]
    assert [f.kind for f in detector_findings(DetectionState(), both, settings, both[-1].at)] == [
        "overload_warning"
    ]
    latency_only = [point(i, network_latency_ms=5 + i) for i in range(20)]
    assert detector_findings(DetectionState(), latency_only, settings, latency_only[-1].at) == []


def test_an_anomaly_becomes_a_finding_with_evidence_held_for_a_while() -> None:
    # The threshold is set here: the shipped one (an alert budget) lets only far bigger jumps through.
    settings = AnalysisSettings(
        anomaly=AnomalyConfig(min_history=20), anomaly_hold=timedelta(minutes=10), anomaly_threshold=0.9
    )
    rng = random.Random(2)
    points = [point(i, cpu_percent=20 + rng.gauss(0, 1)) for i in range(60)]
    points.append(point(60, cpu_percent=70.0))
    state = feed(points, settings)
    [anomaly] = detector_findings(state, points, settings, points[-1].at)
    assert anomaly.kind == "anomaly" and anomaly.metric == "cpu_percent" and anomaly.value == 70.0
    assert anomaly.score is not None and anomaly.score >= settings.anomaly_threshold
    assert anomaly.expected_low is not None and anomaly.expected_high is not None
    assert anomaly.expected_low < 20 < anomaly.expected_high < 70
    assert "unusual" in anomaly.message
    assert [d.candidate.action_type for d in plan([anomaly]) if d.execute] == ["notify"]

    calm = [point(61 + i, cpu_percent=20.0) for i in range(3)]  # 15 more minutes of samples
    for p in calm:
        observe(state, p, settings)
    assert detector_findings(state, points + calm, settings, calm[-1].at) == []  # held 10 min, then let go


def test_detection_state_round_trips() -> None:
    settings = AnalysisSettings(trend_spacing=timedelta(0))
    state = feed([point(i, process_rss_bytes={"pool member 1": MIB * i}) for i in range(30)], settings)
    assert DetectionState.model_validate_json(state.model_dump_json()) == state


def test_a_host_clock_set_back_an_hour_keeps_the_detectors_working() -> None:
    # Disk filling 0.5 % per 5 min; after two hours the host's clock is set back an hour (and one
    # timestamp repeats). The warning keeps coming.
    settings = AnalysisSettings(trend_spacing=timedelta(minutes=1))
    rng = random.Random(4)
    points = [point(i, disk_percent=50 + 0.5 * i + rng.gauss(0, 0.05)) for i in range(24)]
    stepped = [
        point(i - 12, disk_percent=50 + 0.5 * i + rng.gauss(0, 0.05)) for i in range(24, 48)
    ]  # stamped an hour (12 steps) earlier than they happen
    stepped.insert(1, stepped[0])
    state = feed(points + stepped, settings)
    disk = state.trends["disk_percent"]
    assert len(disk.times) == len(points) + len(stepped) - 1  # the repeated timestamp is one point
    assert disk.times == sorted(disk.times)
    findings = detector_findings(state, stepped, settings, stepped[-1].at)
    assert [f.kind for f in findings] == ["disk_full_soon"]


def test_latency_at_1_ms_resolution_going_1_to_3_ms_is_no_anomaly() -> None:
    settings = AnalysisSettings(anomaly=AnomalyConfig(min_history=20), anomaly_threshold=0.6)
    rng = random.Random(5)
    points = [point(i, network_latency_ms=float(rng.choice([1, 1, 1, 2]))) for i in range(200)]
    points += [point(200 + i, network_latency_ms=3.0) for i in range(3)]
    state = feed(points, settings)
    assert [f for f in detector_findings(state, points, settings, points[-1].at) if f.kind == "anomaly"] == []
    # At a finer resolution the same jump does count: the floor is what keeps it quiet.
    fine = settings.model_copy(update={"metric_resolution": {"network_latency_ms": 0.001}})
    state = feed(points, fine)
    assert any(
        f.metric == "network_latency_ms" for f in detector_findings(state, points, fine, points[-1].at)
    )


def test_an_anomaly_is_let_go_when_the_clock_is_set_back_past_its_hold() -> None:
    settings = AnalysisSettings(
        anomaly=AnomalyConfig(min_history=20), anomaly_hold=timedelta(minutes=10), anomaly_threshold=0.9
    )
    rng = random.Random(2)
    points = [point(i, cpu_percent=20 + rng.gauss(0, 1)) for i in range(60)] + [point(60, cpu_percent=70.0)]
    stepped_back = [point(60 - 12, cpu_percent=20.0)]  # the next sample is stamped an hour earlier
    for follow, held in ((True, 0), (False, 1)):  # round 1 kept it until the clock caught up
        s = settings.model_copy(update={"follow_clock_steps": follow})
        state = feed(points + stepped_back, s)
        findings = detector_findings(state, points + stepped_back, s, stepped_back[-1].at)
        assert len([f for f in findings if f.kind == "anomaly"]) == held
    # A small step back (5 min, within the hold) keeps it.
    small = [*points, point(59, cpu_percent=20.0)]
    state = feed(small, settings)
    assert [f.kind for f in detector_findings(state, small, settings, small[-1].at)] == ["anomaly"]
