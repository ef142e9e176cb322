"""Replay: recorded autopilot histories must replay with today's workflow code (determinism).

`python -m tests.test_replay NAME` records a fresh history into tests/histories/NAME.json. When the
workflow changes on purpose, guard the change with `workflow.patched()`, keep the old histories (they
prove running workflows still replay) and record a new one.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from autarky.types import ApprovalDecision, ApprovalRequest, AutopilotStatus
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, actions, eventually, fast_settings, pending
from workflows.autopilot import AutopilotWorkflow
from workflows.housekeeping import HousekeepingWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record_autopilot_history(client: Client, data_dir: Path) -> WorkflowHistory:
    """The first run of an autopilot: monitor, findings, an approval, executed actions, continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
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


def replayer() -> Replayer:
    return Replayer(
        workflows=[AutopilotWorkflow, HousekeepingWorkflow], data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    kinds = {event.event_type for event in history.events}
    # A real recording: it covers an update (approval), activities, timers and continue-as-new.
    assert {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_TIMER_FIRED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    } <= kinds
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_is_a_recorded_history() -> None:
    assert list(HISTORIES.glob("autopilot*.json")), "record one with: python -m tests.test_replay autopilot"


async def test_fresh_history_replays(client: Client, tmp_path: Path) -> None:
    history = await record_autopilot_history(client, tmp_path)
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
            history = await record_autopilot_history(env.client, Path(tmp))
    out = HISTORIES / f"{name}.json"
    out.write_text(history.to_json())
    print(f"wrote {out} ({len(history.events)} events)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_record_to_file(sys.argv[1] if len(sys.argv) > 1 else "autopilot"))
