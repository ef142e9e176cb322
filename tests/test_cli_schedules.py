"""`autarky schedules sync` and `autarky schedules list` against the test server."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from schedules import SCHEDULES
from tests.test_autopilot import eventually
from tests.test_cli import cli, table_rows

HOUSEKEEPING = "autarky-housekeeping"


def outcomes(out: str) -> dict[str, str]:
    """`schedules sync` output: one `ID: created|updated` line per declared schedule, nothing else."""
    synced = dict(line.split(": ", 1) for line in out.splitlines())
    assert sorted(synced) == sorted(s.schedule_id for s in SCHEDULES), out
    assert set(synced.values()) <= {"created", "updated"}, out
    return synced


async def listed_row(env: WorkflowEnvironment, schedule_id: str, paused: str) -> list[str] | None:
    """`autarky schedules list`'s row for the schedule once it shows `paused` (the list is eventually
    consistent: it comes from the server's visibility store)."""
    code, out = await cli(env, "schedules", "list")
    assert code == 0, out
    rows = [row for row in table_rows(out) if row and row[0] == schedule_id]
    assert len(rows) <= 1, out  # never duplicated
    return rows[0] if rows and rows[0][3] == paused else None


async def test_sync_creates_then_updates_and_list_shows_the_schedule(
    env: WorkflowEnvironment, client: Client
) -> None:
    assert HOUSEKEEPING in [s.schedule_id for s in SCHEDULES]
    handle = client.get_schedule_handle(HOUSEKEEPING)
    with contextlib.suppress(RPCError):  # left by another test on this server
        await handle.delete()
    task_queue = f"cli-schedules-{uuid.uuid4().hex[:8]}"  # no worker: nothing it starts would run
    try:
        code, out = await cli(env, "schedules", "sync", AUTARKY_TASK_QUEUE=task_queue)
        assert code == 0 and outcomes(out)[HOUSEKEEPING] == "created", out
        action = (await handle.describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == task_queue

        row = await eventually(lambda: listed_row(env, HOUSEKEEPING, paused="no"))
        assert row[1] == "HousekeepingWorkflow"
        next_run = datetime.strptime(row[2], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        now = datetime.now(UTC)
        assert now - timedelta(seconds=5) < next_run <= now + timedelta(hours=1)  # hourly

        await handle.pause(note="maintenance")  # a person's pause survives a sync
        code, out = await cli(env, "schedules", "sync", AUTARKY_TASK_QUEUE=task_queue)
        assert code == 0 and outcomes(out)[HOUSEKEEPING] == "updated", out
        assert (await handle.describe()).schedule.state.paused
        await eventually(lambda: listed_row(env, HOUSEKEEPING, paused="yes"))
    finally:
        with contextlib.suppress(RPCError):
            await handle.delete()
