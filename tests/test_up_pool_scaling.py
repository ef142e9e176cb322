"""`autarky up` scales its local pool on the pool's own work (issue 28, "done when"): with two busy loops on
the host and no pool work the pool does not grow (it goes to zero); a backlog on the pool's queue grows it;
it shrinks to zero after the work ends; the scaler's operations (what the UI shows) tell each change."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.infra.task_queues import TaskQueueProbeInput
from autarky.scaling.types import OperationStatus, ScaleOperation
from tests.test_up import autopilot_status, stack_env, start_stack, stop_stack  # noqa: F401 (a fixture)

WORK_ITEMS = 40  # four members' worth of slots (10 each), if all wait at once


@workflow.defn(name="PoolWork", sandboxed=False)
class PoolWork:
    """Work sent to a host's pool queue, all at once (the members' activities: a cheap queue probe)."""

    @workflow.run
    async def run(self, pool_queue: str) -> int:
        done = await asyncio.gather(
            *(
                workflow.execute_activity(
                    "probe_task_queue",
                    TaskQueueProbeInput(task_queue=pool_queue),
                    task_queue=pool_queue,
                    start_to_close_timeout=timedelta(minutes=1),
                )
                for _ in range(WORK_ITEMS)
            )
        )
        return len(done)


class PoolWatch:
    """The pool's size as `autarky up` keeps it (pool/desired) and its live members (pid files)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "pool"
        self.most_desired = self.most_members = 0

    def desired(self) -> int | None:
        try:
            size = int((self.dir / "desired").read_text())
        except (OSError, ValueError):
            return None
        self.most_desired = max(self.most_desired, size)
        self.most_members = max(self.most_members, len(list(self.dir.glob("member-*.pid"))))
        return size

    async def until(self, size: int, timeout: float = 120) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.desired() != size:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the pool never reached {size} (it is at {self.desired()})")
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_up_scales_the_pool_on_its_work_not_on_busy_cpu(stack_env: dict[str, str]) -> None:  # noqa: F811
    host_id = f"up-pool-{uuid.uuid4().hex[:8]}"
    environ = stack_env | {
        "AUTARKY_HOST_ID": host_id,
        "AUTARKY_AUTOPILOT__POOL_SCALING": "true",
        "AUTARKY_AUTOPILOT__ANALYSIS_INTERVAL": "0.5",
        "AUTARKY_AUTOPILOT__OPTIMIZATION_INTERVAL": "0.5",
        "AUTARKY_AUTOPILOT__POOL_POLICY__IDLE_WINDOW": "4",
        "AUTARKY_AUTOPILOT__POOL_POLICY__STABILISATION_WINDOW": "2",
        "AUTARKY_AUTOPILOT__POOL_POLICY__WARMUP": "2",
        "AUTARKY_AUTOPILOT__POOL_POLICY__BACKLOG_AGE_LIMIT": "2",
        "AUTARKY_SCALING__HEALTH_POLL_INTERVAL": "0.5",
        "AUTARKY_WORKER_POOL_WARMUP": "0",
    }
    data_dir = Path(environ["AUTARKY_DATA_DIR"])
    pool = PoolWatch(data_dir)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    process = await start_stack(environ)
    try:
        client, _ = await autopilot_status(environ, min_iterations=1)
        await pool.until(0)  # no work on the pool's queue: to zero, while the loops hold the CPU
        assert pool.most_desired <= 1 and pool.most_members <= 1, "the pool grew on host CPU"
        await _operations(client, host_id, 1)  # the scaler's record of the change (the UI's query tab)
        work_queue = f"pool-work-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=work_queue, workflows=[PoolWork]):
            done = await client.execute_workflow(
                PoolWork.run,
                f"autarky-pool@{host_id}",
                id=work_queue,
                task_queue=work_queue,
                execution_timeout=timedelta(minutes=3),
            )
        assert done == WORK_ITEMS
        await pool.until(0)  # the work is done: back to zero
        operations = await _operations(client, host_id, 3)
    finally:
        for loop in busy:
            loop.kill()
        with contextlib.suppress(AssertionError):  # the assertions above say what went wrong
            await stop_stack(process, data_dir)
    changes = [(o.previous, o.target) for o in operations if o.status == OperationStatus.SUCCEEDED]
    assert changes[0] == (1, 0) and changes[-1][1] == 0, changes  # to zero idle, and again after the work
    # The backlog grew it from zero; how far depends on the backlog the probe read before members drained
    # these quick tasks (proportional sizing has its own tests: test_scaling_policy, test_autopilot_scaling).
    assert changes[1][0] == 0 and 1 <= changes[1][1] <= 4, changes


async def _operations(client: Client, host_id: str, at_least: int) -> list[ScaleOperation]:
    """The pool scaler's operations, as the UI's query tab shows them, once `at_least` have ended and the
    last of them took the pool to the size it has now (pool/desired is written while the saga verifies)."""
    handle = client.get_workflow_handle(f"scaler/local-pool/{host_id}")
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        operations = await handle.query("operations", result_type=list[ScaleOperation])
        ended = [o for o in operations if o.finished_at is not None]
        settled = len(ended) >= at_least and ended[-1].target == 0
        if settled or asyncio.get_running_loop().time() > deadline:
            return ended
        await asyncio.sleep(0.5)
