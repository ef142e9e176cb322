"""Schedules declared in code and synced idempotently (create, or update in place; never duplicate).

Autarky marks the schedules it creates (memo {"managed_by": "autarky"}) and touches only those: it updates
them, and deletes the ones no longer declared. A schedule without the marker is never changed or deleted,
even one whose id Autarky declares (e.g. someone's own `research`): the sync reports it (FOREIGN, with a
warning saying how to resolve it) and leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleListDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from autarky.autopilot.types import HousekeepingInput
from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID
from autarky.research.types import CycleInput

log = structlog.get_logger(__name__)

# The memo that marks a schedule as Autarky's (set on creation; Temporal cannot change a schedule's memo).
MARKER_KEY = "managed_by"
MARKER_VALUE = "autarky"
MARKER = {MARKER_KEY: MARKER_VALUE}


@dataclass(frozen=True)
class DeclaredSchedule:
    schedule_id: str
    description: str
    build: Callable[[AutarkySettings], Schedule]
    # Whether the settings want it; a schedule switched off is deleted by the next sync.
    enabled: Callable[[AutarkySettings], bool] = lambda _settings: True
    # The setting that switches it off, for the message about a foreign schedule with its id.
    switch: str | None = None
    # Run once as soon as it is created: a new stack shows what it does now, not an interval later.
    run_when_created: bool = False


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


def _research(settings: AutarkySettings) -> Schedule:
    interval = settings.research.interval
    return Schedule(
        # Runs are named by Temporal: `research-2026-11-22T18:00:00Z`.
        action=ScheduleActionStartWorkflow(
            "ResearchCycleWorkflow",
            CycleInput(
                trigger="schedule",
                activity_task_queue=settings.research_task_queue,
                report_to=AUTOPILOT_WORKFLOW_ID,
            ),
            id=RESEARCH_SCHEDULE_ID,
            task_queue=settings.task_queue,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, "research")]),
            # A wedged cycle must not skip every later one (overlap: skip): it ends after two intervals.
            run_timeout=2 * interval,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        # A cycle still running when the next is due: skip it. After downtime, catch up one missed cycle
        # (the last one within one interval), not one per missed interval.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(interval, MIN_CATCHUP)),
    )


RESEARCH_SCHEDULE_ID = "research"
MIN_CATCHUP = timedelta(seconds=10)  # Temporal's minimum catch-up window

SCHEDULES: list[DeclaredSchedule] = [
    DeclaredSchedule(
        "autarky-housekeeping", "hourly: prune cache files older than cache_max_age", _housekeeping
    ),
    DeclaredSchedule(
        RESEARCH_SCHEDULE_ID,
        "every research.interval (1 h): new arXiv papers and GitHub repositories, analysed and stored",
        _research,
        enabled=lambda settings: settings.research.enabled,
        switch="research.enabled = false",
        run_when_created=True,
    ),
]
# The outcome for a declared id held by a schedule Autarky did not create (its own is not created).
FOREIGN = "not Autarky's, left as it is"


async def sync_schedules(
    client: Client, settings: AutarkySettings, declared: Sequence[DeclaredSchedule] | None = None
) -> dict[str, str]:
    """Create each declared schedule (marked as Autarky's), or update Autarky's existing one to match; then
    delete the schedules Autarky marked that are no longer declared. A declared id held by a schedule
    without the marker is left alone (FOREIGN) and logged with how to resolve it.
    {id: "created" | "updated" | "deleted" | FOREIGN}."""
    declared = [item for item in (SCHEDULES if declared is None else declared) if item.enabled(settings)]
    outcome: dict[str, str] = {}
    for item in declared:
        schedule = item.build(settings)
        try:
            await client.create_schedule(
                item.schedule_id, schedule, memo=MARKER, trigger_immediately=item.run_when_created
            )
            outcome[item.schedule_id] = "created"
        except ScheduleAlreadyRunningError:
            foreign = False

            async def replace(
                current: ScheduleUpdateInput, new: Schedule = schedule
            ) -> ScheduleUpdate | None:
                nonlocal foreign
                if not await _marked(current.description):
                    foreign = True
                    return None  # someone else's: no update at all
                new.state = current.description.schedule.state  # keep a person's pause and note
                return ScheduleUpdate(schedule=new)

            # The update reads the schedule and writes only if it did not change since (conflict token).
            await client.get_schedule_handle(item.schedule_id).update(replace)
            outcome[item.schedule_id] = FOREIGN if foreign else "updated"
            if foreign:
                log.warning(foreign_message(item), schedule_id=item.schedule_id)
    outcome |= await _delete_undeclared(client, {item.schedule_id for item in declared})
    return outcome


def foreign_message(item: DeclaredSchedule) -> str:
    """What a person reads about a schedule Autarky declares but did not create, and how to resolve it."""
    off = f", or switch Autarky's off ({item.switch})" if item.switch else ""
    return (
        f"schedule {item.schedule_id!r} exists but was not created by Autarky (its memo lacks "
        f"{MARKER_KEY}={MARKER_VALUE}): it is left as it is, and Autarky's own is not created. "
        f"If it is yours, give it another id{off}; if an older Autarky created it, delete it "
        f"(`temporal schedule delete --schedule-id {item.schedule_id}`) and the next sync "
        "(`autarky up` or `autarky schedules sync`) creates Autarky's, marked"
    )


async def _marked(schedule: ScheduleDescription | ScheduleListDescription) -> bool:
    """Whether the schedule carries Autarky's marker; a memo this client cannot decode is not Autarky's."""
    try:
        return await schedule.memo_value(MARKER_KEY, None) == MARKER_VALUE
    except Exception:  # e.g. someone else's codec or payload encoding
        return False


async def _delete_undeclared(client: Client, declared_ids: set[str]) -> dict[str, str]:
    """Delete Autarky's marked schedules whose id is not declared; never a schedule without the marker."""
    undeclared = [s async for s in await client.list_schedules() if s.id not in declared_ids]
    deleted: dict[str, str] = {}
    for listed in undeclared:
        if not await _marked(listed):
            continue
        try:
            await client.get_schedule_handle(listed.id).delete()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # the list lags behind: already gone is fine
                raise
            continue
        log.info("deleted a schedule Autarky no longer declares", schedule_id=listed.id)
        deleted[listed.id] = "deleted"
    return deleted
