"""Starting an A/B test of a model variant (`ModelABTestWorkflow`), after checking the slot and challenger
exist and the slot records the test's metric, so bad input changes nothing, one test per slot: for a person
(autarky.models.client, `autarky abtest start`) and for the autopilot's action
(activities/models/abtest_requests.py). The check reads the model registry, which is why this lives with
the activities. It never migrates the knowledge base: a CLI command must not change a schema the running
workers use; a schema behind the code is refused, naming the command that migrates it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput, ABTestResult

if TYPE_CHECKING:
    from activities.models.registry import ModelRegistry

# The commands that bring the knowledge base's schema to the code's (their workers migrate it on start).
MIGRATING_COMMANDS = "`autarky up` (or a worker: `autarky worker`)"


class ABTestRefused(ValueError):
    """The test cannot start: unknown slot or challenger, the challenger already active, a metric the slot
    does not record, or a knowledge base whose schema is behind the code."""


@contextmanager
def _registry(settings: AutarkySettings) -> Iterator[ModelRegistry]:
    """The registry on the configured knowledge base, whose schema must be at the code's head (refused
    otherwise, nothing created or migrated); the built-in offline slot is registered on first use."""
    # Here, not at the top: a worker loads SQLAlchemy when a test starts, not when it starts.
    from activities.models.offline_variants import ensure_default_slots
    from activities.models.registry import ModelRegistry
    from activities.storage.knowledge_base import KnowledgeBase, head_revision

    url = settings.knowledge_db_url
    head = head_revision()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise ABTestRefused(
            f"no knowledge base yet at {url}: start Autarky first ({MIGRATING_COMMANDS} creates it at "
            f"schema revision {head})"
        )
    kb = KnowledgeBase(url)
    try:
        revision = kb.revision()
        if revision != head:
            raise ABTestRefused(
                f"the knowledge base at {kb.engine.url.render_as_string(hide_password=True)} is at schema "
                f"revision {revision or 'none'}, the code needs {head}: run {MIGRATING_COMMANDS}, which "
                "migrates it, then start the test again"
            )
        registry = ModelRegistry(kb)
        ensure_default_slots(registry)
        yield registry
    finally:
        kb.close()


def _drives_offline(input: ABTestInput) -> bool:
    """Whether the test drives the slot with labelled examples (the workflow's rule)."""
    from activities.models.registry import OFFLINE_SUFFIX

    return input.drive_offline if input.drive_offline is not None else input.slot.endswith(OFFLINE_SUFFIX)


def recorded_metrics(settings: AutarkySettings, slot: str) -> list[str]:
    """The metrics `slot`'s outcomes carry (ModelRegistry.recorded_metrics); ABTestRefused for an unknown
    slot or a knowledge base behind the code."""
    with _registry(settings) as registry:
        try:
            return registry.recorded_metrics(slot)
        except ValueError as error:
            raise ABTestRefused(str(error)) from None


def check_slot(settings: AutarkySettings, input: ABTestInput) -> None:
    """Refuse, before anything starts: a knowledge base whose schema is behind the code, an unknown slot or
    challenger, a challenger that is already active, and a metric the slot does not record (a test on it
    could never decide). A slot records a metric once one of its outcomes carries it: "valid",
    "latency_ms" and "cost" from its first outcome, "quality" from its first outcome with a quality; a slot
    the test drives offline records them all."""
    with _registry(settings) as registry:
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
        if _drives_offline(input):
            return  # the test's own batches record every metric
        recorded = registry.recorded_metrics(slot.name)
        if input.metric not in recorded:
            if not recorded:
                raise ABTestRefused(
                    f"slot {slot.name!r} records no outcomes yet, so no metric (not {input.metric!r}): "
                    "send it traffic first"
                )
            raise ABTestRefused(
                f"slot {slot.name!r} records {', '.join(recorded)}, not {input.metric!r}: choose one with "
                "--metric"
            )


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
