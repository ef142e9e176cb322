"""The A/B test's recorders for tests/test_replay.py: a test's first run (ramp, evaluations, a pause and a
resume, continue-as-new), and its last run, which promotes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHistory

from autarky.core.settings import AutarkySettings


async def record_abtest_history(
    client: Client, data_dir: Path, workflow_id: str | None = None, last_run: bool = False
) -> WorkflowHistory:
    """An A/B test's first run: ramp, evaluations with a seeded simulator, pause and resume, then
    continue-as-new (the second run goes on and promotes: its history with `last_run`)."""
    from activities.models import abtest_start as abtests
    from activities.models.registry import ModelRegistry
    from activities.storage.knowledge_base import KnowledgeBase
    from autarky.models.ab_types import ABTestInput
    from autarky.models.types import OutcomeIn, Variant
    from tests.ab_simulator import Behaviour, Simulator
    from tests.test_ab_test import worker as abtest_worker

    settings = AutarkySettings(data_dir=data_dir)
    kb = KnowledgeBase(settings.knowledge_db_url)
    kb.migrate()
    registry = ModelRegistry(kb)
    slot = workflow_id or f"replay-slot-{uuid.uuid4().hex[:8]}"
    registry.register_slot(
        slot,
        [
            Variant(name="a", provider="external", model="a"),
            Variant(name="b", provider="external", model="b"),
        ],
        active="a",
        external=True,
    )
    registry.record_outcome(OutcomeIn(slot=slot, variant="a", latency_ms=1.0, quality=0.5))  # records quality
    queue = f"abtest-replay-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(
        registry, slot, {"a": Behaviour(quality=0.5), "b": Behaviour(quality=0.7)}, calls_per_tick=10
    )
    stop = asyncio.Event()
    traffic = asyncio.create_task(simulator.run(stop))
    try:
        async with abtest_worker(client, settings, queue):
            handle = await abtests.start(
                client,
                settings.model_copy(update={"task_queue": queue}),
                ABTestInput(
                    slot=slot,
                    challenger="b",
                    share=0.5,
                    ramp=[0.2],
                    calls_per_step=20,
                    evaluation_interval=timedelta(milliseconds=300),
                    evaluations_per_run=2,
                    propagation_delay=timedelta(0),
                    min_duration=timedelta(0),
                    activity_task_queue=queue,
                ),
            )
            first_run = (await handle.describe()).run_id
            await handle.signal("pause")
            await asyncio.sleep(0.5)
            await handle.signal("resume")
            await handle.result()
            run = None if last_run else first_run
            history = await client.get_workflow_handle(handle.id, run_id=run).fetch_history()
    finally:
        stop.set()
        await traffic
        kb.close()
    if workflow_id:  # replay names a history by its file
        history = WorkflowHistory(workflow_id, history.events)
    return history


async def record_abtest_promotion_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """The A/B test's last run: the challenger is promoted, its guardrail margin scored (a marker of
    `abtest-margin-evidence` from release 30)."""
    return await record_abtest_history(client, data_dir, workflow_id, last_run=True)
