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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psutil
import structlog
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.metrics import ACTIONS, POOL_MEMBERS

log = structlog.get_logger(__name__)
MEMBER_FLAG = "--activities-only"
STOP_GRACE_SECONDS = 30.0
PROGRESS_KEPT_SECONDS = 7 * 24 * 3600  # a retry comes within hours; a week is plenty


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
        POOL_MEMBERS.set(len(found))
        return found

    def desired_size(self, default: int) -> int:
        """The size the scaler last set (kept across restarts of `autarky up`), else `default`."""
        try:
            return int((self.dir / "desired").read_text().strip())
        except (OSError, ValueError):
            return default

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
        (self.dir / f"member-{slot}.pid").write_text(str(popen.pid))
        log.info("pool member started", slot=slot, pid=popen.pid)
        return PoolMember(slot, psutil.Process(popen.pid))

    def _stop(self, member: PoolMember) -> None:
        try:
            member.process.send_signal(signal.SIGTERM)  # the worker drains its activities, then exits
            member.process.wait(timeout=STOP_GRACE_SECONDS)
        except psutil.TimeoutExpired:
            member.process.kill()
        except psutil.NoSuchProcess:
            pass
        (self.dir / f"member-{member.slot}.pid").unlink(missing_ok=True)
        log.info("pool member stopped", slot=member.slot, pid=member.process.pid)

    def _live_member(self, pid_file: Path) -> psutil.Process | None:
        try:
            process = psutil.Process(int(pid_file.read_text().strip()))
            cmdline = process.cmdline()
        except (ValueError, OSError, psutil.Error):
            return None
        # A recycled pid belongs to someone else: only our own command line counts as a member.
        if MEMBER_FLAG in cmdline and process.status() != psutil.STATUS_ZOMBIE:
            return process
        return None


class WorkerPoolActivities:
    def __init__(self, pool: LocalWorkerPool, warmup: timedelta = timedelta(seconds=30)) -> None:
        self.pool = pool
        self.warmup = warmup

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        """Rolling restart, once per action id even across retries and worker crashes.

        Progress is kept in a file keyed by the action id (the pool is on this host, and so is this
        activity), so a retry restarts only the members not yet replaced. The improvement is the share of
        the pool's memory (RSS) given back, measured after the fresh members' warm-up.
        """
        async with heartbeating():
            progress = await asyncio.to_thread(self._load_progress, request.action_id)
            members = await asyncio.to_thread(self.pool.members)
            if progress is None:
                if not members:
                    ACTIONS.labels(request.action_type, "nothing_to_do").inc()
                    return ActionResult(
                        success=True,
                        nothing_to_do=True,
                        detail="the local worker pool has no members (worker_pool_size=0)",
                    )
                progress = RestartProgress(
                    before_rss=sum(m.rss for m in members), slots=[m.slot for m in members]
                )
                await asyncio.to_thread(self._save_progress, request.action_id, progress)
            try:
                for member in members:  # one at a time, so the pool never goes fully dark
                    if member.slot not in progress.slots or member.process.pid in progress.fresh_pids:
                        continue  # not part of this restart, or already replaced by an earlier attempt
                    fresh = await asyncio.to_thread(self.pool.replace, member)
                    progress.fresh_pids.append(fresh.process.pid)
                    await asyncio.to_thread(self._save_progress, request.action_id, progress)
                    log.info("pool member replaced", action_id=request.action_id, slot=member.slot)
            except OSError as error:
                raise ApplicationError(
                    f"could not restart the worker pool: {error}", non_retryable=True
                ) from error
            # Fresh interpreters grow while they import and start polling: measure them settled.
            await asyncio.sleep(self.warmup.total_seconds())
            fresh_members = [
                m for m in await asyncio.to_thread(self.pool.members) if m.process.pid in progress.fresh_pids
            ]
            after = sum(m.rss for m in fresh_members)
        before = progress.before_rss
        improvement = max(0.0, (before - after) / before) if before else 0.0
        ACTIONS.labels(request.action_type, "succeeded").inc()
        return ActionResult(
            success=True,
            improvement=min(1.0, improvement),
            detail=f"restarted {len(progress.fresh_pids)} members; RSS {before >> 20} MiB → "
            f"{after >> 20} MiB after a {self.warmup.total_seconds():g} s warm-up",
        )

    def _progress_file(self, action_id: str) -> Path:
        return self.pool.dir / f"restart-{action_id}.json"

    def _load_progress(self, action_id: str) -> RestartProgress | None:
        self._prune_progress()
        try:
            return RestartProgress.model_validate_json(self._progress_file(action_id).read_text())
        except FileNotFoundError:
            return None

    def _save_progress(self, action_id: str, progress: RestartProgress) -> None:
        self.pool.dir.mkdir(parents=True, exist_ok=True)
        path = self._progress_file(action_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(progress.model_dump_json())
        tmp.replace(path)  # atomic: a crash leaves the old progress or the new, never half

    def _prune_progress(self) -> None:
        cutoff = time.time() - PROGRESS_KEPT_SECONDS
        for path in self.pool.dir.glob("restart-*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


class RestartProgress(BaseModel):
    """How far a pool restart got: the pool's RSS before, its members then, and their replacements."""

    before_rss: int
    slots: list[int]
    fresh_pids: list[int] = Field(default_factory=list)


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (members take up to 30 s each to stop)."""
    timeout = activity.info().heartbeat_timeout
    interval = min(timeout.total_seconds() / 3, 10.0) if timeout else 10.0

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
