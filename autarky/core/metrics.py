"""Autarky's own Prometheus metrics (the SDK's come from its Runtime telemetry, see autarky.core.temporal)."""

from __future__ import annotations

import structlog
from prometheus_client import Counter, Gauge, start_http_server

log = structlog.get_logger(__name__)

ACTIONS = Counter("autarky_actions", "Actions carried out by this worker", ["action_type", "outcome"])
HOST_CPU = Gauge("autarky_host_cpu_percent", "Host CPU use at the last probe")
HOST_MEMORY = Gauge("autarky_host_memory_percent", "Host memory use at the last probe")
HOST_DISK = Gauge("autarky_host_disk_percent", "Disk use of the probed path at the last probe")
POOL_MEMBERS = Gauge("autarky_worker_pool_members", "Live members of the local worker pool")


def serve(host: str, port: int | None) -> bool:
    """Serve /metrics on host:port; True if it does. A port that is taken (e.g. by `autarky up` beside
    this worker) is a warning, not a failure: the process goes on without this endpoint."""
    if port is None:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        log.warning(
            f"cannot serve Autarky's metrics on {host}:{port} ({error.strerror or error}); going on "
            f"without them: set AUTARKY_METRICS_PORT to a free port",
            port=port,
            setting="AUTARKY_METRICS_PORT",
        )
        return False
    return True
