"""The recorder of a host watcher's history with pool scaling (release 28, patch `pool-scaling-round-2`):
a backlog on the pool's queue grows the pool while other processes hold the host's CPU."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError

from autarky.autopilot.fleet import watcher_id
from autarky.scaling.policy_types import ScalingPolicy
from tests.fakes import FakeHost
from tests.scaler_fakes import FakePool
from tests.test_autopilot import eventually
from tests.test_autopilot_scaling import scaling_autopilot

POLICY = ScalingPolicy(
    min_capacity=0,
    max_capacity=3,
    stabilisation_window=timedelta(seconds=1),
    idle_window=timedelta(seconds=2),
    warmup=timedelta(0),
    backlog_age_limit=timedelta(seconds=1),  # also how long a change settles before it is judged
    blast_radius=5.0,
)


async def record_pool_watcher_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """The watcher's first run: samples with a backlog on the pool's queue → pool_overloaded, the pool
    grows and the watcher hears of it (a signal); continue-as-new."""
    host = FakeHost(cpu=97.0, pool_members=1, pool_share=0.0, pool_backlog=25, pool_backlog_age_seconds=40)
    pool = FakePool(desired=1, host=host)
    host_id = f"replay-{uuid.uuid4().hex[:8]}"
    async with scaling_autopilot(client, data_dir, host, pool, POLICY, host_id, iterations_per_run=12) as (
        harness,
        _,
    ):
        watcher = client.get_workflow_handle(watcher_id(harness.workflow_id, host_id))

        async def first_run() -> str | None:
            try:
                return (await watcher.describe()).run_id
            except RPCError:  # not started yet
                return None

        run_id = await eventually(first_run)

        async def grown_and_continued() -> bool:
            return pool.desired == 3 and (await watcher.describe()).run_id != run_id

        await eventually(grown_and_continued, timeout=120)
        return await client.get_workflow_handle(watcher.id, run_id=run_id).fetch_history()
