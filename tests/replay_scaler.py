"""The scaler's recorder for tests/test_replay.py: one ScalerWorkflow run through every path of its saga."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.worker import Worker

from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.scaling.policy_types import ResourceRef
from autarky.scaling.types import SagaStep
from tests.scaler_fakes import FakeResource, fake_input
from tests.test_autopilot import eventually, pending
from tests.test_scaler import scale
from workflows.scaling import ScalerWorkflow


async def record_scaler_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """A scaler's first run: a change that succeeds, one that fails health and compensates, one that asks
    for approval (approved), one cancelled by signal, one the provider refuses, one cancelled while it is
    applied, a scale-down beyond the blast radius (approved), a refused update, continue-as-new."""
    resource = FakeResource(desired=2, start_seconds=0.3)
    queue = f"scaler-replay-{uuid.uuid4().hex[:8]}"
    input = fake_input(queue, cooldown=timedelta(0), blast_radius=0.5, blast_radius_units=1).model_copy(
        update={"iterations_per_run": 14, "reconcile_interval": timedelta(milliseconds=500)}
    )
    if workflow_id:  # the file's name is the id replay uses
        input = input.model_copy(update={"resource": ResourceRef.parse(f"aws-asg/{workflow_id}")})
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[ScalerWorkflow],
        activities=[resource.read_capacity, resource.set_capacity],
    )
    async with worker:
        handle = await client.start_workflow(
            ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=queue
        )
        first_run = (await handle.describe()).run_id
        await scale(handle, 3)
        resource.never_healthy = True
        await scale(handle, 4)
        resource.never_healthy, resource.start_seconds = False, 30.0
        cancelled = asyncio.create_task(scale(handle, 4))  # from 3, after the compensation
        await asyncio.sleep(1.0)
        await handle.signal(ScalerWorkflow.cancel_operation, "recorded cancel")
        await cancelled
        resource.start_seconds = 0.3
        await _scale_approved(handle, 6, "replay")
        resource.refuse_sets = 1
        await scale(handle, 5)  # refused by the provider, nothing changed (release 27: "refused")
        resource.apply_seconds = 3.0
        applying = asyncio.create_task(scale(handle, 5))
        await eventually(lambda: _applying(handle))
        await handle.signal(ScalerWorkflow.cancel_operation, "cancelled while applying")
        await applying  # release 27: undone although the apply's result came back
        resource.apply_seconds = 0.0
        await _scale_approved(handle, 2, "shrink")  # 6 → 2: beyond the blast radius (release 28)
        with contextlib.suppress(WorkflowUpdateFailedError):
            await scale(handle, 99)  # out of bounds: refused
        await eventually(lambda: _continued(handle, first_run), timeout=120)
        history = await client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
        await handle.terminate("recorded")
        return history


async def _scale_approved(handle: WorkflowHandle, desired: int, reason: str) -> None:
    """A change beyond the blast radius: it waits for a person, who approves it."""
    change = asyncio.create_task(scale(handle, desired))
    waiting = await eventually(lambda: pending(handle))
    await handle.execute_update(
        "approve",
        ApprovalDecision(approval_id=waiting[0].approval_id, approver="recorder", reason=reason),
        result_type=ApprovalRequest,
    )
    await change


async def _applying(handle: WorkflowHandle) -> bool:
    current = (await handle.query(ScalerWorkflow.status)).current
    return current is not None and current.step == SagaStep.APPLYING


async def _continued(handle: WorkflowHandle, first_run: str | None) -> bool:
    return (await handle.describe()).run_id != first_run
