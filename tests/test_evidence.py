"""Evidence before action (issue 25): a rule needs enough samples over enough time, and a pool restart is
proposed only when the pool's members hold what is high (pure policy, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autarky.autopilot.actions import NOTIFY, PRIORS, RESTART_WORKER_POOL
from autarky.autopilot.policy import decision as engine
from autarky.autopilot.policy.detection import detector_findings, observe
from autarky.autopilot.policy.goals import evaluate_goals
from autarky.autopilot.policy.remediation import candidates_for
from autarky.autopilot.policy.rules import (
    POOL_MEMBERS,
    ThresholdAnalyzer,
    analyze,
    default_analyzers,
)
from autarky.autopilot.samples import to_metric_point
from autarky.autopilot.settings import AutopilotSettings, ThresholdRules
from autarky.autopilot.types import DetectionState, HostProbeInput, HostSample, MetricPoint, NetworkIOStats
from autarky.core.findings import Severity
from tests.fakes import FakeHost

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 1 << 30
SETTINGS = AutopilotSettings()  # the defaults `autarky up` runs with (30 s monitor interval)


def busy(
    n: int,
    every: timedelta = timedelta(seconds=30),
    cpu: float = 100.0,
    pool_cpu: float | None = 1.0,
    memory: float = 40.0,
    pool_rss: int = 80 << 20,
) -> list[MetricPoint]:
    """`n` samples of a host `every` apart; the pool's members use `pool_cpu` of the host's `cpu`."""
    return [
        MetricPoint(
            at=T0 + i * every,
            cpu_percent=cpu,
            memory_percent=memory,
            disk_percent=50.0,
            network_latency_ms=1.0,
            memory_total_bytes=8 * GIB,
            process_rss_bytes={"pool member 4001": pool_rss, "autarky 4000": 150 << 20},
            pool_cpu_percent=pool_cpu,
        )
        for i in range(n)
    ]


def rules_say(window: list[MetricPoint], rules: ThresholdRules | None = None) -> dict[str, list]:
    rules = rules or SETTINGS.rules
    findings = analyze(window, default_analyzers(rules, SETTINGS.monitor_interval))
    return {f.kind: f for f in findings}  # type: ignore[misc]


def remedies(window: list[MetricPoint], rules: ThresholdRules | None = None) -> set[str]:
    return {c.action_type for c in candidates_for(rules_say(window, rules).values())}  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- samples and time


def test_one_sample_at_full_cpu_is_no_finding() -> None:
    """The startup case: the first sample of a busy host said 100 % and a critical restart followed."""
    assert rules_say(busy(1)) == {}
    assert rules_say(busy(1, pool_cpu=100.0)) == {}  # not even when the pool holds it


def test_a_burst_of_samples_is_not_time() -> None:
    burst = busy(5, every=timedelta(milliseconds=200))  # enough samples, 0.8 s of them
    assert rules_say(burst) == {}
    assert "cpu_high" in rules_say(busy(3))  # the same load over a minute is a finding


def test_the_span_asked_for_is_what_the_window_can_cover() -> None:
    # Sampling every 200 ms, a window of 5 covers 0.8 s: a minute could never be met, so it asks for less.
    rules = ThresholdRules(window=5, min_samples=3, min_span=timedelta(minutes=1))
    fast = busy(5, every=timedelta(milliseconds=200))
    analyzer = ThresholdAnalyzer(rules, sample_interval=timedelta(milliseconds=200))
    assert [f.kind for f in analyzer.analyze(fast)] == ["cpu_high"]
    assert ThresholdAnalyzer(rules).analyze(fast) == []  # without the interval: the minute stands


def test_a_metric_needs_its_own_samples() -> None:
    # Latency measured once in three samples: three samples of CPU are not three of latency.
    window = busy(3, cpu=10.0)
    for point in window[:2]:
        point.network_latency_ms = None
    window[2].network_latency_ms = 500.0
    assert "network_latency_high" not in rules_say(window)


def test_goals_read_the_window_not_one_sample() -> None:
    window = busy(5, cpu=20.0)
    window[-1].cpu_percent = 100.0  # one spike: the window's mean is 36 %
    goal = next(g for g in evaluate_goals(window, SETTINGS.rules) if g.metric == "cpu_percent")
    assert goal.achieved and goal.current == 36.0


# ------------------------------------------------------------------------------- whose load it is


def test_cpu_spent_by_other_processes_gets_no_restart() -> None:
    [finding] = rules_say(busy(5)).values()
    assert finding.kind == "cpu_high" and finding.severity == Severity.CRITICAL
    assert finding.subject is None and "other processes" in finding.message
    assert remedies(busy(5)) == {NOTIFY}


def test_cpu_held_by_the_pools_members_gets_a_restart() -> None:
    finding = rules_say(busy(5, pool_cpu=90.0))["cpu_high"]
    assert finding.subject == POOL_MEMBERS and "members hold 90%" in finding.message
    assert remedies(busy(5, pool_cpu=90.0)) == {RESTART_WORKER_POOL, NOTIFY}


def test_a_sample_that_does_not_say_whose_cpu_gets_no_restart() -> None:
    # An older probe (no per-process CPU) or a host without a pool: no evidence for the pool.
    assert remedies(busy(5, pool_cpu=None)) == {NOTIFY}


def test_memory_held_by_other_processes_gets_no_restart() -> None:
    window = busy(5, cpu=10.0, memory=92.0, pool_rss=100 << 20)  # the pool holds 100 MiB of 7.4 GiB
    assert rules_say(window)["memory_high"].subject is None
    assert remedies(window) == {NOTIFY}


def test_memory_held_by_the_pools_members_gets_a_restart() -> None:
    window = busy(5, cpu=10.0, memory=92.0, pool_rss=6 * GIB)
    assert rules_say(window)["memory_high"].subject == POOL_MEMBERS
    assert RESTART_WORKER_POOL in remedies(window)


# ------------------------------------------------------------------------------- the probe's part


async def test_samples_carry_the_pools_share_of_the_host_cpu() -> None:
    host = FakeHost(cpu=80.0, pool_members=2, pool_share=0.25)
    sample = await host.probe_host(HostProbeInput())
    assert to_metric_point(sample, None).pool_cpu_percent == 20.0  # one core: a quarter of 80 %
    sample.cpu.core_count = 4  # psutil counts each process against one core, the host against all four
    for member in sample.own_processes:
        member.cpu_percent = 40.0
    assert to_metric_point(sample, None).pool_cpu_percent == 20.0  # 2 × 40 % of one core = 20 % of four


def test_an_older_sample_still_reads() -> None:
    """Samples ride in workflow histories: one recorded before per-process CPU reads, saying nothing."""
    recorded = {
        "taken_at": T0.isoformat(),
        "hostname": "h",
        "cpu": dict(percent=99.0, per_core_percent=[99.0], load_1m=1, load_5m=1, load_15m=1, core_count=1),
        "memory": dict(
            total_bytes=GIB,
            available_bytes=GIB // 2,
            used_percent=50,
            swap_total_bytes=0,
            swap_used_percent=0,
        ),
        "disk": dict(path="/", total_bytes=GIB, used_bytes=1, used_percent=1),
        "network": dict.fromkeys(NetworkIOStats.model_fields, 0),
        "own_processes": [{"pid": 1, "name": "python", "rss_bytes": 1, "role": "pool member"}],
    }
    point = to_metric_point(HostSample.model_validate(recorded), None)
    assert point.pool_cpu_percent is None
    old_point = point.model_dump(mode="json")
    del old_point["pool_cpu_percent"]
    assert MetricPoint.model_validate(old_point).pool_cpu_percent is None


# ------------------------------------------------------------------------------- the startup case


def test_a_busy_host_at_start_gets_no_restart_and_no_approval() -> None:
    """Two CPU burners, `autarky up` with the default settings: ten Monitor rounds (5 minutes) through
    the rules, the detectors, the playbook and the decision engine."""
    window: list[MetricPoint] = []
    state = DetectionState()
    planned = []
    for point in busy(10):
        window.append(point)
        observe(state, point, SETTINGS.analysis)
        findings = analyze(window, default_analyzers(SETTINGS.rules, SETTINGS.monitor_interval))
        findings += detector_findings(state, window, SETTINGS.analysis, point.at)
        candidates = candidates_for(findings)
        planned += engine.plan(candidates, {}, SETTINGS.decision, PRIORS, point.at)
    assert planned, "the busy host is still reported (a notification)"
    assert {d.candidate.action_type for d in planned if d.execute} == {NOTIFY}
    assert not [d for d in planned if d.needs_approval]
    assert planned[0].candidate.reason.startswith("cpu_percent averaged 100.0% over the last 3 samples")
