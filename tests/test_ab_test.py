"""ModelABTestWorkflow on the real server: the registry on SQLite, traffic from a seeded simulator."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.models import abtest_start as abtests
from activities.models.abtest_plan import plan_model_abtest
from activities.models.registry import ModelRegistry
from activities.models.registry_activities import ModelRegistryActivities
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from autarky.core import search_attributes as sa
from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput, ABTestResult, ABTestStatus, Guardrails
from autarky.models.types import OutcomeIn, Variant
from tests.ab_simulator import Behaviour, Simulator
from tests.test_autopilot import eventually
from workflows.ab_test import ModelABTestWorkflow

FAST = {
    "evaluation_interval": timedelta(milliseconds=300),
    "ramp": [0.2],
    "share": 0.5,
    "calls_per_step": 50,
    "max_samples": 5000,
    "propagation_delay": timedelta(0),  # the simulator reads the split on every tick
    "min_duration": timedelta(0),
    # Arms that answer alike still ask a person in a few tests in a hundred on the guardrail margin
    # (tests/test_promotion_margin.py), and nobody plays one here; approvals are tested with require_approval.
    "approval_risk": 1.0,
}


@dataclass
class Lab:
    client: Client
    settings: AutarkySettings
    registry: ModelRegistry
    queue: str
    slot: str

    def input(self, **fields: object) -> ABTestInput:
        return ABTestInput(**({"slot": self.slot, "challenger": "challenger"} | FAST | fields))

    async def start(self, **fields: object) -> WorkflowHandle:
        input = self.input(**fields).model_copy(update={"activity_task_queue": self.queue})
        return await abtests.start(
            self.client, self.settings.model_copy(update={"task_queue": self.queue}), input
        )

    @asynccontextmanager
    async def traffic(self, calls_per_tick: int = 200, **behaviours: Behaviour) -> AsyncIterator[Simulator]:
        simulator = Simulator(self.registry, self.slot, behaviours, calls_per_tick, seed=len(self.slot))
        stop = asyncio.Event()
        task = asyncio.create_task(simulator.run(stop))
        try:
            yield simulator
        finally:
            stop.set()
            await task


def registry_activities(settings: AutarkySettings) -> list[Callable[..., Any]]:
    """Every activity the A/B test schedules, as the research worker serves them."""
    activities = ModelRegistryActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))
    return [
        activities.describe_model_slot,
        activities.set_model_split,
        activities.renew_model_split,
        activities.promote_model_variant,
        activities.restore_model_incumbent,
        activities.model_arm_stats,
        activities.model_window_stats,
        activities.evaluate_offline_batch,
        activities.evaluate_offline_paired,
        plan_model_abtest,
    ]


@asynccontextmanager
async def worker(
    client: Client, settings: AutarkySettings, queue: str, activities: list[Callable[..., Any]] | None = None
) -> AsyncIterator[Worker]:
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ModelABTestWorkflow],
        activities=activities or registry_activities(settings),
    ) as running:
        yield running


@pytest.fixture
async def lab(client: Client, tmp_path: Path) -> AsyncIterator[Lab]:
    settings = AutarkySettings(data_dir=tmp_path)
    kb = KnowledgeBase(settings.knowledge_db_url)
    kb.migrate()
    registry = ModelRegistry(kb)
    slot = f"test-slot-{uuid.uuid4().hex[:8]}"
    registry.register_slot(
        slot,
        [
            Variant(name="incumbent", provider="external", model="m1"),
            Variant(name="challenger", provider="external", model="m2"),
        ],
        active="incumbent",
        external=True,
    )
    # A test is refused on a metric the slot does not record: this one records quality (before the test
    # begins, so no test counts it).
    registry.record_outcome(OutcomeIn(slot=slot, variant="incumbent", latency_ms=1.0, quality=0.5))
    queue = f"abtest-{uuid.uuid4().hex[:8]}"
    async with worker(client, settings, queue):
        yield Lab(client, settings, registry, queue, slot)
    kb.close()


async def test_a_clear_winner_is_promoted(lab: Lab) -> None:
    async with lab.traffic(incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.7)):
        handle = await lab.start()
        result = await handle.result()
    assert result.decision == "promoted", result
    slot = lab.registry.slot(lab.slot)
    assert slot.active == "challenger" and slot.split == {"challenger": 1.0}
    assert result.status.estimate is not None and result.status.lower is not None and result.status.lower > 0
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.DECISION) == "promoted"
    assert description.typed_search_attributes.get(sa.SLOT) == lab.slot


@pytest.mark.slow
async def test_an_a_a_test_keeps_the_incumbent(lab: Lab) -> None:
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        # A small α: at the default 5 % one A/A run in 40 promotes by design (tests/test_ab_error_rates.py
        # measures that rate); this test is about the workflow keeping the incumbent when it should.
        result = await (await lab.start(alpha=0.002)).result()
    assert result.decision == "kept", result
    slot = lab.registry.slot(lab.slot)
    assert slot.active == "incumbent" and slot.split == {"incumbent": 1.0}


async def test_a_guardrail_breach_rolls_back_within_one_period(lab: Lab) -> None:
    async with lab.traffic(
        incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.9, error_rate=0.3)
    ) as simulator:
        handle = await lab.start(guardrails=Guardrails(max_error_rate=0.05, min_calls=20))
        result = await handle.result()
    assert result.decision == "rolled_back" and "error rate" in result.reason, result
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}
    # Within one period: the challenger got at most a few ticks' share of calls.
    assert simulator.calls.get("challenger", 0) < 2000


async def test_abort_restores_the_incumbent(lab: Lab) -> None:
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same):
        handle = await lab.start(max_samples=10**6, min_improvement=0.01)
        await eventually(lambda: _share(lab, "challenger"))
        await handle.signal("pause")
        status = await eventually(lambda: _paused(handle))
        assert status.paused
        await handle.signal("abort", "wrong challenger")
        result = await handle.result()
    assert result.decision == "aborted" and "wrong challenger" in result.reason
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def test_a_worker_restart_mid_test_loses_nothing(client: Client, lab: Lab) -> None:
    # The lab's worker serves the queue; a second queue gets a worker we stop and replace.
    queue = f"abtest-restart-{uuid.uuid4().hex[:8]}"
    lab.queue = queue
    async with lab.traffic(incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.7)):
        async with worker(client, lab.settings, queue):
            handle = await lab.start()
            await eventually(lambda: _share(lab, "challenger"))
        await asyncio.sleep(1.0)  # no worker: the test waits, nothing changes
        async with worker(client, lab.settings, queue):
            result: ABTestResult = await handle.result()
    assert result.decision == "promoted", result


async def test_a_promotion_needing_approval_waits_then_promotes(lab: Lab) -> None:
    async with lab.traffic(incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.7)):
        handle = await lab.start(require_approval=True)
        pending = await eventually(lambda: _pending(handle))
        assert lab.registry.slot(lab.slot).active == "incumbent"  # not before a person says so
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=pending[0].approval_id, approver="ada", reason="numbers look right"),
            result_type=ApprovalRequest,
        )
        result = await handle.result()
    assert result.decision == "promoted"
    assert lab.registry.slot(lab.slot).active == "challenger"


async def test_an_offline_slot_is_driven_by_labelled_examples(lab: Lab) -> None:
    from activities.models.offline_variants import OFFLINE_SLOT, ensure_default_slots

    ensure_default_slots(lab.registry)
    slot = lab.registry.slot(OFFLINE_SLOT)
    challenger = next(v.name for v in slot.variants if v.name != slot.active)
    for _ in range(2):  # a second test of the same slot and challenger records outcomes of its own
        handle = await abtests.start(
            lab.client,
            lab.settings.model_copy(update={"task_queue": lab.queue}),
            ABTestInput(
                slot=OFFLINE_SLOT,
                challenger=challenger,
                activity_task_queue=lab.queue,
                batch_size=400,
                **(FAST | {"max_samples": 20_000}),
            ),
        )
        result = await handle.result()
        # bm25-title judges 67 % of the labelled set right, bm25 84 %: not better, and clearly so: one
        # paired test on the same examples settles it (McNemar), no resampling of the labelled set.
        assert result.decision == "kept", result
        assert "paired (McNemar) on 176" in result.status.design, result.status
        assert result.status.estimate is not None and result.status.estimate < 0, result.status
    paired = lab.registry.count_refs(OFFLINE_SLOT, "paired:")
    assert paired == 2 * 2 * 176, paired  # each test: both variants scored every example once
    assert lab.registry.slot(OFFLINE_SLOT).split == {slot.active: 1.0}


async def test_bad_input_is_refused_before_anything_changes(lab: Lab) -> None:
    with pytest.raises(abtests.ABTestRefused, match="unknown model slot"):
        await lab.start(slot="no-such-slot")
    with pytest.raises(abtests.ABTestRefused, match="has no variant 'nope'"):
        await lab.start(challenger="nope")
    with pytest.raises(abtests.ABTestRefused, match="already the active variant"):
        await lab.start(challenger="incumbent")
    with pytest.raises(ValueError, match="alpha"):
        lab.input(alpha=0.7)
    with pytest.raises(ValueError, match="share"):
        lab.input(share=1.0)
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}


async def _share(lab: Lab, variant: str) -> bool:
    return lab.registry.slot(lab.slot).split.get(variant, 0) > 0


async def _paused(handle: WorkflowHandle) -> ABTestStatus | None:
    status = await handle.query("status", result_type=ABTestStatus | None)
    return status if status is not None and status.paused else None


async def _pending(handle: WorkflowHandle) -> list[ApprovalRequest]:
    return await handle.query("pending_approvals", result_type=list[ApprovalRequest])


async def test_the_autopilot_finds_an_untested_variant_and_starts_its_test(lab: Lab) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities.models.abtest_requests import ABTestRequestActivities
    from autarky.core.actions import ActionRequest

    registry_activities = ModelRegistryActivities(
        lab.settings, KnowledgeBaseHandle(lab.settings.knowledge_db_url)
    )
    environment = ActivityEnvironment(client=lab.client)
    found = await environment.run(registry_activities.untested_model_variants)
    assert [(v.slot, v.variant) for v in found if v.slot == lab.slot] == [(lab.slot, "challenger")]
    assert not [v for v in found if v.slot == "research-relevance-offline"]  # left to people

    settings = lab.settings.model_copy(update={"task_queue": lab.queue, "research_task_queue": lab.queue})
    request = ActionRequest(
        action_id="act-1",
        action_type="start_abtest",
        reason="never tested",
        params={"slot": lab.slot, "variant": "challenger"},
    )
    started = await environment.run(ABTestRequestActivities(settings).start_model_abtest, request)
    again = await environment.run(ABTestRequestActivities(settings).start_model_abtest, request)
    assert started.success and not started.nothing_to_do and "abtest/" in started.detail
    assert again.nothing_to_do and "running" in again.detail
    found = await environment.run(registry_activities.untested_model_variants)
    assert not [v for v in found if v.slot == lab.slot]
    await lab.client.get_workflow_handle(f"abtest/{lab.slot}/challenger").signal("abort", "test over")


async def test_an_abort_while_a_promotion_awaits_approval_restores_the_incumbent(lab: Lab) -> None:
    async with lab.traffic(incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.7)):
        handle = await lab.start(require_approval=True)
        await eventually(lambda: _pending(handle))
        await handle.signal("abort", "changed our mind")
        result = await handle.result()
    assert result.decision == "aborted" and "changed our mind" in result.reason
    slot = lab.registry.slot(lab.slot)
    assert slot.active == "incumbent" and slot.split == {"incumbent": 1.0}


async def test_a_signal_before_the_first_task_is_kept(lab: Lab) -> None:
    input = lab.input().model_copy(update={"activity_task_queue": lab.queue})
    handle = await lab.client.start_workflow(
        ModelABTestWorkflow.run, input, id=input.workflow_id(), task_queue=lab.queue, start_signal="pause"
    )
    status = await eventually(lambda: _paused(handle))
    assert status.paused
    await handle.signal("abort", "test over")
    assert (await handle.result()).decision == "aborted"


async def test_a_second_test_on_a_busy_slot_is_refused(lab: Lab) -> None:
    lab.registry.add_variant(lab.slot, Variant(name="third", provider="external", model="m3"))
    same = Behaviour(quality=0.6)
    async with lab.traffic(incumbent=same, challenger=same, third=same):
        handle = await lab.start(max_samples=10**6)
        await eventually(lambda: _share(lab, "challenger"))
        with pytest.raises(abtests.ABTestRefused, match="is testing slot"):
            await lab.start(challenger="third")
        await handle.signal("abort", "test over")
        await handle.result()


async def test_a_paused_test_still_guards_and_its_pause_does_not_count_against_the_deadline(lab: Lab) -> None:
    async with lab.traffic(incumbent=Behaviour(quality=0.5), challenger=Behaviour(quality=0.5)) as simulator:
        # The deadline counts in every phase (the ramp too): long enough for the pause to arrive on a busy
        # machine, then the test sleeps past it.
        handle = await lab.start(
            max_samples=10**6,
            min_improvement=0.01,
            max_duration=timedelta(seconds=6),
            design="always_valid",  # no planning activity: the 6 s are the ramp's and the test's
        )
        await eventually(lambda: _share(lab, "challenger"))
        await handle.signal("pause")
        await asyncio.sleep(7)  # longer than max_duration: paused time does not count
        assert (await handle.describe()).status.name == "RUNNING"
        simulator.behaviours["challenger"] = Behaviour(quality=0.5, error_rate=0.5)
        result = await handle.result()  # paused, and still the guardrail stops it
    assert result.decision == "rolled_back" and "error rate" in result.reason, result
    assert lab.registry.slot(lab.slot).split == {"incumbent": 1.0}
