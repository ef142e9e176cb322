"""ScalerWorkflow on a real Temporal server: sagas, compensation, cooldown, queueing, approval, restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.scalers import push_policies
from autarky.scaling.settings import ScalableResource, ScalingSettings
from autarky.scaling.types import (
    OperationStatus,
    SagaStep,
    ScaleOperation,
    ScaleRequest,
    ScalerInput,
    ScalerStatus,
)
from tests.scaler_fakes import FakeResource, fake_input
from tests.test_autopilot import eventually
from workflows.scaling import ScalerWorkflow


class Scalers:
    def __init__(self, client: Client, resource: FakeResource) -> None:
        self.client = client
        self.resource = resource
        self.queue = f"scaler-test-{uuid.uuid4().hex[:8]}"

    def worker(self) -> Worker:
        return Worker(
            self.client,
            task_queue=self.queue,
            workflows=[ScalerWorkflow],
            activities=[self.resource.read_capacity, self.resource.set_capacity],
        )

    async def start(self, input: ScalerInput) -> WorkflowHandle:
        return await self.client.start_workflow(
            ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=self.queue
        )


@asynccontextmanager
async def scaler(
    client: Client, resource: FakeResource, health_timeout: timedelta | None = None, **policy: object
) -> AsyncIterator[WorkflowHandle]:
    scalers = Scalers(client, resource)
    async with scalers.worker():
        input = fake_input(scalers.queue, **policy)
        if health_timeout is not None:
            input = input.model_copy(update={"health_timeout": health_timeout})
        handle = await scalers.start(input)
        try:
            yield handle
        finally:
            await handle.terminate("test finished")


def request(desired: int, **extra: object) -> ScaleRequest:
    return ScaleRequest.model_validate({"desired": desired, "reason": "test", "requested_by": "t", **extra})


async def scale(handle: WorkflowHandle, desired: int, **extra: object) -> ScaleOperation:
    return await handle.execute_update(
        ScalerWorkflow.scale, request(desired, **extra), result_type=ScaleOperation
    )


async def status(handle: WorkflowHandle) -> ScalerStatus:
    return await handle.query(ScalerWorkflow.status)


def refusal(error: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> str:
    return str(getattr(error.value.cause, "message", error.value.cause))


async def test_a_scale_up_applies_waits_until_healthy_and_starts_the_cooldown(client: Client) -> None:
    resource = FakeResource(desired=2, start_seconds=0.5)
    async with scaler(client, resource, cooldown=timedelta(minutes=1)) as handle:
        done = await scale(handle, 3)
        now = await status(handle)
    assert done.status == OperationStatus.SUCCEEDED, done.detail
    assert (done.previous, done.target, done.reached) == (2, 3, 3)
    assert [desired for _, desired in resource.changes] == [3]
    assert now.capacity == 3 and now.healthy == 3 and now.cooldown_remaining_seconds > 0
    assert now.last is not None and now.last.operation_id == done.operation_id and now.current is None


async def test_a_forced_health_failure_compensates_to_exactly_the_previous_capacity(client: Client) -> None:
    resource = FakeResource(desired=2, never_healthy=True)
    async with scaler(client, resource) as handle:
        done = await scale(handle, 3)
        operations = await handle.query(ScalerWorkflow.operations)
    assert done.status == OperationStatus.COMPENSATED
    assert "not healthy within" in done.detail and "2 of 3 healthy" in done.detail
    assert [desired for _, desired in resource.changes] == [3, 2]  # applied, then put back
    assert resource.desired == 2 and done.reached == 2
    apply_key, undo_key = (key for key, _ in resource.changes)
    assert apply_key != undo_key and apply_key.endswith("-apply") and undo_key.endswith("-compensate")
    assert operations[-1].step == SagaStep.DONE


async def test_requests_in_the_cooldown_are_refused_or_queued_as_asked(client: Client) -> None:
    resource = FakeResource(desired=1)
    async with scaler(client, resource, cooldown=timedelta(seconds=3)) as handle:
        first = await scale(handle, 2)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await scale(handle, 3)
        assert resource.desired == 2  # the refused request changed nothing
        queued = await scale(handle, 3, if_cooling="queue")  # waits for the cooldown's end, then runs
    assert first.status == OperationStatus.SUCCEEDED
    assert "cooling down" in refusal(refused) and "queue" in refusal(refused)
    assert queued.status == OperationStatus.SUCCEEDED and resource.desired == 3
    assert queued.started_at is not None and first.started_at is not None
    assert queued.started_at - first.started_at >= timedelta(seconds=3)  # the cooldown runs from the change


async def test_out_of_bounds_requests_are_refused_with_the_bounds(client: Client) -> None:
    async with scaler(client, FakeResource(desired=1), min_capacity=1, max_capacity=4) as handle:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await scale(handle, 9)
    assert "9 is outside the bounds" in refusal(refused) and "1–4" in refusal(refused)


async def test_the_same_request_id_runs_once(client: Client) -> None:
    resource = FakeResource(desired=1)
    async with scaler(client, resource) as handle:
        first = await scale(handle, 2, request_id="act-1")
        again = await scale(handle, 2, request_id="act-1")  # e.g. a retried activity
    assert again.operation_id == first.operation_id and len(resource.changes) == 1


async def test_growth_beyond_the_blast_radius_waits_for_approval(client: Client) -> None:
    resource = FakeResource(desired=2)
    async with scaler(client, resource, blast_radius=0.5, blast_radius_units=1) as handle:
        rejected_run = asyncio.create_task(scale(handle, 4))  # +100 % > +50 %
        waiting = await eventually(
            lambda: handle.query("pending_approvals", result_type=list[ApprovalRequest])
        )
        assert resource.changes == []  # nothing happens before a person says yes
        await handle.execute_update(
            "reject",
            ApprovalDecision(approval_id=waiting[0].approval_id, approver="ops", reason="not now"),
            result_type=ApprovalRequest,
        )
        rejected = await rejected_run
        approved_run = asyncio.create_task(scale(handle, 4))
        waiting = await eventually(
            lambda: handle.query("pending_approvals", result_type=list[ApprovalRequest])
        )
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=waiting[0].approval_id, approver="ops", reason="peak"),
            result_type=ApprovalRequest,
        )
        approved = await approved_run
    assert rejected.status == OperationStatus.REJECTED and "not now" in rejected.detail
    assert "blast radius" in waiting[0].why
    assert approved.status == OperationStatus.SUCCEEDED and resource.desired == 4


async def test_cancelling_the_operation_compensates(client: Client) -> None:
    resource = FakeResource(desired=1, start_seconds=300)  # slow to become healthy
    # Only the cancel ends the wait, however long a busy machine takes to deliver it.
    async with scaler(client, resource, cooldown=timedelta(0), health_timeout=timedelta(minutes=5)) as handle:
        running = asyncio.create_task(scale(handle, 2))

        async def waiting_healthy() -> bool:
            current = (await status(handle)).current
            return current is not None and current.step == SagaStep.WAITING_HEALTHY

        await eventually(waiting_healthy)
        await handle.signal(ScalerWorkflow.cancel_operation, "wrong resource")
        done = await running
    assert done.status == OperationStatus.COMPENSATED and "wrong resource" in done.detail
    assert resource.desired == 1 and [d for _, d in resource.changes] == [2, 1]


async def test_the_cooldown_and_history_survive_a_worker_restart_and_continue_as_new(client: Client) -> None:
    resource = FakeResource(desired=1)
    scalers = Scalers(client, resource)
    input = fake_input(scalers.queue, cooldown=timedelta(minutes=5)).model_copy(
        update={"iterations_per_run": 1, "reconcile_interval": timedelta(milliseconds=300)}
    )
    async with scalers.worker():
        handle = await scalers.start(input)
        first = await scale(handle, 2)
    first_run = (await handle.describe()).run_id
    async with scalers.worker():  # a new worker: the workflow's state comes from its history
        await eventually(lambda: _new_run(handle, first_run))  # and it continued-as-new meanwhile
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await scale(handle, 3)
        operations = await handle.query(ScalerWorkflow.operations)
        await handle.terminate("test finished")
    assert first.status == OperationStatus.SUCCEEDED
    assert "cooling down" in refusal(refused)
    assert [o.operation_id for o in operations] == [first.operation_id]


async def _new_run(handle: WorkflowHandle, run_id: str | None) -> bool:
    return (await handle.describe()).run_id != run_id


async def test_a_resource_nobody_serves_is_reported_and_the_scaler_lives_on(client: Client) -> None:
    scalers = Scalers(client, FakeResource())
    input = fake_input(f"{scalers.queue}-nobody").model_copy(
        update={"read_timeout": timedelta(milliseconds=300), "reconcile_interval": timedelta(seconds=1)}
    )
    async with Worker(client, task_queue=scalers.queue, workflows=[ScalerWorkflow]):
        handle = await scalers.start(input)

        async def reported() -> str | None:
            return (await status(handle)).problem

        problem = await eventually(reported)
        description = await handle.describe()
        await handle.terminate("test finished")
    assert "timed out" in problem.lower() or "timeout" in problem.lower(), problem
    assert description.status is not None and description.status.name == "RUNNING"


async def test_a_refused_undo_is_tried_again_until_done_and_the_scaler_lives_on(client: Client) -> None:
    resource = FakeResource(desired=2, never_healthy=True)
    scalers = Scalers(client, resource)
    async with scalers.worker():
        handle, running = await _undo_refused_once(scalers, resource)
        resource.refuse_sets = 0  # e.g. a person fixed the permissions
        done = await running
        description = await handle.describe()
        await handle.terminate("test finished")
    assert done.status == OperationStatus.COMPENSATED and resource.desired == 2
    assert description.status is not None and description.status.name == "RUNNING"


async def test_cancelling_the_scaler_mid_undo_still_finishes_the_undo(client: Client) -> None:
    resource = FakeResource(desired=2, never_healthy=True)
    scalers = Scalers(client, resource)
    async with scalers.worker():
        handle, running = await _undo_refused_once(scalers, resource)
        await handle.cancel()  # arrives while the undo waits to try again
        resource.refuse_sets = 0
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        operations = await handle.query(ScalerWorkflow.operations)
    running.cancel()
    assert resource.desired == 2 and [d for _, d in resource.changes] == [3, 2]
    assert operations[-1].status == OperationStatus.COMPENSATED


async def _undo_refused_once(
    scalers: Scalers, resource: FakeResource
) -> tuple[WorkflowHandle, asyncio.Task[ScaleOperation]]:
    """A scale-up 2 → 3 that fails health, whose undo is then refused once (e.g. access denied)."""
    input = fake_input(scalers.queue).model_copy(update={"compensation_backoff": timedelta(seconds=1)})
    handle = await scalers.start(input)
    running = asyncio.create_task(scale(handle, 3))
    await eventually(lambda: _at_step(handle, SagaStep.WAITING_HEALTHY))
    resource.refuse_sets = 1000  # from now on every change is refused
    await eventually(lambda: _undo_refused(handle))
    return handle, running


async def _at_step(handle: WorkflowHandle, step: SagaStep) -> bool:
    current = (await status(handle)).current
    return current is not None and current.step == step


async def _undo_refused(handle: WorkflowHandle) -> bool:
    current = (await status(handle)).current
    return current is not None and "attempt 1 failed" in current.detail


async def test_a_running_scaler_takes_the_configured_policy(client: Client) -> None:
    resource = FakeResource(desired=1)
    scalers = Scalers(client, resource)
    input = fake_input(scalers.queue, max_capacity=4)
    settings = AutarkySettings(
        task_queue=scalers.queue,
        scaling=ScalingSettings(
            resources=[
                ScalableResource(resource=input.resource.id, policy=ScalingPolicy(max_capacity=6)),
                ScalableResource(resource="aws-asg/not-running-" + uuid.uuid4().hex[:6]),
            ]
        ),
    )
    async with scalers.worker():
        handle = await scalers.start(input)
        before = await status(handle)
        pushed = await push_policies(client, settings)
        after = await status(handle)
        await handle.terminate("test finished")
    assert before.max_capacity == 4 and after.max_capacity == 6
    assert pushed == [input.resource.id]  # the pool's and the other resource's scalers do not run
