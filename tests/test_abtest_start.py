"""Starting an A/B test (issue 27 items 4 and 6): the metric must be one the slot records, the autopilot
picks one it records, and starting never migrates the knowledge base."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.models import abtest_start as abtests
from activities.models.abtest_requests import ABTestRequestActivities
from activities.models.offline_variants import OFFLINE_SLOT
from activities.models.registry import ModelRegistry
from activities.storage.knowledge_base import KnowledgeBase, head_revision
from autarky.core.actions import ActionRequest
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput
from autarky.models.types import OutcomeIn, Variant
from tests.test_research_queue import downgrade

VARIANTS = [
    Variant(name="incumbent", provider="external", model="m1"),
    Variant(name="challenger", provider="external", model="m2"),
]


@pytest.fixture
def settings(tmp_path: Path) -> AutarkySettings:
    return AutarkySettings(data_dir=tmp_path)


@pytest.fixture
def registry(settings: AutarkySettings) -> Iterator[ModelRegistry]:
    kb = KnowledgeBase(settings.knowledge_db_url)
    kb.migrate()
    registry = ModelRegistry(kb)
    registry.register_slot("s", VARIANTS, "incumbent", external=True)
    yield registry
    kb.close()


def _input(metric: str = "quality", slot: str = "s", **fields: object) -> ABTestInput:
    return ABTestInput(slot=slot, challenger="challenger", metric=metric, **fields)  # type: ignore[arg-type]


def test_a_metric_the_slot_does_not_record_is_refused(
    settings: AutarkySettings, registry: ModelRegistry
) -> None:
    with pytest.raises(abtests.ABTestRefused, match="slot 's' records no outcomes yet"):
        abtests.check_slot(settings, _input("valid"))
    registry.record_outcome(OutcomeIn(slot="s", variant="incumbent", latency_ms=10))  # no quality
    with pytest.raises(
        abtests.ABTestRefused,
        match="slot 's' records valid, latency_ms, cost, not 'quality': choose one with --metric",
    ):
        abtests.check_slot(settings, _input("quality"))
    for metric in ("valid", "latency_ms", "cost"):
        abtests.check_slot(settings, _input(metric))
    registry.record_outcome(OutcomeIn(slot="s", variant="incumbent", latency_ms=10, quality=0.8))
    abtests.check_slot(settings, _input("quality"))
    # A slot the test drives with labelled examples records quality before its first batch.
    abtests.check_slot(settings, ABTestInput(slot=OFFLINE_SLOT, challenger="bm25-title"))
    assert abtests.recorded_metrics(settings, "s") == ["quality", "valid", "latency_ms", "cost"]
    with pytest.raises(abtests.ABTestRefused, match="unknown model slot 'nope'"):
        abtests.recorded_metrics(settings, "nope")


def test_starting_never_migrates_the_knowledge_base(
    settings: AutarkySettings, registry: ModelRegistry
) -> None:
    registry.record_outcome(OutcomeIn(slot="s", variant="incumbent", latency_ms=10, quality=0.8))
    previous = "0011"
    assert head_revision() != previous
    downgrade(registry.kb, previous)
    with pytest.raises(abtests.ABTestRefused) as refused:
        abtests.check_slot(settings, _input())
    message = str(refused.value)
    assert f"at schema revision {previous}, the code needs {head_revision()}" in message
    assert "`autarky up`" in message and "`autarky worker`" in message
    assert registry.kb.revision() == previous  # refused, and left as it was

    fresh = AutarkySettings(data_dir=settings.data_dir / "new")
    with pytest.raises(abtests.ABTestRefused, match=r"no knowledge base yet at .*`autarky up`"):
        abtests.check_slot(fresh, _input())
    assert not (settings.data_dir / "new" / "knowledge.db").exists()  # nothing created either


async def test_the_autopilot_tests_on_a_metric_the_slot_records(
    client: Client, settings: AutarkySettings
) -> None:
    kb = KnowledgeBase(settings.knowledge_db_url)
    kb.migrate()
    registry = ModelRegistry(kb)
    llm_slot, rated_slot, silent_slot = (
        f"{name}-{uuid.uuid4().hex[:8]}" for name in ("llm", "rated", "silent")
    )
    for slot in (llm_slot, rated_slot, silent_slot):
        registry.register_slot(slot, VARIANTS, "incumbent", external=True)
    # An LLM slot's outcomes: valid or not, never a quality (activities/models/routed.py).
    registry.record_outcomes(
        [OutcomeIn(slot=llm_slot, variant="incumbent", latency_ms=5, valid=i % 9 != 0) for i in range(20)]
    )
    registry.record_outcome(OutcomeIn(slot=rated_slot, variant="incumbent", latency_ms=5, quality=1.0))
    queue = f"abtest-start-{uuid.uuid4().hex[:8]}"  # no worker: the test is started, not run
    actions = ABTestRequestActivities(
        settings.model_copy(update={"task_queue": queue, "research_task_queue": queue})
    )
    environment = ActivityEnvironment(client=client)

    async def started_metric(slot: str) -> str:
        request = ActionRequest(
            action_id=f"act-{slot}",
            action_type="start_abtest",
            reason="never tested",
            params={"slot": slot, "variant": "challenger"},
        )
        result = await environment.run(actions.start_model_abtest, request)
        assert result.success and not result.nothing_to_do, result
        handle = client.get_workflow_handle(f"abtest/{slot}/challenger")
        history = await handle.fetch_history()
        await handle.terminate("test over")
        started = history.events[0].workflow_execution_started_event_attributes
        return json.loads(started.input.payloads[0].data)["metric"]

    assert await started_metric(llm_slot) == "valid"
    assert await started_metric(rated_slot) == "quality"
    request = ActionRequest(
        action_id="act-silent",
        action_type="start_abtest",
        reason="never tested",
        params={"slot": silent_slot, "variant": "challenger"},
    )
    silent = await environment.run(actions.start_model_abtest, request)
    assert silent.nothing_to_do and "records no outcomes yet" in silent.detail, silent
    kb.close()
