"""The autopilot scales the local pool on its own load (release 28): busy slots and the backlog of its
queue → `pool_overloaded` / `pool_underused` → scale_pool → the pool's ScalerWorkflow.

Host CPU spent by other processes does not grow the pool; a pool without work goes to zero; a backlog
brings members back. The scaler and the scaling request are real; the pool is a stand-in whose size and
load the fake host probe reports (the real pool's load reading has its own tests: test_pool_load.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.infra.scaling_requests import ScalingRequestActivities
from autarky.autopilot.types import ActionRecord, ActionStatus
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.settings import ScalingSettings
from tests.fakes import FakeHost
from tests.scaler_fakes import FakePool
from tests.test_autopilot import Harness, actions, eventually, fast_settings, of_type

POLICY = ScalingPolicy(
    min_capacity=0,
    max_capacity=3,
    cooldown=timedelta(0),
    stabilisation_window=timedelta(seconds=1),
    idle_window=timedelta(seconds=3),
    warmup=timedelta(0),
    backlog_age_limit=timedelta(seconds=1),  # also how long a change settles before it is judged
    blast_radius=5.0,
)


@asynccontextmanager
async def scaling_autopilot(
    client: Client,
    tmp_path: Path,
    host: FakeHost,
    pool: FakePool,
    policy: ScalingPolicy = POLICY,
    host_id: str | None = None,
    **settings_overrides: object,
) -> AsyncIterator[tuple[Harness, WorkflowHandle]]:
    host_id = host_id or f"scale-host-{uuid.uuid4().hex[:8]}"
    harness = Harness(client, tmp_path, host, host_id=host_id)
    settings = fast_settings(pool_scaling=True, pool_policy=policy, **settings_overrides)
    product = AutarkySettings(
        task_queue=harness.task_queue,
        control_task_queue=harness.control_queue,
        host_id=host_id,
        autopilot=settings,
        scaling=ScalingSettings(health_poll_interval=timedelta(milliseconds=200)),
    )
    harness.main_activities = [ScalingRequestActivities(product).request_scaling]
    harness.pool_activities[host_id] = [pool.read_pool, pool.set_pool]
    async with harness.running(settings) as handle:
        try:
            yield harness, handle
        finally:
            await client.get_workflow_handle(f"scaler/local-pool/{host_id}").terminate("test finished")


async def test_busy_cpu_without_pool_work_never_grows_the_pool_and_a_backlog_does(
    client: Client, tmp_path: Path
) -> None:
    # Other processes hold the host's CPU at 97 %; the pool's queue has no work.
    host = FakeHost(cpu=97.0, pool_members=1, pool_share=0.0)
    pool = FakePool(desired=1, host=host)
    async with scaling_autopilot(client, tmp_path, host, pool) as (_harness, handle):
        await eventually(lambda: _at(pool, 0), timeout=60)  # idle: to zero, whatever the CPU
        assert [d for _, d in pool.changes] == [0]  # never grew on host CPU
        host.pool_backlog, host.pool_backlog_age_seconds = 25, 40.0  # 2.5 members' worth of slots wait
        await eventually(lambda: _at(pool, 3), timeout=60)
        host.pool_backlog, host.pool_backlog_age_seconds = 0, 0.0  # the work is done
        await eventually(lambda: _at(pool, 0), timeout=60)
        records = await actions(handle)
    sizes = [d for _, d in pool.changes]
    assert sizes[:2] == [0, 3] and sizes[-1] == 0, sizes  # grew on the backlog, back to zero after it
    assert sizes[1:] == sorted(sizes[1:], reverse=True), sizes  # (through one member while not yet idle)
    succeeded = of_type(records, "scale_pool", ActionStatus.SUCCEEDED)
    kinds = [r.decision.candidate.finding_kind for r in succeeded]
    # (the last shrink's record may still be on its way to the autopilot)
    assert kinds.count("pool_overloaded") == 1 and kinds.count("pool_underused") >= 1, kinds
    grew = next(r for r in succeeded if r.decision.candidate.finding_kind == "pool_overloaded")
    assert "demand 2.50 units" in grew.decision.candidate.reason, grew.decision.candidate
    # The change was judged (the plumbing: the real pool queue it reads has no work here; the judgement
    # itself is tested below with real waiting work, and in test_scaling_effect.py).
    assert "0 → 3 helped" in (grew.detail or ""), grew.detail


async def test_busy_slots_keep_the_members_that_serve_them(client: Client, tmp_path: Path) -> None:
    # Two members, 10 slots each, 17 tasks running and nothing waiting: both members are needed.
    host = FakeHost(cpu=20.0, pool_members=2, pool_in_flight=17)
    pool = FakePool(desired=2, host=host)
    async with scaling_autopilot(client, tmp_path, host, pool):
        await eventually(lambda: _probed(host, 15), timeout=60)
        assert pool.changes == []  # 17 busy slots of 20: neither more nor fewer members
        host.pool_in_flight = 4  # most work done: one member's slots suffice
        await eventually(lambda: _at(pool, 1), timeout=60)
    assert [d for _, d in pool.changes] == [1]


async def _at(pool: FakePool, size: int) -> bool:
    return pool.desired == size


async def _probed(host: FakeHost, count: int) -> bool:
    return host.probes >= count


async def test_a_pool_grows_step_after_step_without_waiting_for_the_plan_round(
    client: Client, tmp_path: Path
) -> None:
    # Each step may add one member (the blast radius); the plan round is ten minutes. Each further step's
    # finding is no new kind, only a new size: before release 28 it waited for the round.
    host = FakeHost(cpu=20.0, pool_members=1, pool_backlog=35, pool_backlog_age_seconds=0.5)
    pool = FakePool(desired=1, host=host)
    stepwise = POLICY.model_copy(update={"min_capacity": 1, "max_capacity": 4, "blast_radius": 0.5})
    stepwise = stepwise.model_copy(update={"blast_radius_units": 1})
    rounds = {"optimization_interval": timedelta(minutes=10)}
    async with scaling_autopilot(client, tmp_path, host, pool, stepwise, **rounds):
        await eventually(lambda: _at(pool, 4), timeout=90)
    assert [d for _, d in pool.changes] == [2, 3, 4]


@workflow.defn(name="PoolWorkWaiting", sandboxed=False)
class PoolWorkWaiting:
    """Work on a pool's queue that no member takes (the change asked for never brings one)."""

    @workflow.run
    async def run(self, pool_queue: str) -> None:
        await workflow.execute_activity(
            "pool_work", task_queue=pool_queue, start_to_close_timeout=timedelta(minutes=5)
        )


