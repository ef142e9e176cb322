"""A/B model tests from the client side: read one's live status, pause, resume or abort it, list them.
Starting one checks the model registry: activities.models.abtest_start."""

from __future__ import annotations

from temporalio.client import Client

from autarky.core import search_attributes as sa
from autarky.models.ab_types import ABTestInput, ABTestStatus


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
