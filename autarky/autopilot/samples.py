"""Monitor stage: a host's probe results as one sample of the autopilot's window (pure code)."""

from __future__ import annotations

from autarky.autopilot.policy.detection import POOL_MEMBER
from autarky.autopilot.types import HostSample, MetricPoint, NetworkSample, Temperature

DEFAULT_CRITICAL_CELSIUS = 100.0  # for sensors that do not report their critical temperature


def to_metric_point(host: HostSample, network: NetworkSample | None) -> MetricPoint:
    targets = network.targets if network else []
    latencies = [t.latency_ms_avg for t in targets if t.latency_ms_avg is not None]

    def critical(t: Temperature) -> float:
        return t.critical_celsius or DEFAULT_CRITICAL_CELSIUS

    hottest = max(host.temperatures, key=lambda t: t.current_celsius / critical(t), default=None)
    return MetricPoint(
        at=host.taken_at,
        cpu_percent=host.cpu.percent,
        memory_percent=host.memory.used_percent,
        disk_percent=host.disk.used_percent,
        network_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        network_loss_ratio=max((t.loss_ratio for t in targets), default=None),
        memory_total_bytes=host.memory.total_bytes,
        temperature_celsius=hottest.current_celsius if hottest else None,
        temperature_critical_celsius=critical(hottest) if hottest else None,
        process_rss_bytes={f"{p.role} {p.pid}": p.rss_bytes for p in host.own_processes},
        pool_cpu_percent=pool_cpu_percent(host),
        pool_backlog=host.pool_backlog,
        pool_backlog_age_seconds=host.pool_backlog_age_seconds,
        pool_members=host.pool_members,
        pool_in_flight=host.pool_in_flight,
        pool_slots_per_member=host.pool_slots_per_member,
        pool_desired=host.pool_desired,
        pool_schedule_to_start_seconds=host.pool_schedule_to_start_seconds,
    )


def pool_cpu_percent(host: HostSample) -> float | None:
    """The pool members' CPU as a share of the whole host (psutil counts a process against one core, the
    host against all of them); None without members or without their CPU (samples of older probes)."""
    measured = [
        p.cpu_percent for p in host.own_processes if p.role == POOL_MEMBER and p.cpu_percent is not None
    ]
    if not measured:
        return None
    return min(100.0, sum(measured) / max(1, host.cpu.core_count))
