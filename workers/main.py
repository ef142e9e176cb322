"""Running workers until asked to stop."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.infra.pool_load import LoadReporter
from activities.infra.worker_pool import LocalWorkerPool
from autarky.core.hosts import host_queue, worker_identity
from autarky.core.settings import AutarkySettings
from autarky.scaling.pool_policy import POOL_MEMBER_SLOTS
from workers.registry import (
    WORKFLOWS,
    control_activities,
    host_activities,
    main_activities,
    research_activities,
    selfmod_activities,
    selfmod_host_queue,
)

log = structlog.get_logger(__name__)
GRACEFUL_SHUTDOWN = timedelta(seconds=20)
# The research queue's worker (bench/research.py measures with the same): a cycle analyses a few items at a
# time, and the queue is idle 59 minutes an hour, so two long polls are enough.
RESEARCH_WORKER_OPTIONS: dict[str, Any] = {
    "max_concurrent_activities": 10,
    "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(2),
}


def build_workers(
    client: Client,
    settings: AutarkySettings,
    *,
    workflows: bool = True,
    pool: LocalWorkerPool | None = None,
    pool_member: bool = False,
) -> list[Worker]:
    """The shared-queue worker (workflows unless activities-only, plus activities), this host's worker
    (its host queue), when this process owns the host's local pool the control worker for it, and for a
    pool member a worker on the pool's queue (its pollers are how the pool's health is seen).

    The identity `<pid>@<host_id>` is how the autopilot finds the hosts (autarky.core.hosts)."""
    identity = worker_identity(os.getpid(), settings.host_id)
    workers = [
        Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS if workflows else [],
            activities=main_activities(settings),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_concurrent_activities=20,
            identity=identity,
        ),
        Worker(
            client,
            task_queue=host_queue(settings.task_queue, settings.host_id),
            activities=host_activities(settings),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_concurrent_activities=10,
            identity=identity,
        ),
    ]
    if workflows:  # full workers serve the research queue; pool members stay light
        workers.append(
            Worker(
                client,
                task_queue=settings.research_task_queue,
                activities=research_activities(settings),
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                **RESEARCH_WORKER_OPTIONS,
                identity=identity,
            )
        )
        workers.append(  # this host's self-modification queue: the later steps of a run begun here
            Worker(
                client,
                task_queue=selfmod_host_queue(settings),
                activities=selfmod_activities(settings, os.environ, None, selfmod_host_queue(settings)),
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                **RESEARCH_WORKER_OPTIONS,
                identity=identity,
            )
        )
    if pool_member:
        workers.append(
            Worker(
                client,
                task_queue=host_queue(settings.pool_task_queue, settings.host_id),
                activities=main_activities(settings),
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                max_concurrent_activities=POOL_MEMBER_SLOTS,
                identity=identity,
                # Its slots in use, for the pool's scaling (the host probe sums the members' files).
                interceptors=[LoadReporter(settings.data_dir / "pool", POOL_MEMBER_SLOTS)],
            )
        )
    if pool is not None:
        workers.append(
            Worker(
                client,
                task_queue=host_queue(settings.control_task_queue, settings.host_id),
                activities=control_activities(pool, settings),
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                identity=identity,
            )
        )
    return workers


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so the caller can shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until(
    stop: asyncio.Event, workers: list[Worker], on_started: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run the workers until `stop` is set; `on_started` runs once they poll (e.g. to start workflows)."""
    async with AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        log.info("workers running", task_queues=[w.task_queue for w in workers])
        if on_started is not None:
            await on_started()
        await stop.wait()
        log.info("stopping workers (in-flight activities get %s to finish)", GRACEFUL_SHUTDOWN)
