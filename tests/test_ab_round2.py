"""ModelABTestWorkflow, round 2, on the real server: what protects the traffic (issue 27's safety items).

The registry is real (SQLite); traffic comes from the seeded simulator, which routes by the slot's
effective split as the gateway does. Where a test needs the registry to go down, the worker serves the real
registry activities behind a switch that makes them fail as a database outage does (the registry's own
behaviour under an outage is tested in tests/test_routed_fallback.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.models.abtest_requests import ABTestRequestActivities
from autarky.core.actions import ActionRequest
from autarky.models.ab_types import ABTestResult, ABTestStatus, Guardrails
from autarky.models.types import OutcomeIn, Variant
from tests import test_ab_test
from tests.ab_simulator import Behaviour
from tests.test_ab_test import Lab, _share, registry_activities, worker
from tests.test_autopilot import eventually

lab = test_ab_test.lab  # the fixture: a slot with two variants, a worker, the registry


async def _status(handle: Any) -> ABTestStatus | None:
    return await handle.query("status", result_type=ABTestStatus | None)


def _with_outage(activities: list[Callable[..., Any]], down: asyncio.Event) -> list[Callable[..., Any]]:
    """The same activities, failing while `down` is set: the registry's database is unreachable."""

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        name = activity._Definition.must_from_callable(real).name

        async def maybe_down(request: Any) -> Any:
            if down.is_set():
                # What the registry raises when its database is gone: retryable, like any OperationalError.
                raise ApplicationError(f"{name}: the knowledge base is unreachable", type="OperationalError")
            return await real(request)

        # The payload types the SDK converts, resolved (the real method's module has their names).
        maybe_down.__annotations__ = typing.get_type_hints(real)
        return activity.defn(name=name)(maybe_down)

    return [
        wrap(a) if activity._Definition.must_from_callable(a).name != "plan_model_abtest" else a
        for a in activities
    ]


async def test_a_registry_outage_ends_the_test_with_the_incumbent_restored(client: Any, lab: Lab) -> None:
    down = asyncio.Event()
    queue = f"abtest-outage-{uuid.uuid4().hex[:8]}"
    lab.queue = queue
    same = Behaviour(quality=0.6)
    async with (
        lab.traffic(incumbent=same, challenger=same),
        worker(client, lab.settings, queue, _with_outage(registry_activities(lab.settings), down)),
    ):
        handle = await lab.start(max_samples=10**6, min_improvement=0.01)
        await eventually(lambda: _share(lab, "challenger"))
        down.set()  # reads give up after their 5 attempts (~15 s); the restore waits for the registry
        await eventually(lambda: _failed_read(handle), timeout=60)
        assert lab.registry.slot(lab.slot).split.get("challenger", 0) > 0  # nothing restored it yet
        down.clear()
        try:
            await handle.result()
        except WorkflowFailureError:
            pass
        else:
            raise AssertionError("the test should fail: its reads gave up")
    slot = lab.registry.slot(lab.slot)
    assert slot.split == {"incumbent": 1.0} and slot.active == "incumbent"
    memo = await (await handle.describe()).memo()
    assert memo["decision"] == "failed" and "unreachable" in memo["reason"], memo


async def _failed_read(handle: Any) -> bool:
    """The workflow is restoring: its reads failed for good (the restore is the activity now retrying)."""
    async for event in handle.fetch_history_events():
        scheduled = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and (
            scheduled.activity_type.name == "restore_model_incumbent"
        ):
            return True
    return False


