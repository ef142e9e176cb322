"""Replay: recorded autopilot histories must replay with today's workflow code (determinism).

`python -m tests.test_replay NAME` records a fresh history into tests/histories/NAME.json. When the
workflow changes on purpose, guard the change with `workflow.patched()`, keep the old histories (they
prove running workflows still replay) and record a new one.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from autarky.types import (
    ActionRequest,
    ActionResult,
    ApprovalDecision,
    ApprovalRequest,
    ApprovalSignal,
    AutopilotStatus,
)
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, _first, actions, eventually, fast_settings, pending
from workflows.autopilot import AutopilotWorkflow
from workflows.housekeeping import HousekeepingWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record_autopilot_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """The first run of an autopilot: monitor, findings, an approval, executed actions, continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
    harness.workflow_id = workflow_id or harness.workflow_id
    async with harness.running(fast_settings(iterations_per_run=30)) as handle:
        first_run = (await handle.describe()).run_id
        request = (await eventually(lambda: pending(handle)))[0]
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=request.approval_id, approver="recorder", reason="replay test"),
            result_type=ApprovalRequest,
        )

        async def finished() -> bool:
            done = sum(1 for r in await actions(handle) if r.status.value == "succeeded") >= 3
            return done and (await handle.query("status", result_type=AutopilotStatus)).runs >= 1

        await eventually(finished)
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


@dataclass
class BrokenPool:
    """A pool restart that fails for good, so the recording holds a failed action."""

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        raise ApplicationError("the pool's supervisor is unreachable", non_retryable=True)


async def record_round2_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """Per-host routing on: an approval that expires, one approved by signal whose action fails, a child
    workflow action (prune_cache), host discovery, draining, continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
    harness.pool_activities["test-host"] = [BrokenPool().restart_worker_pool]
    # The file's name is the id replay uses, and child workflow ids derive from it.
    harness.workflow_id = workflow_id or harness.workflow_id
    settings = fast_settings(
        iterations_per_run=12,
        approval_timeout=timedelta(seconds=1),
        rejection_snooze=timedelta(0),  # the expired remedy is asked for again at once
        action_cooldown=timedelta(0),
    )
    async with harness.running(settings) as handle:
        first_run = (await handle.describe()).run_id
        first = (await eventually(lambda: pending(handle)))[0]
        second = await eventually(
            lambda: _first(pending(handle), lambda ps: [p for p in ps if p.approval_id != first.approval_id])
        )
        await handle.signal(
            "decide_approval",
            ApprovalSignal(approval_id=second[0].approval_id, approve=True, approver="recorder", reason="go"),
        )

        async def finished() -> bool:
            records = await actions(handle)
            failed = any(r.status.value == "failed" for r in records)
            child = any(r.decision.candidate.action_type == "prune_cache" and r.finished_at for r in records)
            return failed and child and (await handle.query("status", result_type=AutopilotStatus)).runs >= 1

        await eventually(finished, timeout=40)
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


RECORDERS = {"autopilot": record_autopilot_history, "autopilot-round2": record_round2_history}
# What each recording must hold to be worth replaying (beyond activities, timers and continue-as-new).
REQUIRED = {
    "autopilot-before-detectors": {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED},
    "autopilot-detectors": {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED},
    "autopilot-round2": {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_MARKER_RECORDED,  # the per-host-routing patch
    },
}


def replayer() -> Replayer:
    return Replayer(
        workflows=[AutopilotWorkflow, HousekeepingWorkflow], data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    kinds = {event.event_type for event in history.events}
    # A real recording: it covers an approval, activities, timers and continue-as-new.
    assert {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_TIMER_FIRED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    } | REQUIRED[path.stem] <= kinds
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_is_a_recorded_history() -> None:
    assert list(HISTORIES.glob("autopilot*.json")), "record one with: python -m tests.test_replay autopilot"


@pytest.mark.parametrize("name", sorted(RECORDERS))
async def test_fresh_history_replays(client: Client, tmp_path: Path, name: str) -> None:
    history = await RECORDERS[name](client, tmp_path)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def _record_to_file(name: str) -> None:
    from temporalio.testing import WorkflowEnvironment

    from autarky import search_attributes as sa
    from autarky.temporal import temporal_binary

    with TemporaryDirectory() as tmp:
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()),
            data_converter=pydantic_data_converter,
            search_attributes=list(sa.ALL),
        ) as env:
            history = await RECORDERS[name](env.client, Path(tmp), name)
    out = HISTORIES / f"{name}.json"
    out.write_text(history.to_json())
    print(f"wrote {out} ({len(history.events)} events)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_record_to_file(sys.argv[1] if len(sys.argv) > 1 else "autopilot"))
