"""The local worker pool: extra `autarky worker --activities-only` processes on this machine.

`autarky up` owns the pool (pid files under <data_dir>/pool); the `restart_worker_pool` activity and the
pool's scaling activities (activities/infra/local_pool_scaling.py) run only on that process's control
task queue (`<control_task_queue>@<host_id>`). The pool's size survives restarts in `pool/desired`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.infra.pool_load import PoolLoad, load_path, pool_load, prune_loads, read_loads
from activities.infra.task_queues import describe_activity_queue
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.hosts import worker_identity
from autarky.core.metrics import ACTIONS, POOL_MEMBERS

log = structlog.get_logger(__name__)
MEMBER_FLAG = "--activities-only"
STOP_GRACE_SECONDS = 30.0


@dataclass
class PoolMember:
    slot: int
    process: psutil.Process

    @property
    def rss(self) -> int:
        try:
            return self.process.memory_info().rss
        except psutil.Error:
            return 0


class LocalWorkerPool:
    def __init__(self, data_dir: Path, command: list[str] | None = None) -> None:
        self.dir = data_dir / "pool"
        self.log_dir = data_dir / "logs"
        self.command = command or [sys.executable, "-m", "autarky.cli.main", "worker", MEMBER_FLAG]
        # One change of membership at a time (a resize, a restart, a cancelled resize still finishing).
        self._changing = threading.RLock()
        # The members this process started, by pid: for a moment after Popen returns the child's command
        # line still reads empty (its exec is finishing), and a concurrent `members()` (a capacity read)
        # would take it for a stranger and delete its pid file, leaking a running member.
        self._started: dict[int, tuple[subprocess.Popen[bytes], psutil.Process]] = {}
        self._exits: dict[int, int] = {}  # pid → exit code of members started here that exited

    def members(self) -> list[PoolMember]:
        """Live members, found through their pid files (stale files are removed)."""
        found = []
        for pid_file in sorted(self.dir.glob("member-*.pid")):
            slot = int(pid_file.stem.removeprefix("member-"))
            process = self._live_member(pid_file)
            if process is None:
                pid_file.unlink(missing_ok=True)
            else:
                found.append(PoolMember(slot, process))
        prune_loads(self.dir, (m.process.pid for m in found))
        POOL_MEMBERS.set(len(found))
        return found

    def load(self) -> PoolLoad:
        """Live members, their activities in flight and slots (activities/infra/pool_load.py), the recorded
        size. Reads only, so any process of this host may call it (the host probe does); `members()` may
        not outside the owner: it would take a member whose exec is not done for a stale file."""
        pids = [
            p.pid for f in sorted(self.dir.glob("member-*.pid")) if (p := self._live_member(f)) is not None
        ]
        loads = read_loads(self.dir, pids)
        return pool_load(len(pids), self.recorded_size(), loads.values(), datetime.now(UTC))

    def desired_size(self, default: int) -> int:
        """The size the scaler last set (kept across restarts of `autarky up`), else `default`."""
        recorded = self.recorded_size()
        return default if recorded is None else recorded

    def recorded_size(self) -> int | None:
        try:
            return int((self.dir / "desired").read_text().strip())
        except (OSError, ValueError):
            return None

    def set_size(self, size: int) -> list[PoolMember]:
        """Record `size` as the pool's size, then start or stop members to match it."""
        with self._changing:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / "desired.tmp"
            tmp.write_text(str(size))
            tmp.replace(self.dir / "desired")
            return self.ensure(size)

    def ensure(self, size: int) -> list[PoolMember]:
        """Start or stop members until exactly `size` run."""
        with self._changing:
            members = {m.slot: m for m in self.members()}
            for slot in range(size):
                if slot not in members:
                    members[slot] = self._start(slot)
            for slot in sorted((s for s in members if s >= size), reverse=True):  # newest slots first
                self._stop(members.pop(slot))
            POOL_MEMBERS.set(len(members))
            return sorted(members.values(), key=lambda m: m.slot)

    def replace(self, member: PoolMember) -> PoolMember:
        """Stop one member (it drains its activities) and start a fresh one in its slot."""
        with self._changing:
            self._stop(member)
            return self._start(member.slot)

    def restore(self, slot: int) -> PoolMember:
        """The live member in `slot`, started now if there is none."""
        with self._changing:
            live = next((m for m in self.members() if m.slot == slot), None)
            return live or self._start(slot)

    def stop_all(self) -> None:
        for member in self.members():
            self._stop(member)
        POOL_MEMBERS.set(0)

    def _start(self, slot: int) -> PoolMember:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"pool-{slot}.log").open("ab") as out:
            # Own session: a Ctrl-C in the terminal reaches `autarky up`, which stops members in order.
            popen = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=os.environ.copy(),
            )
        process = psutil.Process(popen.pid)
        self._started[popen.pid] = (popen, process)
        (self.dir / f"member-{slot}.pid").write_text(str(popen.pid))
        log.info("pool member started", slot=slot, pid=popen.pid)
        return PoolMember(slot, process)

    def _stop(self, member: PoolMember) -> None:
        try:
            member.process.send_signal(signal.SIGTERM)  # the worker drains its activities, then exits
            member.process.wait(timeout=STOP_GRACE_SECONDS)
        except psutil.TimeoutExpired:
            with contextlib.suppress(psutil.Error):
                member.process.kill()
                member.process.wait(timeout=5)  # reaped, when it is our child
        except psutil.NoSuchProcess:
            pass
        self._started.pop(member.process.pid, None)
        (self.dir / f"member-{member.slot}.pid").unlink(missing_ok=True)
        load_path(self.dir, member.process.pid).unlink(missing_ok=True)
        log.info("pool member stopped", slot=member.slot, pid=member.process.pid)

    def exit_code(self, pid: int) -> int | None:
        """The exit code of a member started by this process that has exited (None: unknown)."""
        if pid in self._started and (code := self._started[pid][0].poll()) is not None:
            return code
        return self._exits.get(pid)

    def _live_member(self, pid_file: Path) -> psutil.Process | None:
        try:
            pid = int(pid_file.read_text().strip())
            if pid in self._started:  # started here: alive until reaped, whether its exec is done or not
                popen, process = self._started[pid]
                if (code := popen.poll()) is None:
                    return process
                self._started.pop(pid, None)
                self._exits[pid] = code
                while len(self._exits) > 64:  # what a restart reports on: only the latest matter
                    self._exits.pop(next(iter(self._exits)), None)
                return None
            process = psutil.Process(pid)
            # A recycled pid belongs to someone else: only our own command line counts as a member.
            if MEMBER_FLAG in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                return process
        except (ValueError, OSError, psutil.Error):
            pass
        return None


