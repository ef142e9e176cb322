"""A self-modification whose worker is killed (kill -9) around its promotion: the next worker finishes the
run, and the agent is promoted exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from autarky.core.settings import AutarkySettings
from autarky.selfmod.types import SelfModifyInput, SelfModifyResult
from tests.test_autopilot import eventually
from tests.test_self_modify import AGENT, LIMITS, degrade
from tests.worker_process import spawn_worker
from workflows.self_modify import SelfModificationWorkflow


async def spawn(client: Client, queue: str, data_dir: Path) -> asyncio.subprocess.Process:
    address = client.service_client.config.target_host
    return await spawn_worker("tests.selfmod_worker", address, queue, str(data_dir))


@pytest.mark.slow
async def test_a_worker_killed_at_promotion_leaves_exactly_one_promotion(
    client: Client, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    repo, incumbent = degrade(AutarkySettings(data_dir=data_dir))
    queue = f"selfmod-crash-{uuid.uuid4().hex[:8]}"
    workers = [await spawn(client, queue, data_dir)]
    try:
        handle = await client.start_workflow(
            SelfModificationWorkflow.run,
            SelfModifyInput(
                agent=AGENT,
                offline=True,
                generations=2,
                population=4,
                # About surviving the kill, not how sure the promotion was: the candidate that beat the
                # incumbent on the search part is promoted whatever its interval on the decision part.
                threshold=-1.0,
                watch_runs=1,
                watch_interval=timedelta(seconds=3),
                limits=LIMITS,
                activity_task_queue=queue,
            ),
            id=f"evolve/{AGENT}/crash-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )

        async def promoting_or_after() -> str | None:
            step = str((await handle.query("progress", result_type=dict))["step"])
            return step if step.startswith(("promoting", "watching", "promoted", "not_promoted")) else None

        # CPU-bound (8 candidates in the sandbox): on a loaded machine far slower; returns when reached.
        step = await eventually(promoting_or_after, timeout=600)
        assert not step.startswith("not_promoted"), "this run found nothing to promote: no crash tested"
        workers[0].send_signal(signal.SIGKILL)  # as kill -9, or a lost machine
        await workers[0].wait()
        workers.append(await spawn(client, queue, data_dir))
        result: SelfModifyResult = await asyncio.wait_for(handle.result(), 600)  # a busy CI machine
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
    assert result.status == "promoted", result.message
    promotions = [h for h in repo.history() if h.changed_by == handle.id]
    assert len(promotions) == 1 and promotions[0].commit == result.promoted_commit
    assert repo.active().commit == result.promoted_commit and repo.active().previous == incumbent
