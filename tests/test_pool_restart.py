"""Pool restarts: nothing to do on an empty pool, once per action id, and exactly once across a crash."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_a_repeated_restart_with_the_same_action_id_restarts_nobody_again(tmp_path: Path) -> None:
    starts = tmp_path / "starts.log"
    pool = LocalWorkerPool(tmp_path, command=[sys.executable, "-c", MEMBER_SCRIPT, str(starts), MEMBER_FLAG])
    pool.ensure(2)
    activities = WorkerPoolActivities(pool, warmup=timedelta(milliseconds=200))
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 2))
        first = await ActivityEnvironment().run(activities.restart_worker_pool, request("act-7"))
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 4))
        again = await ActivityEnvironment().run(activities.restart_worker_pool, request("act-7"))
        await asyncio.sleep(0.5)
        assert len(started(starts)) == 4  # a retry of act-7 found its work done
        other = await ActivityEnvironment().run(activities.restart_worker_pool, request("act-8"))
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 6))
    finally:
        pool.stop_all()
        kill_all(started(starts))
    assert first.success and not first.nothing_to_do and first.detail.startswith("restarted 2 members")
    assert again.detail.startswith("restarted 2 members") and other.success


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