class WorkerPoolActivities:
    def __init__(
        self,
        pool: LocalWorkerPool,
        warmup: timedelta = timedelta(seconds=30),
        pool_queue: str | None = None,
        host_id: str | None = None,
    ) -> None:
        self.pool = pool
        self.warmup = warmup
        # With both: a fresh member is healthy only once it polls `pool_queue` (as `<pid>@<host_id>`),
        # as the pool's scaler counts health; without: once it is alive after the warm-up.
        self.pool_queue = pool_queue
        self.host_id = host_id

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        """Rolling restart; a retry of this execution (same attempt chain) resumes where it stopped.

        Progress lives in the heartbeat details, so it lasts exactly one activity execution: a new
        restart, whatever its action id, restarts every member again. The details name the members
        being replaced (slot → pid), so a retry after a crash skips those already replaced. A fresh
        member missing or unhealthy after the warm-up fails the action; the missing ones are started
        once more so the pool keeps its size. The improvement is the share of the pool's memory (RSS)
        given back, measured after the warm-up.
        """
        progress = resumed_progress()
        if progress is None:
            members = await asyncio.to_thread(self.pool.members)
            if not members:
                ACTIONS.labels(request.action_type, "nothing_to_do").inc()
                return ActionResult(
                    success=True,
                    nothing_to_do=True,
                    detail="the local worker pool has no members (worker_pool_size=0)",
                )
            progress = RestartProgress(
                before_rss=sum(m.rss for m in members), old_pids={m.slot: m.process.pid for m in members}
            )
        # The first beat (not throttled by the SDK) carries the progress, before any member is touched.
        async with heartbeating(lambda: progress):
            try:
                fresh = await asyncio.to_thread(self._replace_all, progress)
            except OSError as error:
                raise ApplicationError(
                    f"could not restart the worker pool: {error}", non_retryable=True
                ) from error
            # Fresh interpreters grow while they import and start polling: measure them settled.
            await asyncio.sleep(self.warmup.total_seconds())
            problems = await self._problems(fresh)
            if problems:
                return await self._failed(request, progress, fresh, problems)
        after = sum(m.rss for m in fresh.values())
        before = progress.before_rss
        improvement = max(0.0, (before - after) / before) if before else 0.0
        ACTIONS.labels(request.action_type, "succeeded").inc()
        return ActionResult(
            success=True,
            improvement=min(1.0, improvement),
            detail=f"restarted {len(fresh)} members; RSS {before >> 20} MiB → "
            f"{after >> 20} MiB after a {self.warmup.total_seconds():g} s warm-up",
        )

    def _replace_all(self, progress: RestartProgress) -> dict[int, PoolMember]:
        """Replace each member named in `progress`, one at a time so the pool never goes fully dark."""
        fresh: dict[int, PoolMember] = {}
        for slot, old_pid in sorted(progress.old_pids.items()):
            current = next((m for m in self.pool.members() if m.slot == slot), None)
            if current is not None and current.process.pid == old_pid:
                fresh[slot] = self.pool.replace(current)
                log.info("pool member replaced", slot=slot, old_pid=old_pid, pid=fresh[slot].process.pid)
            else:  # replaced by an earlier attempt of this restart, or gone: started if missing
                fresh[slot] = self.pool.restore(slot)
        return fresh

    async def _problems(self, fresh: dict[int, PoolMember]) -> dict[int, str]:
        """Slot → what is wrong with its fresh member; a member not polling yet gets up to another
        warm-up (at least 5 s) to start, one that exited is final."""
        deadline = time.monotonic() + max(self.warmup.total_seconds(), 5.0)
        while True:
            live = {m.slot: m.process.pid for m in await asyncio.to_thread(self.pool.members)}
            polling = await self._polling_pids()
            problems: dict[int, str] = {}
            for slot, member in fresh.items():
                pid = member.process.pid
                if live.get(slot) != pid:
                    code = self.pool.exit_code(pid)
                    problems[slot] = f"exited with code {code}" if code is not None else "is gone"
                elif polling is not None and pid not in polling:
                    problems[slot] = f"runs but does not poll {self.pool_queue}"
            waiting = any(p.startswith("runs") for p in problems.values())
            if not waiting or time.monotonic() >= deadline:
                return problems
            await asyncio.sleep(0.5)

    async def _polling_pids(self) -> set[int] | None:
        if self.pool_queue is None or self.host_id is None:
            return None
        stats = await describe_activity_queue(activity.client(), self.pool_queue)
        suffix = worker_identity(0, self.host_id).removeprefix("0")
        return {
            int(p.identity.removesuffix(suffix))
            for p in stats.pollers
            if p.identity.endswith(suffix) and p.identity.removesuffix(suffix).isdigit()
        }

    async def _failed(
        self,
        request: ActionRequest,
        progress: RestartProgress,
        fresh: dict[int, PoolMember],
        problems: dict[int, str],
    ) -> ActionResult:
        """Start the failed slots once more (the pool keeps its size if the trouble was passing), then
        report the failure: what went wrong and what is left."""

        def again() -> dict[int, PoolMember]:
            started = {}
            for slot in problems:
                live = next((m for m in self.pool.members() if m.slot == slot), None)
                started[slot] = self.pool.replace(live) if live is not None else self.pool.restore(slot)
            return started

        retried = await asyncio.to_thread(again)
        await asyncio.sleep(self.warmup.total_seconds())
        left = await self._problems(retried)
        logs = ", ".join(str(self.pool.log_dir / f"pool-{slot}.log") for slot in sorted(problems))
        what = "; ".join(
            f"slot {slot} (pid {fresh[slot].process.pid}) {p}" for slot, p in sorted(problems.items())
        )
        size = len(progress.old_pids)
        if left:
            outcome = (
                f"started them once more: {len(left)} still down "
                f"({'; '.join(f'slot {s} {p}' for s, p in sorted(left.items()))}), so the pool runs "
                f"{size - len(left)} of its {size} members: fix the members' configuration, then "
                "`autarky scale` the pool or restart `autarky up`"
            )
        else:
            outcome = f"started them once more and all {size} members are up now"
        ACTIONS.labels(request.action_type, "failed").inc()
        log.warning("pool restart failed", problems=problems, left=left)
        return ActionResult(
            success=False,
            detail=f"pool restart failed: {len(problems)} of {size} fresh members were not healthy after the "
            f"{self.warmup.total_seconds():g} s warm-up: {what} (see {logs}); {outcome}",
        )


def resumed_progress() -> RestartProgress | None:
    """The progress an earlier attempt of this execution heartbeated, if any."""
    details = activity.info().heartbeat_details
    if not details:
        return None
    try:
        return RestartProgress.model_validate(details[0])
    except ValueError:  # details of another shape (an older worker): start over
        log.warning("pool restart: unreadable progress in the heartbeat details; starting over")
        return None


class RestartProgress(BaseModel):
    """What one pool restart replaces: the pool's RSS before, and each slot's member then (its pid)."""

    before_rss: int
    old_pids: dict[int, int]


@contextlib.asynccontextmanager
async def heartbeating(details: Callable[[], BaseModel | None] = lambda: None) -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (members take up to 30 s each to stop), each
    beat carrying `details()` (a heartbeat's details replace the previous beat's)."""
    timeout = activity.info().heartbeat_timeout
    interval = min(timeout.total_seconds() / 3, 10.0) if timeout else 10.0

    async def beat() -> None:
        while True:
            current = details()
            activity.heartbeat(*([] if current is None else [current.model_dump(mode="json")]))
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
