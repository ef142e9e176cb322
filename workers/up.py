"""`autarky up`: the whole stack in the foreground, and an orderly stop on Ctrl-C.

Embedded server (unless TEMPORAL_ADDRESS / a profile names a cluster) → worker and local pool →
schedules synced → singleton autopilot started if not running. Running it again resumes the same state.
"""

from __future__ import annotations

import structlog
from rich.console import Console
from rich.panel import Panel

from activities.infra.worker_pool import LocalWorkerPool
from autarky import metrics
from autarky.client import AutarkyClient
from autarky.config import AutarkySettings
from autarky.temporal import AUTOPILOT_WORKFLOW_ID, connect, external_profile, metrics_runtime
from schedules import sync_schedules
from workers.dev_server import EmbeddedServer
from workers.main import build_workers, run_until, stop_event_on_signals

log = structlog.get_logger(__name__)


async def up(settings: AutarkySettings) -> None:
    stop = stop_event_on_signals()
    profile = external_profile()
    server = None if profile else EmbeddedServer(settings)
    pool = LocalWorkerPool(settings.data_dir)
    try:
        if server:
            await server.start()
        client = await connect(settings, runtime=metrics_runtime(settings))
        metrics.serve(settings.metrics_host, settings.metrics_port)
        synced = await sync_schedules(client, settings)
        log.info("schedules synced", **synced)
        workers = build_workers(client, settings, pool=pool)
        pool.ensure(settings.worker_pool_size)
        autarky = AutarkyClient(client, settings)

        async def start_autopilot() -> None:
            # USE_EXISTING: when the autopilot already runs (a second `make run`), this returns its handle;
            # it then takes today's settings (an update, so the worker must already be polling).
            handle = await autarky.start_autopilot()
            await autarky.reconfigure(handle.id)
            _print_banner(settings, server is not None, profile.address if profile else None, handle.id)

        await run_until(stop, workers, on_started=start_autopilot)
    finally:
        pool.stop_all()
        if server:
            server.stop()


def _print_banner(settings: AutarkySettings, embedded: bool, address: str | None, workflow_id: str) -> None:
    ui = f"http://localhost:{settings.ui_port}" if embedded else "your cluster's Temporal UI"
    where = (
        f"embedded server at {settings.server_ip}:{settings.server_port}, data in {settings.data_dir}/"
        if embedded
        else f"cluster {address}"
    )
    text = (
        f"[bold]Autarky is up[/bold] ({where})\n"
        f"Temporal UI: {ui}/namespaces/{settings.namespace}/workflows/{workflow_id}\n"
        f'Waiting for you:   autarky approvals   (or filter the UI by AutarkyApproval="pending")\n'
        f"Decide:            autarky approve ID --reason '…'   |   autarky reject ID --reason '…'\n"
        f"Autopilot:         autarky status · autarky actions · autarky goals\n"
        f"Ctrl-C stops the worker, the pool and the server; `make run` again resumes where it left off."
    )
    Console(stderr=True).print(Panel(text, title="autarky", expand=False))


__all__ = ["AUTOPILOT_WORKFLOW_ID", "up"]
