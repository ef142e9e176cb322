"""Pool restarts: nothing to do on an empty pool, every new restart restarts, members that do not come up
fail it honestly, and a retry after a crash restarts each member exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
from datetime import timedelta
from pathlib import Path

import psutil
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool, WorkerPoolActivities
from autarky.autopilot.types import ActionStatus
from autarky.core.actions import ActionRequest
from autarky.core.approval import ApprovalDecision
from tests.fakes import FakeHost
from tests.pool_worker import MEMBER_SCRIPT
from tests.test_autopilot import Harness, _first, actions, decide, eventually, fast_settings, of_type, pending
from tests.worker_process import spawn_worker as start_worker


def started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def request(action_id: str) -> ActionRequest:
    return ActionRequest(action_id=action_id, action_type="restart_worker_pool", reason="test")


async def test_an_empty_pool_has_nothing_to_do(tmp_path: Path) -> None:
    pool = WorkerPoolActivities(LocalWorkerPool(tmp_path), warmup=timedelta(0))
    result = await ActivityEnvironment().run(pool.restart_worker_pool, request("act-1"))
    assert result.success and result.nothing_to_do and "no members" in result.detail


async def test_every_new_restart_restarts_the_members_whatever_its_action_id(tmp_path: Path) -> None:
    """Progress lasts one activity execution: an action id seen before (a new autopilot's `act-1`) is
    not taken for a retry of an old restart."""
    starts = tmp_path / "starts.log"
    pool = LocalWorkerPool(tmp_path, command=[sys.executable, "-c", MEMBER_SCRIPT, str(starts), MEMBER_FLAG])
    pool.ensure(2)
    activities = WorkerPoolActivities(pool, warmup=timedelta(milliseconds=200))
    pids = []
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 2))
        pids.append({m.process.pid for m in pool.members()})
        results = []
        for action_id in ("act-1", "act-2", "act-1"):
            results.append(
                await ActivityEnvironment().run(activities.restart_worker_pool, request(action_id))
            )
            pids.append({m.process.pid for m in pool.members()})
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) >= 8))
    finally:
        pool.stop_all()
        kill_all(started(starts))
    assert all(
        r.success and not r.nothing_to_do and r.detail.startswith("restarted 2 members") for r in results
    )
    assert all(len(p) == 2 for p in pids)
    assert all(not (earlier & later) for earlier, later in itertools.pairwise(pids))  # new pids


async def test_members_that_crash_at_start_fail_the_restart_and_are_started_again(tmp_path: Path) -> None:
    """Bad configuration: the fresh members exit at once. The restart fails (it must not be learnt as a
    success that freed all memory), says what happened, and tries once more to keep the pool's size."""
    starts = tmp_path / "starts.log"
    good = [sys.executable, "-c", MEMBER_SCRIPT, str(starts), MEMBER_FLAG]
    pool = LocalWorkerPool(tmp_path, command=good)
    pool.ensure(2)
    pool.command = ["/bin/sh", "-c", "echo 'bad config: no such queue' >&2; exit 3", MEMBER_FLAG]
    activities = WorkerPoolActivities(pool, warmup=timedelta(seconds=1))
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 2))
        result = await ActivityEnvironment().run(activities.restart_worker_pool, request("act-1"))
        left = pool.members()
    finally:
        pool.stop_all()
        kill_all(started(starts))
    assert not result.success and result.improvement == 0
    assert "2 of 2 fresh members were not healthy" in result.detail
    assert "exited with code 3" in result.detail and "pool-0.log" in result.detail
    assert "2 still down" in result.detail and "runs 0 of its 2 members" in result.detail
    assert left == []
    assert "bad config" in (tmp_path / "logs" / "pool-0.log").read_text()


async def test_a_member_that_crashes_once_is_started_again_and_the_pool_keeps_its_size(
    tmp_path: Path,
) -> None:
    """A passing failure: the fresh member of slot 0 exits at once, its second start runs. The restart
    still fails (a member was missing after the warm-up), and the pool is back at its size."""
    starts, marker = tmp_path / "starts.log", tmp_path / "crashed-once"
    flaky = (
        "import os, sys, time\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close(); sys.exit(1)\n"
        "with open(sys.argv[1], 'a') as f: f.write(f'{os.getpid()}\\n')\n"
        "time.sleep(600)\n"
    )
    pool = LocalWorkerPool(tmp_path, command=[sys.executable, "-c", MEMBER_SCRIPT, str(starts), MEMBER_FLAG])
    pool.ensure(1)
    pool.command = [sys.executable, "-c", flaky, str(starts), MEMBER_FLAG]
    activities = WorkerPoolActivities(pool, warmup=timedelta(seconds=1))
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 1))
        result = await ActivityEnvironment().run(activities.restart_worker_pool, request("act-1"))
        left = [m.process.pid for m in pool.members()]
    finally:
        pool.stop_all()
        kill_all(started(starts))
    assert not result.success and "slot 0" in result.detail and "exited with code 1" in result.detail
    assert "all 1 members are up now" in result.detail
    assert len(left) == 1 and left[0] in started(starts)


async def spawn_worker(
    client: Client, control_queue: str, data_dir: Path, starts: Path
) -> asyncio.subprocess.Process:
    target = client.service_client.config.target_host
    return await start_worker(
        "tests.pool_worker", target, control_queue, "test-host", str(data_dir), str(starts)
    )


async def test_a_worker_killed_mid_restart_leaves_each_member_restarted_exactly_once(
    client: Client, tmp_path: Path
) -> None:
    starts = tmp_path / "starts.log"
    harness = Harness(client, tmp_path, FakeHost(memory=90.0))  # memory_high → restart (approval)
    harness.pool_activities["test-host"] = []  # the control queue is served by the processes below
    settings = fast_settings(
        action_heartbeat_timeout=timedelta(seconds=2), action_cooldown=timedelta(hours=1)
    )
    workers = [await spawn_worker(client, harness.control_queue, tmp_path, starts)]
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 2))
        async with harness.running(settings) as handle:
            waiting = (await eventually(lambda: pending(handle)))[0]
            await decide(
                handle,
                "approve",
                ApprovalDecision(approval_id=waiting.approval_id, approver="t", reason="go"),
            )
            # The first member has been replaced: the worker dies mid-restart, as kill -9 or a lost host.
            await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) >= 3))
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()
            workers.append(await spawn_worker(client, harness.control_queue, tmp_path, starts))
            done = await eventually(
                lambda: _first(
                    actions(handle), lambda rs: of_type(rs, "restart_worker_pool", ActionStatus.SUCCEEDED)
                ),
                timeout=60,
            )
            records = await actions(handle)
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
        kill_all(started(starts))
    assert len(started(starts)) == 4  # 2 original members + each replaced exactly once
    assert done[0].detail.startswith("restarted 2 members")
    assert len(of_type(records, "restart_worker_pool", ActionStatus.SUCCEEDED)) == 1
    assert not of_type(records, "restart_worker_pool", ActionStatus.FAILED)
