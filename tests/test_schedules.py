"""`sync_schedules` against a real Temporal dev server: create, update, and delete only Autarky's own.

Deleting is namespace-wide (every marked schedule not declared goes), so each test has its own dev server:
on the session server it would delete the schedules other tests' syncs create, and theirs would delete ours.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.core.temporal import temporal_binary
from schedules import (
    FOREIGN,
    MARKER_KEY,
    MARKER_VALUE,
    RESEARCH_SCHEDULE_ID,
    SCHEDULES,
    DeclaredSchedule,
    sync_schedules,
)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,  # as Autarky connects (HousekeepingInput is pydantic)
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    )
    try:
        yield environment.client
    finally:
        await environment.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> AutarkySettings:
    return AutarkySettings(data_dir=tmp_path)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def daily(workflow_id: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow("HousekeepingWorkflow", id=workflow_id, task_queue="nobody"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
    )


def declared(*schedule_ids: str) -> list[DeclaredSchedule]:
    return [DeclaredSchedule(i, f"test schedule {i}", lambda _s, i=i: daily(i)) for i in schedule_ids]


async def listed_ids(client: Client) -> list[str]:
    return [s.id async for s in await client.list_schedules()]


async def until_listed(client: Client, *schedule_ids: str) -> None:
    """The schedule list is eventually consistent: wait until it shows these ids."""
    deadline = asyncio.get_running_loop().time() + 30  # returns as soon as listed
    while not set(schedule_ids) <= set(await listed_ids(client)):
        assert asyncio.get_running_loop().time() < deadline, f"{schedule_ids} never listed"
        await asyncio.sleep(0.1)


async def exists(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_created_schedules_carry_autarkys_marker(
    client: Client, settings: AutarkySettings, prefix: str
) -> None:
    outcome = await sync_schedules(client, settings, declared(f"{prefix}-a"))
    assert outcome == {f"{prefix}-a": "created"}
    description = await client.get_schedule_handle(f"{prefix}-a").describe()
    assert await description.memo() == {MARKER_KEY: MARKER_VALUE}


async def test_a_schedule_autarky_created_and_no_longer_declares_is_deleted(
    client: Client, settings: AutarkySettings, prefix: str
) -> None:
    kept, dropped = f"{prefix}-kept", f"{prefix}-dropped"
    assert await sync_schedules(client, settings, declared(kept, dropped)) == {
        kept: "created",
        dropped: "created",
    }
    await until_listed(client, kept, dropped)

    assert await sync_schedules(client, settings, declared(kept)) == {kept: "updated", dropped: "deleted"}
    assert await exists(client, kept)
    assert not await exists(client, dropped)


async def test_schedules_without_autarkys_marker_are_never_deleted(
    client: Client, settings: AutarkySettings, prefix: str
) -> None:
    foreign, other_owner = f"{prefix}-foreign", f"{prefix}-other-owner"
    await client.create_schedule(foreign, daily(foreign))  # someone else's: no memo
    await client.create_schedule(other_owner, daily(other_owner), memo={MARKER_KEY: "terraform"})
    await until_listed(client, foreign, other_owner)

    outcome = await sync_schedules(client, settings, declared(f"{prefix}-mine"))
    assert outcome == {f"{prefix}-mine": "created"}
    assert await exists(client, foreign)
    assert await exists(client, other_owner)


async def test_a_foreign_schedule_with_a_declared_id_is_reported_not_overwritten(
    client: Client, settings: AutarkySettings
) -> None:
    """Someone's own `research` schedule (issue 25): the sync overwrote it with Autarky's."""
    theirs = Schedule(
        action=ScheduleActionStartWorkflow("TheirResearch", id="their-research", task_queue="theirs"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=3))]),
    )
    await client.create_schedule(RESEARCH_SCHEDULE_ID, theirs, memo={"owner": "data-team"})
    with capture_logs() as logs:
        outcome = await sync_schedules(client, settings)
    assert outcome[RESEARCH_SCHEDULE_ID] == FOREIGN
    assert outcome["autarky-housekeeping"] == "created"  # the others are synced as usual

    description = await client.get_schedule_handle(RESEARCH_SCHEDULE_ID).describe()
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "TheirResearch"
    assert description.schedule.spec.intervals[0].every == timedelta(days=3)
    assert await description.memo() == {"owner": "data-team"}
    [warning] = [e for e in logs if e.get("schedule_id") == RESEARCH_SCHEDULE_ID]
    assert warning["log_level"] == "warning"
    message = warning["event"]  # names it and says how to resolve it
    assert "'research'" in message and "managed_by=autarky" in message
    assert "temporal schedule delete --schedule-id research" in message and "research.enabled" in message

    await until_listed(client, RESEARCH_SCHEDULE_ID)
    assert (await sync_schedules(client, settings))[RESEARCH_SCHEDULE_ID] == FOREIGN  # again, and kept
    settings.research.enabled = False  # not declared any more: still not Autarky's to delete
    assert RESEARCH_SCHEDULE_ID not in await sync_schedules(client, settings)
    assert await exists(client, RESEARCH_SCHEDULE_ID)


async def test_syncing_twice_updates_in_place_and_keeps_a_persons_pause(
    client: Client, settings: AutarkySettings, prefix: str
) -> None:
    a, b = f"{prefix}-a", f"{prefix}-b"
    assert await sync_schedules(client, settings, declared(a, b)) == {a: "created", b: "created"}
    await client.get_schedule_handle(a).pause(note="maintenance window")
    await until_listed(client, a, b)

    assert await sync_schedules(client, settings, declared(a, b)) == {a: "updated", b: "updated"}
    assert sorted(await listed_ids(client)) == [a, b]  # nothing duplicated, nothing deleted
    state = (await client.get_schedule_handle(a).describe()).schedule.state
    assert state.paused and state.note == "maintenance window"
    description = await client.get_schedule_handle(b).describe()
    assert await description.memo() == {MARKER_KEY: MARKER_VALUE}  # an update keeps the marker


async def test_the_default_declared_list_is_autarkys_schedules(
    client: Client, settings: AutarkySettings
) -> None:
    outcome = await sync_schedules(client, settings)
    assert outcome == {s.schedule_id: "created" for s in SCHEDULES}
    assert "autarky-housekeeping" in outcome


async def test_a_schedule_that_runs_when_created_runs_once_then_keeps_its_interval(
    client: Client, settings: AutarkySettings, prefix: str
) -> None:
    """The research schedule's first cycle runs at creation (a new stack shows its research now, not an
    hour later); syncing again does not run it again."""
    schedule_id = f"{prefix}-first"
    at_once = [DeclaredSchedule(schedule_id, "test", lambda _s: daily(schedule_id), run_when_created=True)]
    assert await sync_schedules(client, settings, at_once) == {schedule_id: "created"}
    handle = client.get_schedule_handle(schedule_id)
    deadline = asyncio.get_running_loop().time() + 30  # returns as soon as the action is counted
    while (await handle.describe()).info.num_actions < 1:
        assert asyncio.get_running_loop().time() < deadline, "the schedule did not run when created"
        await asyncio.sleep(0.1)
    assert await sync_schedules(client, settings, at_once) == {schedule_id: "updated"}
    await asyncio.sleep(1)  # an action a second sync started would be counted by now
    assert (await handle.describe()).info.num_actions == 1
    assert next(s for s in SCHEDULES if s.schedule_id == RESEARCH_SCHEDULE_ID).run_when_created