async def test_a_cancelled_test_restores_the_incumbent(lab: Lab) -> None:
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        handle = await lab.start(max_samples=10**6, min_improvement=0.01)
        await eventually(lambda: _share(lab, "challenger"))
        await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def test_a_terminated_test_s_split_runs_out_and_routes_to_the_incumbent(lab: Lab) -> None:
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        handle = await lab.start(max_samples=10**6, min_improvement=0.01, split_lease=timedelta(seconds=2))
        await eventually(lambda: _share(lab, "challenger"))
        await handle.terminate("an operator's mistake")
        stored = lab.registry.slot(lab.slot)
        assert stored.split.get("challenger", 0) > 0  # nobody restored it
        expiry = stored.split_expires_at
        assert expiry is not None
        # Every call routed after the expiry (the simulator stamps a call with the time it read the split)
        # goes to the incumbent: wait for some (a busy machine ticks slowly), then none is the challenger's.
        since = expiry + timedelta(milliseconds=1)
        await eventually(lambda: _routed_after(lab, since), timeout=60)
        after = lab.registry.outcome_counts(lab.slot, since=since)
        assert after["challenger"] == 0 and after["incumbent"] > 0, after
    assert lab.registry.slot(lab.slot).effective_split(datetime.now(UTC)) == {"incumbent": 1.0}


async def _routed_after(lab: Lab, since: datetime) -> bool:
    return sum(lab.registry.outcome_counts(lab.slot, since=since).values()) >= 200


async def test_a_late_guardrail_breach_is_rolled_back_within_two_periods(lab: Lab) -> None:
    healthy = Behaviour(quality=0.6, error_rate=0.02)
    async with lab.traffic(incumbent=healthy, challenger=healthy) as simulator:
        handle = await lab.start(
            max_samples=10**6, min_improvement=0.01, evaluation_interval=timedelta(seconds=1)
        )
        await eventually(lambda: _periods_at_least(handle, 8), timeout=60)  # thousands of healthy calls
        status = await _status(handle)
        assert status is not None and status.decision == "running", status
        simulator.behaviours["challenger"] = Behaviour(quality=0.6, error_rate=0.20)
        breach_started = status.periods
        result: ABTestResult = await handle.result()
    assert result.decision == "rolled_back" and "error" in result.reason, result
    # The period running when the breach began, then at most 2 more.
    assert result.status.periods - breach_started <= 3, (breach_started, result.status.periods)
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def _periods_at_least(handle: Any, periods: int) -> bool:
    status = await _status(handle)
    return status is not None and status.periods >= periods


async def test_equal_error_rates_are_not_a_breach(lab: Lab) -> None:
    async with lab.traffic(
        incumbent=Behaviour(quality=0.5, error_rate=0.02), challenger=Behaviour(quality=0.7, error_rate=0.02)
    ):
        result = await (await lab.start()).result()
    assert result.decision == "promoted", result


async def test_a_sample_ratio_mismatch_stops_the_test(lab: Lab) -> None:
    # The challenger's worst outcomes go missing (a logging bug): it looks better, and its share is off.
    async with lab.traffic(
        incumbent=Behaviour(quality=0.6), challenger=Behaviour(quality=0.6, lost_failures=0.3)
    ):
        # A small minimum improvement: the design's first look is far off, the mismatch is not.
        result = await (await lab.start(max_samples=10**6, min_improvement=0.01)).result()
    assert result.decision == "rolled_back" and "sample ratio" in result.reason, result
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def test_a_challenger_faster_until_it_times_out_is_not_promoted(lab: Lab) -> None:
    # Faster on every answered call, but its slowest 3 % time out after 30 s: not faster at all.
    async with lab.traffic(
        incumbent=Behaviour(latency_ms=100),
        challenger=Behaviour(latency_ms=80, error_rate=0.03, error_latency_ms=30_000),
    ):
        result = await (
            await lab.start(
                metric="latency_ms",
                error_latency_ms=30_000,
                guardrails=Guardrails(max_error_rate=None, max_error_increase=None),
            )
        ).result()
    assert result.decision != "promoted", result
    assert result.status.estimate is not None and result.status.estimate < 0, result.status


