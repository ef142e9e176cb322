"""A ScalerWorkflow worker killed in the middle of a saga: the next worker finishes it, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from autarky.scaling.types import OperationStatus, SagaStep
from tests.scaler_fakes import FakeResource, fake_input
from tests.test_autopilot import eventually
from tests.test_scaler import scale, status
from tests.worker_process import spawn_worker
from workflows.scaling import ScalerWorkflow


async def spawn(client: Client, task_queue: str) -> asyncio.subprocess.Process:
    return await spawn_worker("tests.scaler_worker", client.service_client.config.target_host, task_queue)


@pytest.mark.parametrize("healthy", [True, False], ids=["completes", "compensates"])
@pytest.mark.slow
async def test_a_worker_killed_mid_saga_leaves_one_change_and_at_most_one_undo(
    client: Client, healthy: bool
) -> None:
    workflow_queue = f"scaler-crash-{uuid.uuid4().hex[:8]}"
    provider_queue = f"{workflow_queue}-provider"
    resource = FakeResource(desired=2, start_seconds=4.0, never_healthy=not healthy)
    # Never healthy: the health timeout is what ends the wait (8 s). Healthy: far beyond the 4 s start, so
    # a replacement worker slowed by a busy machine cannot turn the success into a compensation.
    health_timeout = fake_input(provider_queue).health_timeout * (4 if not healthy else 30)
    input = fake_input(provider_queue).model_copy(update={"health_timeout": health_timeout})
    workers = [await spawn(client, workflow_queue)]
    provider = Worker(
        client, task_queue=provider_queue, activities=[resource.read_capacity, resource.set_capacity]
    )
    try:
        async with provider:
            handle = await client.start_workflow(
                ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=workflow_queue
            )
            running = asyncio.create_task(scale(handle, 3))

            async def waiting_healthy() -> bool:
                current = (await status(handle)).current
                return current is not None and current.step == SagaStep.WAITING_HEALTHY

            await eventually(waiting_healthy)
            workers[0].send_signal(signal.SIGKILL)  # as kill -9, or a lost machine
            await workers[0].wait()
            workers.append(await spawn(client, workflow_queue))
            done = await asyncio.wait_for(running, 60)
            operations = await handle.query(ScalerWorkflow.operations)
            await handle.terminate("test finished")
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
    assert len(operations) == 1
    if healthy:
        assert done.status == OperationStatus.SUCCEEDED, done.detail
        assert [d for _, d in resource.changes] == [3] and resource.desired == 3
    else:
        assert done.status == OperationStatus.COMPENSATED, done.detail
        assert [d for _, d in resource.changes] == [3, 2] and resource.desired == 2
