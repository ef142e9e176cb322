"""The local worker pool as a scalable resource: real `autarky worker` processes started, stopped, replaced.

A member is healthy when its process is alive and the server lists it among the pollers of the pool's
queue, so these members are the real thing (each polls the test server)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.infra.local_pool_scaling import LocalPoolScalingActivities
from activities.infra.worker_pool import LocalWorkerPool
from autarky.core.hosts import host_queue
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.scalers import local_pool, scaler_input
from autarky.scaling.settings import ScalingSettings
from autarky.scaling.types import OperationStatus
from tests.test_autopilot import eventually
from tests.test_scaler import scale, status
from workflows.scaling import ScalerWorkflow


@pytest.fixture
def settings(client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AutarkySettings:
    suffix = uuid.uuid4().hex[:8]
    values = {
        "AUTARKY_DATA_DIR": str(tmp_path),
        "AUTARKY_HOST_ID": f"pool-host-{suffix}",
        "AUTARKY_TASK_QUEUE": f"pool-test-{suffix}",
        "AUTARKY_CONTROL_TASK_QUEUE": f"pool-control-{suffix}",
        "AUTARKY_POOL_TASK_QUEUE": f"pool-members-{suffix}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,  # what the members connect to
        "TEMPORAL_NAMESPACE": client.namespace,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return AutarkySettings(
        scaling=ScalingSettings(
            health_timeout=timedelta(seconds=60),
            health_poll_interval=timedelta(milliseconds=500),
            reconcile_interval=timedelta(seconds=1),
        )
    )


@pytest.mark.slow
async def test_members_start_stop_and_a_killed_one_is_replaced(
    client: Client, settings: AutarkySettings
) -> None:
    pool = LocalWorkerPool(settings.data_dir)
    activities = LocalPoolScalingActivities(pool, settings.host_id, settings.pool_task_queue)
    policy = ScalingPolicy(min_capacity=0, max_capacity=3, cooldown=timedelta(0), blast_radius=5.0)
    input = scaler_input(settings, local_pool(settings), policy)
    try:
        async with (
            Worker(client, task_queue=settings.task_queue, workflows=[ScalerWorkflow]),
            Worker(
                client,
                task_queue=host_queue(settings.control_task_queue, settings.host_id),
                activities=[activities.read_capacity, activities.set_capacity],
            ),
        ):
            handle = await client.start_workflow(
                ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=settings.task_queue
            )
            grown = await scale(handle, 2)
            members = pool.members()
            assert grown.status == OperationStatus.SUCCEEDED, grown.detail
            assert len(members) == 2 and (await status(handle)).healthy == 2

            victim = members[0].process
            victim.kill()  # as the OOM killer would
            await asyncio.to_thread(victim.wait, 10)

            async def replaced() -> bool:
                now = pool.members()
                reading = await status(handle)
                return (
                    len(now) == 2 and victim.pid not in {m.process.pid for m in now} and reading.healthy == 2
                )

            await eventually(replaced, timeout=60)
            survivor = pool.members()[-1].process
            shrunk = await scale(handle, 1)
            await handle.terminate("test finished")
    finally:
        pool.stop_all()
    assert shrunk.status == OperationStatus.SUCCEEDED, shrunk.detail
    assert not survivor.is_running() or survivor.status() == psutil.STATUS_ZOMBIE  # the newest slot stopped
    assert (settings.data_dir / "pool" / "desired").read_text() == "1"  # what `autarky up` restores
