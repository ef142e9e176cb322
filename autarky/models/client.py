"""A/B model tests from the client side: start one (after checking the slot and challenger exist, so bad
input changes nothing), read its live status, pause, resume or abort it, list them."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput, ABTestResult, ABTestStatus


class ABTestRefused(ValueError):
    """The test cannot start: unknown slot or challenger, or the challenger is already active."""


def check_slot(settings: AutarkySettings, input: ABTestInput) -> None:
    """Refuse an unknown slot or challenger before anything starts (the registry lives in the knowledge
    base; the built-in offline slot is registered on first use)."""
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


def workflow_id(slot: str, challenger: str) -> str:
    return ABTestInput(slot=slot, challenger=challenger).workflow_id()


async def status(client: Client, slot: str, challenger: str) -> ABTestStatus | None:
    return await client.get_workflow_handle(workflow_id(slot, challenger)).query(
        "status", result_type=ABTestStatus | None
    )


async def signal(client: Client, slot: str, challenger: str, name: str, *args: str) -> None:
    await client.get_workflow_handle(workflow_id(slot, challenger)).signal(name, *args)


async def listing(client: Client, limit: int = 50) -> list[tuple[str, str, str]]:
    """(workflow id, decision, status) of the latest A/B tests."""
    rows, seen = [], set()
    async for execution in client.list_workflows(f'{sa.KIND.name} = "abtest"', limit=limit * 4):
        if execution.id in seen:  # earlier runs of a test that continued as new
            continue
        seen.add(execution.id)
        if len(rows) >= limit:
            break
        decision = execution.typed_search_attributes.get(sa.DECISION) or "running"
        state = execution.status.name.lower() if execution.status else "unknown"
        rows.append((execution.id, decision, state))
    return rows
