"""The autopilot scales the local pool: load → `pool_overloaded` → scale_pool → the pool's ScalerWorkflow.

The scaler and the scaling request are real; the pool is a stand-in whose size the fake host probe
reports (the real pool provider has its own tests: test_local_pool_scaling.py)."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from activities.infra.scaling_requests import ScalingRequestActivities
from autarky.autopilot.types import ActionStatus
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.settings import ScalingSettings
from autarky.scaling.types import OperationStatus, ScaleOperation
from tests.fakes import FakeHost
from tests.scaler_fakes import FakePool
from tests.test_autopilot import Harness, actions, eventually, fast_settings, of_type
from workflows.scaling import ScalerWorkflow

POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=3,
    cooldown=timedelta(seconds=2),
    stabilisation_window=timedelta(seconds=2),
    blast_radius=5.0,
)


async def test_load_grows_the_pool_and_its_end_shrinks_it_after_the_cooldown(
    client: Client, tmp_path: Path
) -> None:
    host_id = f"scale-host-{uuid.uuid4().hex[:8]}"
    host = FakeHost(cpu=95.0, pool_members=1)
    pool = FakePool(desired=1, host=host)
    harness = Harness(client, tmp_path, host, host_id=host_id)
    settings = fast_settings(pool_scaling=True, pool_policy=POLICY)
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
        await eventually(lambda: _at(pool, 3), timeout=60)  # busy: 1 → 2 → 3 (the maximum)
        host.cpu = 5.0  # the load is gone
        await eventually(lambda: _at(pool, 1), timeout=60)
        records = await actions(handle)
        scaler = client.get_workflow_handle(f"scaler/local-pool/{host_id}")
        operations = await scaler.query(ScalerWorkflow.operations)
        await scaler.terminate("test finished")
    sizes = [desired for _, desired in pool.changes]
    assert sizes[: sizes.index(3) + 1] == sorted(sizes[: sizes.index(3) + 1])  # grew step by step
    assert sizes[-1] == 1 and max(sizes) == 3
    succeeded = of_type(records, "scale_pool", ActionStatus.SUCCEEDED)
    assert succeeded and all(r.decision.candidate.host == host_id for r in succeeded)
    assert any(r.decision.candidate.finding_kind == "pool_overloaded" for r in succeeded)
    assert any(r.decision.candidate.finding_kind == "pool_underused" for r in succeeded)
    assert not of_type(records, "scale_pool", ActionStatus.FAILED)
    _assert_spaced(operations, POLICY.cooldown)


async def _at(pool: FakePool, size: int) -> bool:
    return pool.desired == size


def _assert_spaced(operations: list[ScaleOperation], cooldown: timedelta) -> None:
    """Changes of capacity at least a cooldown apart (the scaler's own clock)."""
    started = [o for o in operations if o.started_at is not None]  # the last may still verify
    assert len(started) >= 4 and not [o for o in started if o.status == OperationStatus.COMPENSATED]
    # A request for the size the pool already has (a watcher that has not yet heard of the last change)
    # is answered "unchanged": no change, so no cooldown runs from it.
    changes = [o for o in started if o.status != OperationStatus.UNCHANGED]
    starts = [o.started_at for o in changes if o.started_at is not None]
    assert min(later - earlier for earlier, later in itertools.pairwise(starts)) >= cooldown
