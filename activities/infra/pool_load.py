"""Slots in use per pool member: each member writes its load to a file, the pool's owner sums the files.

A member's pool-queue worker carries `LoadReporter` (a Temporal worker interceptor): on every start and
end of an activity it rewrites `<data_dir>/pool/member-<pid>.load` (temp file + `os.replace`, so a reader
never sees half a file) as `{"pid", "in_flight", "slots", "at", "schedule_to_start_seconds",
"started_at"}`. Keyed by pid, not slot: the pid is what the pool's pid files name, so a file left by a dead
member, or by a worker that is not a member, matches no live member and is not counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = structlog.get_logger(__name__)
# A schedule-to-start latency older than this says nothing about the queue now (no task started since).
RECENT_START = timedelta(seconds=60)


class MemberLoad(BaseModel):
    """One member's load file."""

    pid: int
    in_flight: int = Field(ge=0)
    slots: int = Field(ge=1)  # its pool-queue worker's max_concurrent_activities
    at: datetime
    # The last started task's wait in the queue (the server's times, so no clock skew), and when it started.
    schedule_to_start_seconds: float | None = None
    started_at: datetime | None = None


class PoolLoad(BaseModel):
    """The live members' load, summed (what `LocalWorkerPool.load` reads)."""

    members: int  # live members, by pid file
    desired: int | None  # the pool's recorded size (`pool/desired`; 0 is a size), None before any
    in_flight: int | None  # summed over live members that wrote a load; None when none of several did
    slots_per_member: int | None  # the largest slot count a live member reported
    schedule_to_start_seconds: float | None  # the longest recent one over live members


def load_path(pool_dir: Path, pid: int) -> Path:
    return pool_dir / f"member-{pid}.load"


class LoadReporter(Interceptor):
    """Counts this worker's activities in flight and writes the count to this member's load file."""

    def __init__(self, pool_dir: Path, slots: int, pid: int | None = None) -> None:
        self.path = load_path(pool_dir, pid or os.getpid())
        self.load = MemberLoad(pid=pid or os.getpid(), in_flight=0, slots=slots, at=datetime.now(UTC))
        self._write()  # at once: a fresh member reads as idle, not as whatever a recycled pid left

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Counting(next, self)

    def changed(self, delta: int, started: activity.Info | None = None) -> None:
        # Runs on the worker's event loop (the interceptor chain does, sync activities too): no lock needed.
        self.load.in_flight = max(0, self.load.in_flight + delta)
        self.load.at = datetime.now(UTC)
        if started is not None:
            waited = started.started_time - started.current_attempt_scheduled_time
            self.load.schedule_to_start_seconds = max(0.0, waited.total_seconds())
            self.load.started_at = started.started_time
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(self.load.model_dump_json())
            os.replace(tmp, self.path)
        except OSError as error:  # the pool's scaling loses a signal; the activity itself must not fail
            log.warning("could not write the pool member's load file", path=str(self.path), error=str(error))


class _Counting(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, reporter: LoadReporter) -> None:
        super().__init__(next)
        self.reporter = reporter

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.reporter.changed(+1, activity.info())
        try:
            return await super().execute_activity(input)
        finally:
            self.reporter.changed(-1)


def read_loads(pool_dir: Path, live_pids: Iterable[int]) -> dict[int, MemberLoad]:
    """Live pid → its load. Files of other pids (dead members, workers that are not members) are not
    counted; unreadable ones are warned about and skipped (a member rewrites its file on its next change).
    Reads only: any process of the host may call it."""
    loads: dict[int, MemberLoad] = {}
    for pid in sorted(set(live_pids)):
        path = load_path(pool_dir, pid)
        try:
            text = path.read_bytes()
        except FileNotFoundError:  # a member still starting, or one that is not ours to count yet
            continue
        except OSError as error:
            log.warning("ignoring an unreadable pool member load file", path=str(path), error=str(error))
            continue
        try:
            load = MemberLoad.model_validate(json.loads(text))
        except (ValueError, ValidationError) as error:  # ValueError: not JSON (a torn or foreign file)
            log.warning("ignoring a malformed pool member load file", path=str(path), error=str(error))
            continue
        if load.pid != pid:  # copied or hand-made: its figures are not this member's
            log.warning("ignoring a pool member load file naming another pid", path=str(path), pid=load.pid)
            continue
        loads[pid] = load
    return loads


def prune_loads(pool_dir: Path, live_pids: Iterable[int]) -> None:
    """Remove the load files of pids that are not live members (their members are gone)."""
    live = set(live_pids)
    for path in pool_dir.glob("member-*.load"):
        pid_text = path.stem.removeprefix("member-")
        if pid_text.isdigit() and int(pid_text) not in live:
            path.unlink(missing_ok=True)


def pool_load(members: int, desired: int | None, loads: Iterable[MemberLoad], now: datetime) -> PoolLoad:
    reported = list(loads)
    recent = [
        load.schedule_to_start_seconds
        for load in reported
        if load.schedule_to_start_seconds is not None
        and load.started_at is not None
        and now - load.started_at <= RECENT_START
    ]
    return PoolLoad(
        members=members,
        desired=desired,
        # No member runs nothing (a pool at 0); members that have not written yet are not known to idle.
        in_flight=sum(load.in_flight for load in reported) if reported or members == 0 else None,
        slots_per_member=max((load.slots for load in reported), default=None),
        schedule_to_start_seconds=max(recent, default=None),
    )
