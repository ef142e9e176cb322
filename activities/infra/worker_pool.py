"""The local worker pool: extra `autarky worker --activities-only` processes on this machine.

`autarky up` owns the pool (pid files under <data_dir>/pool); the `restart_worker_pool` activity runs only
on that process's control task queue. Scaling the pool arrives with the scaling issue.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autarky.metrics import ACTIONS, POOL_MEMBERS
from autarky.types import ActionRequest, ActionResult

log = structlog.get_logger(__name__)
MEMBER_FLAG = "--activities-only"
STOP_GRACE_SECONDS = 30.0
SETTLE_SECONDS = 1.0


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
        self.command = command or [sys.executable, "-m", "autarky.cli", "worker", MEMBER_FLAG]

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

    def ensure(self, size: int) -> list[PoolMember]:
        """Start or stop members until exactly `size` run."""
        members = {m.slot: m for m in self.members()}
        for slot in range(size):
            if slot not in members:
                members[slot] = self._start(slot)
        for slot in [s for s in members if s >= size]:
            self._stop(members.pop(slot))
        POOL_MEMBERS.set(len(members))
        return sorted(members.values(), key=lambda m: m.slot)

    def replace(self, member: PoolMember) -> PoolMember:
        """Stop one member (it drains its activities) and start a fresh one in its slot."""
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
    def __init__(self, pool: LocalWorkerPool) -> None:
        self.pool = pool

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        """Rolling restart; improvement is the share of the pool's memory (RSS) it gave back."""
        members = await asyncio.to_thread(self.pool.members)
        before = sum(m.rss for m in members)
        fresh = []
        try:
            for member in members:  # one at a time, so the pool never goes fully dark
                fresh.append(await asyncio.to_thread(self.pool.replace, member))
                activity.heartbeat(f"restarted slot {member.slot}")
        except OSError as error:
            raise ApplicationError(
                f"could not restart the worker pool: {error}", non_retryable=True
            ) from error
        await asyncio.sleep(SETTLE_SECONDS)  # let the new interpreters import before measuring them
        after = sum(m.rss for m in fresh)
        count = len(members)
        if count == 0:
            ACTIONS.labels(request.action_type, "succeeded").inc()
            return ActionResult(
                success=True, detail="the local worker pool has no members (worker_pool_size=0)"
            )
        improvement = max(0.0, (before - after) / before) if before else 0.0
        ACTIONS.labels(request.action_type, "succeeded").inc()
        return ActionResult(
            success=True,
            improvement=min(1.0, improvement),
            detail=f"restarted {count} members; RSS {before >> 20} MiB → {after >> 20} MiB",
        )
