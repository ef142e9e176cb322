"""Replay: recorded autopilot histories must replay with today's workflow code (determinism).

`python -m tests.test_replay` records a fresh history into tests/histories/ (do it when the workflow
changes on purpose, and say so in the commit).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from autarky.types import ApprovalDecision, ApprovalRequest
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, actions, eventually, fast_settings, pending
from workflows.autopilot import AutopilotWorkflow
from workflows.housekeeping import HousekeepingWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record_autopilot_history(client: Client, data_dir: Path) -> WorkflowHistory:
    """A run that covers monitor, findings, an approval, executed actions and continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
    async with harness.running(fast_settings(iterations_per_run=40)) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=request.approval_id, approver="recorder", reason="replay test"),
            result_type=ApprovalRequest,
        )

        async def finished() -> bool:
            return sum(1 for r in await actions(handle) if r.status.value == "succeeded") >= 3

        await eventually(finished)
        history = await handle.fetch_history()
    return history


def replayer() -> Replayer:
    return Replayer(
        workflows=[AutopilotWorkflow, HousekeepingWorkflow], data_converter=pydantic_data_converter
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    assert len(history.events) > 50  # a real recording, not an empty file
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_is_a_recorded_history() -> None:
    assert list(HISTORIES.glob("autopilot*.json")), "record one with: python -m tests.test_replay"


async def test_fresh_history_replays(client: Client, tmp_path: Path) -> None:
    history = await record_autopilot_history(client, tmp_path)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def _record_to_file() -> None:
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
    out = HISTORIES / "autopilot.json"
    out.write_text(history.to_json())
    print(f"wrote {out} ({len(history.events)} events)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_record_to_file())
