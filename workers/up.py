"""`autarky up`: the whole stack in the foreground, and an orderly stop on Ctrl-C.

Embedded server (unless TEMPORAL_ADDRESS / a profile names a cluster) → worker and local pool →
schedules synced → singleton autopilot started if not running. Running it again resumes the same state.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

import structlog
from rich.console import Console
from rich.panel import Panel
from temporalio.service import RPCError

from activities.infra.worker_pool import LocalWorkerPool
from autarky.client import AutarkyClient
from autarky.core import metrics
from autarky.core.settings import AutarkySettings, ConfigError
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID, connect, external_profile, metrics_runtime
from autarky.scaling.scalers import push_policies
from schedules import sync_schedules
from workers.dev_server import EmbeddedServer
from workers.main import build_workers, run_until, stop_event_on_signals
from workers.search_attributes import register_search_attributes

log = structlog.get_logger(__name__)
RECONFIGURE_TIMEOUT_SECONDS = 30.0


def _lock_data_dir(settings: AutarkySettings) -> int:
    """One `autarky up` per data dir: a second one would take over the first one's server and pool."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / "up.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another `autarky up` is already running on {settings.data_dir}/; stop it first, "
            "or set AUTARKY_DATA_DIR for a second stack"
        ) from None
    return fd  # held until this process exits


async def up(settings: AutarkySettings) -> None:
    _lock_data_dir(settings)
    stop = stop_event_on_signals()
    profile = external_profile()
    server = None if profile else EmbeddedServer(settings)
    pool = LocalWorkerPool(settings.data_dir)
    try:
        if server:
            await server.start()
        client = await connect(settings, runtime=metrics_runtime(settings))
        metrics.serve(settings.metrics_host, settings.metrics_port)
        if profile:  # before the schedules, whose workflows set them; the embedded server has them already
            await register_search_attributes(client)
        synced = await sync_schedules(client, settings)
        log.info("schedules synced", **synced)
        workers = build_workers(client, settings, pool=pool)
        # The scaler's last size wins over worker_pool_size (which is only the first size).
        pool.set_size(pool.desired_size(settings.worker_pool_size))
        autarky = AutarkyClient(client, settings)

        async def start_autopilot() -> None:
            # USE_EXISTING: when the autopilot already runs (a second `make run`), this returns its handle;
            # it then takes today's settings (an update, so the worker must already be polling).
            handle = await autarky.start_autopilot()
            try:
                await asyncio.wait_for(autarky.reconfigure(handle.id), RECONFIGURE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning(
                    "the running autopilot did not take the new settings in time; it keeps its own",
                    workflow_id=handle.id,
                )
            try:
                pushed = await push_policies(client, settings)
            except RPCError as error:  # a scaler that does not take it keeps its old policy
                log.warning("could not send the scaling policies to the running scalers", error=str(error))
            else:
                if pushed:
                    log.info("running scalers took the configured policies", scalers=pushed)
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
