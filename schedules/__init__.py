"""Schedules declared in code and synced idempotently (create, or update in place; never duplicate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from autarky import search_attributes as sa
from autarky.config import AutarkySettings
from autarky.types import HousekeepingInput


@dataclass(frozen=True)
class DeclaredSchedule:
    schedule_id: str
    description: str
    build: Callable[[AutarkySettings], Schedule]


def _housekeeping(settings: AutarkySettings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "HousekeepingWorkflow",
            HousekeepingInput(max_age=settings.cache_max_age),
            id="autarky-housekeeping",
            task_queue=settings.task_queue,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, "housekeeping")]),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


SCHEDULES: list[DeclaredSchedule] = [
    DeclaredSchedule(
        "autarky-housekeeping", "hourly: prune cache files older than cache_max_age", _housekeeping
    ),
    # The research cycle (hourly) arrives with its own issue.
]


async def sync_schedules(client: Client, settings: AutarkySettings) -> dict[str, str]:
    """Create each declared schedule, or update the existing one to match; {id: "created"|"updated"}."""
    outcome: dict[str, str] = {}
    for declared in SCHEDULES:
        schedule = declared.build(settings)
        try:
            await client.create_schedule(declared.schedule_id, schedule)
            outcome[declared.schedule_id] = "created"
        except ScheduleAlreadyRunningError:

            def replace(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                new.state = current.description.schedule.state  # keep a person's pause and note
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(declared.schedule_id).update(replace)
            outcome[declared.schedule_id] = "updated"
    return outcome
