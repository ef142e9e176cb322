"""Starting an A/B test of a model variant (`ModelABTestWorkflow`), after checking the slot and challenger
exist so bad input changes nothing, one test per slot: for a person (autarky.models.client, `autarky abtest
start`) and for the autopilot's action (activities/models/abtest_requests.py). The check reads the model
registry, which is why this lives with the activities."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput, ABTestResult


class ABTestRefused(ValueError):
    """The test cannot start: unknown slot or challenger, or the challenger is already active."""


def check_slot(settings: AutarkySettings, input: ABTestInput) -> None:
    """Refuse an unknown slot or challenger before anything starts (the registry lives in the knowledge
    base; the built-in offline slot is registered on first use)."""
    # Here, not at the top: a worker loads SQLAlchemy when a test starts, not when it starts.
    from activities.models.offline_variants import ensure_default_slots
    from activities.models.registry import ModelRegistry
    from activities.storage.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(settings.knowledge_db_url)
    try:
        kb.migrate()
        registry = ModelRegistry(kb)
        ensure_default_slots(registry)
        try:
            slot = registry.slot(input.slot)
        except ValueError as error:
            raise ABTestRefused(str(error)) from None
        names = [v.name for v in slot.variants]
        if input.challenger not in names:
            raise ABTestRefused(
                f"slot {slot.name!r} has no variant {input.challenger!r} (variants: {', '.join(names)})"
            )
        if input.challenger == slot.active:
            raise ABTestRefused(f"{input.challenger!r} is already the active variant of {slot.name!r}")
    finally:
        kb.close()


async def start(
    client: Client, settings: AutarkySettings, input: ABTestInput, rerun: bool = True
) -> WorkflowHandle:
    """Start the test; `rerun=False` refuses when a test of this slot and challenger ever ran (the
    autopilot's way: it tests a variant once, a person may test it again)."""
    check_slot(settings, input)
    # One test per slot: two would overwrite each other's split, and a promotion would be judged
    # against an incumbent that is no longer the one in service.
    query = f'{sa.SLOT.name} = "{input.slot}" AND ExecutionStatus = "Running"'
    async for running in client.list_workflows(query, limit=1):
        if running.id != input.workflow_id():
            raise ABTestRefused(f"{running.id} is testing slot {input.slot!r}; wait for it or abort it first")
    if input.activity_task_queue is None:
        input = input.model_copy(update={"activity_task_queue": settings.research_task_queue})
    return await client.start_workflow(
        "ModelABTestWorkflow",
        input,
        id=input.workflow_id(),
        task_queue=settings.task_queue,
        result_type=ABTestResult,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
        if rerun
        else WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(sa.KIND, "abtest"), SearchAttributePair(sa.SLOT, input.slot)]
        ),
    )