async def test_a_growth_that_leaves_the_work_waiting_is_learnt_as_a_failure(
    client: Client, tmp_path: Path
) -> None:
    # One task waits on the pool's real queue; the stand-in pool's "members" never poll it.
    host_id = f"scale-host-{uuid.uuid4().hex[:8]}"
    host = FakeHost(cpu=20.0, pool_members=1, pool_backlog=1, pool_backlog_age_seconds=40)
    pool = FakePool(desired=1, host=host)
    policy = POLICY.model_copy(update={"min_capacity": 1})
    starter = f"pool-work-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=starter, workflows=[PoolWorkWaiting]):
        work = await client.start_workflow(
            PoolWorkWaiting.run, f"autarky-pool@{host_id}", id=starter, task_queue=starter
        )
        try:
            async with scaling_autopilot(client, tmp_path, host, pool, policy, host_id) as (_, handle):
                records = await eventually(lambda: _finished(handle, "scale_pool"), timeout=90)
        finally:
            await work.terminate("test finished")
    assert [d for _, d in pool.changes][:1] == [2]  # the backlog waited too long: one more member
    record = records[0]
    assert record.status == ActionStatus.FAILED, record
    assert "did not help: the work still waits" in (record.detail or ""), record.detail


async def _finished(handle: WorkflowHandle, action_type: str) -> list[ActionRecord]:
    return [
        r
        for r in await actions(handle)
        if r.decision.candidate.action_type == action_type and r.finished_at is not None
    ]
