"""ScalerWorkflow's saga, releases 27–28 (issue 28's defects): a refused change is "refused", not
compensated; a cancel that arrives while the change is applied undoes it; a large scale-down needs a
person."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client

from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.scaling.types import OperationStatus, SagaStep
from tests.scaler_fakes import FakeResource
from tests.test_autopilot import eventually
from tests.test_scaler import scale, scaler, status
from workflows.scaling import ScalerWorkflow


async def test_a_refused_change_is_refused_with_no_undo_and_no_cooldown(client: Client) -> None:
    resource = FakeResource(desired=1, refuse_sets=1)  # e.g. AccessDenied: nothing changes
    async with scaler(client, resource, cooldown=timedelta(minutes=5)) as handle:
        refused = await scale(handle, 2)
        assert refused.status == OperationStatus.REFUSED, refused
        assert "AccessDenied" in refused.detail and refused.reached == 1, refused
        assert resource.changes == []  # no undo of a change that never happened
        now = await status(handle)
        assert now.cooldown_remaining_seconds == 0, now  # nothing changed: nothing to cool down from
        again = await scale(handle, 2)  # a person fixed the permissions: no "cooling down" refusal
    assert again.status == OperationStatus.SUCCEEDED, again
    assert resource.desired == 2


async def test_a_cancel_while_the_change_is_applied_undoes_it(client: Client) -> None:
    # The apply takes a while and never heartbeats, so the cancel cannot reach it: its result comes back.
    resource = FakeResource(desired=2, apply_seconds=5.0)  # long enough for a slow signal
    async with scaler(client, resource, cooldown=timedelta(0)) as handle:
        running = asyncio.create_task(scale(handle, 3))

        async def applying() -> bool:
            current = (await status(handle)).current
            return current is not None and current.step == SagaStep.APPLYING

        await eventually(applying)
        await handle.signal(ScalerWorkflow.cancel_operation, "wrong resource")
        done = await running
    assert done.status == OperationStatus.COMPENSATED and "wrong resource" in done.detail, done
    assert resource.desired == 2 and [d for _, d in resource.changes] == [3, 2]
    assert done.reached == 2, done


async def test_a_scale_down_beyond_the_blast_radius_waits_for_approval(client: Client) -> None:
    resource = FakeResource(desired=10)
    async with scaler(
        client, resource, blast_radius=1.0, blast_radius_units=1, cooldown=timedelta(0)
    ) as handle:
        halved = await scale(handle, 5)  # halving mirrors doubling: routine
        assert halved.status == OperationStatus.SUCCEEDED, halved
        to_zero = asyncio.create_task(scale(handle, 0))  # 5 → 0: more than half
        waiting = await eventually(
            lambda: handle.query("pending_approvals", result_type=list[ApprovalRequest])
        )
        assert [d for _, d in resource.changes] == [5]  # nothing happens before a person says yes
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=waiting[0].approval_id, approver="ops", reason="weekend"),
            result_type=ApprovalRequest,
        )
        done = await to_zero
    assert "shrinks capacity by 5" in waiting[0].why
    assert done.status == OperationStatus.SUCCEEDED and resource.desired == 0, done
