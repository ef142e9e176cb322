"""`autarky approve` / `reject` and the Python client's approvals, on a small workflow with the approval gate.

The gate (workflows/approval.py) is what every workflow that asks a person inherits; a workflow that only
asks keeps these tests independent of the autopilot's planning.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from autarky.client import ApprovalRefused, AutarkyClient, ServerUnavailable
from autarky.core.approval import ApprovalDecision, ApprovalRequest, ApprovalState
from autarky.core.settings import load_settings
from tests.test_autopilot import eventually
from tests.test_cli import cli
from workflows.approval import ApprovalGate

REASON_MISSING = '--reason is required and must not be empty: say why, e.g. --reason "pool is idle"\n'


@workflow.defn(name="CliApprovalTestWorkflow", sandboxed=False)
class AskingWorkflow(ApprovalGate):
    """Asks for one approval, records how it was decided and keeps running (as the autopilot does)."""

    def __init__(self) -> None:
        self._init_approval_gate([])
        self.outcome = ""

    @workflow.run
    async def run(self, approval_id: str) -> None:
        self.request_approval(
            approval_id, "restart_worker_pool on test-host", "a test asks", timedelta(hours=1)
        )
        self.outcome = (await self.wait_for_decision(approval_id)).state.value
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def decided(self) -> str:
        return self.outcome


@asynccontextmanager
async def asking(client: Client, count: int = 1) -> AsyncIterator[list[tuple[WorkflowHandle, str]]]:
    """`count` running workflows, each waiting for its own approval: [(handle, approval id)]."""
    task_queue = f"cli-approvals-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[AskingWorkflow]):
        started = []
        for _ in range(count):
            approval_id = f"apr-{uuid.uuid4().hex[:8]}"
            handle = await client.start_workflow(
                AskingWorkflow.run, approval_id, id=f"cli-asks-{approval_id}", task_queue=task_queue
            )
            started.append((handle, approval_id))
        try:
            for handle, approval_id in started:
                await eventually(lambda h=handle, a=approval_id: _pending(h, a))
            yield started
        finally:
            for handle, _ in started:
                await handle.terminate("test finished")


async def _pending(handle: WorkflowHandle, approval_id: str) -> bool:
    pending = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
    return [p.approval_id for p in pending] == [approval_id]


async def _listed(autarky: AutarkyClient, approval_id: str) -> bool:
    """The search attribute (visibility) shows the approval: `autarky approvals` and id lookup find it."""
    return approval_id in [p.request.approval_id for p in await autarky.pending_approvals()]


async def recorded_decisions(handle: WorkflowHandle, update_id: str) -> list[ApprovalDecision]:
    """The inputs of the accepted updates with `update_id`, as the workflow's history records them."""
    decisions: list[ApprovalDecision] = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.meta.update_id == update_id:
                decisions += pydantic_data_converter.payload_converter.from_payloads(
                    request.input.args.payloads, [ApprovalDecision]
                )
    return decisions


async def test_reason_and_snooze_are_checked_before_the_server_is_contacted() -> None:
    offline = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # contacting it would say "no Temporal server"
    for args in (["approve", "apr-1"], ["approve", "apr-1", "--reason", "  "], ["reject", "apr-1", "-r", ""]):
        assert await cli(None, *args, **offline) == (2, REASON_MISSING), args
    for bad in ("soon", "4w", "-1h", "4 h d"):
        code, out = await cli(None, "reject", "apr-1", "--reason", "no", "--snooze", bad, **offline)
        assert (code, out) == (2, f"--snooze {bad!r} is not a duration: write e.g. 30s, 5m, 4h or 1d\n")


async def test_reject_with_snooze_is_recorded_and_a_retry_answers_the_same(
    env: WorkflowEnvironment, client: Client
) -> None:
    autarky = AutarkyClient(client, load_settings())
    async with asking(client) as [(handle, approval_id)]:
        await eventually(lambda: _listed(autarky, approval_id))  # found without --workflow
        reject = ("reject", approval_id, "--reason", "not during the release", "--approver", "frank")
        code, out = await cli(env, *reject, "--snooze", "4h")
        assert (code, out) == (0, f"{approval_id}: rejected by frank\n")
        assert await eventually(lambda: handle.query(AskingWorkflow.decided)) == "rejected"
        [decision] = await recorded_decisions(handle, f"reject:{approval_id}")
        assert decision.snooze == timedelta(hours=4)
        assert (decision.approver, decision.reason) == ("frank", "not during the release")

        # The retry names the workflow: the approval is no longer pending, so a search would not find it.
        code, out = await cli(env, *reject, "--snooze", "4h", "--workflow", handle.id)
        assert (code, out) == (0, f"{approval_id}: rejected by frank\n")


async def test_a_retried_approve_is_deduplicated_not_refused(
    env: WorkflowEnvironment, client: Client
) -> None:
    async with asking(client) as [(handle, approval_id)]:
        approve = (
            "approve",
            approval_id,
            "-r",
            "pool is idle",
            "--approver",
            "erin",
            "--workflow",
            handle.id,
        )
        first = await cli(env, *approve)
        again = await cli(env, *approve)
        assert first == again == (0, f"{approval_id}: approved by erin\n")
        assert len(await recorded_decisions(handle, f"approve:{approval_id}")) == 1  # applied once
        # A different decision is a different update: refused as already decided.
        code, out = await cli(
            env, "reject", approval_id, "-r", "no", "--approver", "frank", "--workflow", handle.id
        )
        assert code == 1 and out.startswith(f"refused: approval {approval_id!r} was already approved by erin")
        assert len(out.splitlines()) == 1


async def test_the_python_client_raises_approval_refused_and_passes_the_snooze(client: Client) -> None:
    autarky = AutarkyClient(client, load_settings())
    async with asking(client, count=2) as [(first, first_id), (second, second_id)]:
        with pytest.raises(ApprovalRefused) as refused:
            await autarky.approve("apr-nope", "alice", "ok", workflow_id=first.id)
        error = refused.value
        assert str(error) == f"no approval with id 'apr-nope' in this workflow (pending: {first_id})"
        assert (error.approval_id, error.workflow_id) == ("apr-nope", first.id)
        assert isinstance(error.__cause__, WorkflowUpdateFailedError)

        with pytest.raises(ApprovalRefused, match="approver must name the person"):
            await autarky.reject(first_id, " ", "no", workflow_id=first.id)

        decided = await autarky.reject(
            second_id, "carol", "not now", workflow_id=second.id, snooze=timedelta(minutes=30)
        )
        assert decided.state == ApprovalState.REJECTED and decided.decided_by == "carol"
        [decision] = await recorded_decisions(second, f"reject:{second_id}")
        assert decision.snooze == timedelta(minutes=30)
        again = await autarky.reject(second_id, "carol", "not now", workflow_id=second.id)
        assert again.decided_at == decided.decided_at  # the first answer, not a second decision


async def test_the_python_client_raises_server_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ServerUnavailable) as unavailable:
        await AutarkyClient.connect(load_settings())
    assert unavailable.value.address == "127.0.0.1:1"
    assert str(unavailable.value) == (
        "no Temporal server at 127.0.0.1:1: start it with `make run`, or set TEMPORAL_ADDRESS"
    )
