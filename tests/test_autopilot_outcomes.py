"""What the autopilot learns from outcomes, and how the loop behaves around them (real test server).

Failing and timed-out actions lower the learned figures; a bug is not an outcome (it fails the workflow
task); a rejection snoozes its remedy; urgency alone does not ask a person; approval by signal.
(Continue-as-new while actions run: tests/test_autopilot_fleet.py.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from autarky.autopilot.fleet import action_run_id
from autarky.autopilot.types import ActionStatus, Priority
from autarky.client import AutarkyClient
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.approval import ApprovalDecision, ApprovalSignal
from autarky.core.settings import load_settings
from tests.fakes import FakeHost
from tests.test_autopilot import (
    Harness,
    _first,
    actions,
    decide,
    eventually,
    fast_settings,
    of_type,
    pending,
    status,
)


@dataclass
class Failing:
    """Stand-ins for the remedies: clear_cache fails for good; notify works."""

    calls: list[str] = field(default_factory=list)

    @activity.defn(name="clear_cache")
    async def clear_cache(self, request: ActionRequest) -> ActionResult:
        self.calls.append(request.action_id)
        raise ApplicationError("the cache volume is read-only", non_retryable=True)

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        return ActionResult(success=True, detail="noted", improvement_measured=False)


@dataclass
class Malformed(Failing):
    """notify answers with something that is not an ActionResult: decoding it in the workflow fails."""

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> dict[str, Any]:  # type: ignore[override]
        return {"success": "perhaps"}


async def test_a_failing_action_lowers_what_is_learned(client: Client, tmp_path: Path) -> None:
    broken = Failing()
    harness = Harness(client, tmp_path, FakeHost(disk=90.0))
    harness.slow = broken  # type: ignore[assignment]  # same activity names as SlowActions
    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        failed = await eventually(
            lambda: _first(actions(handle), lambda rs: of_type(rs, "clear_cache", ActionStatus.FAILED))
        )
        s = await status(handle)
    assert "the cache volume is read-only" in (failed[0].error or "")
    assert s.knowledge["clear_cache"].attempts == 1 and s.knowledge["clear_cache"].successes == 0
    assert s.success_probabilities["clear_cache"] < 0.9  # below its prior
    assert len(broken.calls) == 1  # non-retryable: tried once


@dataclass
class Stuck:
    """A pool restart that hangs without reporting progress (a wedged worker)."""

    attempts: int = 0

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        self.attempts += 1
        await asyncio.sleep(30)
        return ActionResult(success=True, detail="too late")


async def test_a_timed_out_action_fails_and_lowers_what_is_learned(client: Client, tmp_path: Path) -> None:
    stuck = Stuck()
    harness = Harness(client, tmp_path, FakeHost(memory=90.0))
    harness.pool_activities["test-host"] = [stuck.restart_worker_pool]
    settings = fast_settings(
        action_heartbeat_timeout=timedelta(seconds=1), action_cooldown=timedelta(hours=1)
    )
    async with harness.running(settings) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        # Approved by signal, as from the UI's signal button or `temporal workflow signal`.
        await handle.signal(
            "decide_approval",
            ApprovalSignal(approval_id=request.approval_id, approve=True, approver="ops-ann", reason="go"),
        )
        failed = await eventually(
            lambda: _first(
                actions(handle), lambda rs: of_type(rs, "restart_worker_pool", ActionStatus.FAILED)
            ),
            timeout=40,
        )
        s = await status(handle)
    assert failed[0].approval_id == request.approval_id and "approved by ops-ann: go" in failed[0].detail
    assert "Heartbeat" in (failed[0].error or "") or "heartbeat" in (failed[0].error or "")
    assert stuck.attempts >= 2  # a silent worker is given up on and the action retried elsewhere
    assert s.knowledge["restart_worker_pool"].successes == 0
    assert s.success_probabilities["restart_worker_pool"] < 0.8


async def test_a_bug_fails_the_workflow_task_instead_of_teaching_a_failure(
    client: Client, tmp_path: Path
) -> None:
    harness = Harness(client, tmp_path, FakeHost(disk=90.0))
    harness.slow = Malformed()  # type: ignore[assignment]

    async def task_failed() -> Any:
        running = [r for r in await actions(handle) if r.status == ActionStatus.RUNNING]
        for record in running:  # the action's own workflow (release 25) decodes the result
            run = client.get_workflow_handle(action_run_id(handle.id, record.action_id))
            try:
                history = await run.fetch_history()
            except RPCError as error:  # recorded as running a moment before its workflow starts (busy CI)
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events):
                return history
        return None

    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        history = await eventually(task_failed)
        records = await actions(handle)
    # The malformed result never became an outcome: nothing recorded notify as failed.
    failures = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    message = failures[0].workflow_task_failed_event_attributes.failure.message
    assert "Failed decoding" in message
    assert not any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED for e in history.events
    )  # the workflow itself is not failed: fixed code would carry it on
    notify = [r for r in records if r.decision.candidate.action_type == "notify"]
    assert notify and {r.status for r in notify} == {ActionStatus.RUNNING}  # not learnt as failed


async def test_a_rejection_snoozes_its_remedy_on_that_host(client: Client, tmp_path: Path) -> None:
    harness = Harness(client, tmp_path, FakeHost(memory=90.0))
    async with harness.running(fast_settings()) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        await decide(
            handle,
            "reject",
            ApprovalDecision(
                approval_id=request.approval_id, approver="bo", reason="release", snooze=timedelta(hours=4)
            ),
        )
        await asyncio.sleep(1.5)  # several plan rounds (300 ms) with the finding still there
        still = await pending(handle)
        s = await status(handle)
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        records = await actions(handle)
    assert still == []  # not asked again
    [snooze] = s.snoozes
    assert (snooze.action_type, snooze.host) == ("restart_worker_pool", "test-host")
    rejected_at = next(a for a in records if a.approval_id == request.approval_id).finished_at
    assert rejected_at is not None
    assert abs((snooze.until - rejected_at) - timedelta(hours=4)) < timedelta(seconds=1)
    assert "Snoozed" in metadata.current_details and "restart_worker_pool on test-host" in (
        metadata.current_details
    )


async def test_urgency_orders_but_only_risk_asks_a_person(client: Client, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "big.bin").write_bytes(b"x" * 4096)
    harness = Harness(client, tmp_path, FakeHost(disk=96.0))  # ≥ 95 %: critical
    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        cleared = await eventually(
            lambda: _first(actions(handle), lambda rs: of_type(rs, "clear_cache", ActionStatus.SUCCEEDED))
        )
        waiting = await pending(handle)
    assert cleared[0].decision.candidate.priority == Priority.CRITICAL
    assert cleared[0].approval_id is None and not cleared[0].decision.needs_approval
    assert not [w for w in waiting if w.subject.startswith("clear_cache")]
    assert not (cache / "big.bin").exists()


async def test_the_network_probe_aims_at_the_temporal_server_in_use(client: Client) -> None:
    derived = AutarkyClient(client, load_settings()).autopilot_settings()
    assert derived.network_targets == [client.service_client.config.target_host]
    chosen = load_settings(autopilot={"network_targets": ["db:5432"]})
    assert AutarkyClient(client, chosen).autopilot_settings().network_targets == ["db:5432"]