async def test_an_autopilot_started_test_of_the_llm_slot_reaches_a_decision(lab: Lab) -> None:
    """The LLM slot records what the routed gateway records (latency, cost, validity; no quality): the
    autopilot's test must use one of those, and it decides."""
    slot = f"research-analyst-{uuid.uuid4().hex[:6]}"
    lab.registry.register_slot(
        slot,
        [
            Variant(name="openai-gpt-5-mini", provider="openai", model="gpt-5-mini"),
            Variant(name="openai-gpt-5", provider="openai", model="gpt-5"),
        ],
        active="openai-gpt-5-mini",
    )
    for variant in ("openai-gpt-5-mini", "openai-gpt-5"):  # what the gateway recorded before the test
        lab.registry.record_outcome(OutcomeIn(slot=slot, variant=variant, latency_ms=900, valid=True))
    lab.slot = slot
    settings = lab.settings.model_copy(
        update={
            "task_queue": lab.queue,
            "research_task_queue": lab.queue,
            "abtest": lab.settings.abtest.model_copy(
                update={
                    "evaluation_interval": timedelta(milliseconds=300),
                    "min_duration": timedelta(0),
                    "share": 0.5,
                    "ramp": [0.2],
                    "calls_per_step": 50,
                    # Both arms answer alike: the guardrail margin counts evidence, yet a few such tests in
                    # a hundred still ask a person (tests/test_promotion_margin.py); nobody plays one here.
                    "approval_risk": 1.0,
                }
            ),
        }
    )
    request = ActionRequest(
        action_id="act-llm",
        action_type="start_abtest",
        reason="never tested",
        params={"slot": slot, "variant": "openai-gpt-5"},
    )
    # Its design waits out the default 10 s propagation delay twice (ramp, test) and needs some hundred
    # calls: a light load, so the simulator does not starve the worker in this process on a busy machine.
    async with lab.traffic(
        calls_per_tick=10,
        **{
            "openai-gpt-5-mini": Behaviour(valid_rate=0.7, record_quality=False),
            "openai-gpt-5": Behaviour(valid_rate=0.95, record_quality=False),
        },
    ):
        started = await ActivityEnvironment(client=lab.client).run(
            ABTestRequestActivities(settings).start_model_abtest, request
        )
        assert started.success and not started.nothing_to_do, started
        handle = lab.client.get_workflow_handle(f"abtest/{slot}/openai-gpt-5", result_type=ABTestResult)
        result = await asyncio.wait_for(handle.result(), timeout=240)
    assert result.decision in ("promoted", "kept"), result
    assert result.status.metric != "quality", result.status  # the slot records no quality
    assert result.status.decision == result.decision


async def test_a_lease_that_lapsed_while_no_worker_ran_ends_the_test_restored(client: Any, lab: Lab) -> None:
    queue = f"abtest-lapse-{uuid.uuid4().hex[:8]}"
    lab.queue = queue
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        async with worker(client, lab.settings, queue):
            handle = await lab.start(
                max_samples=10**6, min_improvement=0.01, split_lease=timedelta(seconds=1)
            )
            await eventually(lambda: _share(lab, "challenger"))
        await asyncio.sleep(2.5)  # no worker: nothing renews the lease, the routers send all to the incumbent
        assert lab.registry.slot(lab.slot).effective_split(datetime.now(UTC)) == {"incumbent": 1.0}
        async with worker(client, lab.settings, queue):
            result: ABTestResult = await handle.result()
    assert result.decision == "aborted" and "lapsed" in result.reason, result
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def test_a_split_changed_by_a_person_is_left_to_them(lab: Lab) -> None:
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        handle = await lab.start(max_samples=10**6, min_improvement=0.01)
        await eventually(lambda: _share(lab, "challenger"))
        lab.registry.set_split(lab.slot, {"incumbent": 0.7, "challenger": 0.3}, key="a-person")
        result: ABTestResult = await handle.result()
    assert result.decision == "aborted" and "changed outside the test" in result.reason, result
    assert lab.registry.slot(lab.slot).split == {"incumbent": 0.7, "challenger": 0.3}
