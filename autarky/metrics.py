"""Autarky's own Prometheus metrics (the SDK's come from its Runtime telemetry, see autarky.temporal)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

ACTIONS = Counter("autarky_actions", "Actions carried out by this worker", ["action_type", "outcome"])
HOST_CPU = Gauge("autarky_host_cpu_percent", "Host CPU use at the last probe")
HOST_MEMORY = Gauge("autarky_host_memory_percent", "Host memory use at the last probe")
HOST_DISK = Gauge("autarky_host_disk_percent", "Disk use of the probed path at the last probe")
POOL_MEMBERS = Gauge("autarky_worker_pool_members", "Live members of the local worker pool")


def serve(host: str, port: int | None) -> None:
    if port is not None:
        start_http_server(port, addr=host)
