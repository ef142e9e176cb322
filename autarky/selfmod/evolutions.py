"""Starting a self-modification run of an agent (`SelfModificationWorkflow`, ids `evolve/<agent>/<n>`), one
per agent at a time: for a person (`autarky evolve`), the autopilot's action and an approved research
experiment (activities/selfmod/requests.py)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import agent_spec
from autarky.selfmod.types import SelfModifyInput, SelfModifyResult

KIND = "self_modify"  # workflows/self_modify.py's KIND
START_ATTEMPTS = 5  # ids taken by a start the visibility store has not shown yet


class EvolutionRefused(ValueError):
    """The run cannot start: unknown agent, bad input, or a run of this agent is already going."""


def evolve_prefix(agent: str) -> str:
    return f"evolve/{agent}/"


async def running_evolution(client: Client, agent: str) -> str | None:
    """The id of this agent's running evolution, if there is one."""
    query = f'WorkflowId STARTS_WITH "{evolve_prefix(agent)}" AND ExecutionStatus = "Running"'
    async for execution in client.list_workflows(query, limit=1):
        return execution.id
    return None


async def start_evolution(
    client: Client,
    settings: AutarkySettings,
    agent: str,
    offline: bool = False,
    generations: int = 3,
    population: int = 4,
    search: str = "es",
    threshold: float | None = None,
    requested_by: str = "cli",
    reason: str = "",
    brief: str = "",
) -> WorkflowHandle:
    """Start `SelfModificationWorkflow` for `agent` as `evolve/<agent>/<n>` (n: one more than the runs
    the server knows of); EvolutionRefused for bad input or when this agent is already evolving. `brief`:
    what an approved research experiment asks of the run (its LLM reads it)."""
    try:
        agent_spec(agent)
        request = SelfModifyInput(
            agent=agent,
            offline=offline,
            generations=generations,
            population=population,
            search=search,
            threshold=threshold,
            requested_by=requested_by,
            reason=reason,
            brief=brief,
            activity_task_queue=settings.research_task_queue,
            limits=settings.evolution.limits,
            parallel_checks=settings.evolution.parallel_checks,
        )
    except ValueError as error:  # pydantic's ValidationError is one too
        raise EvolutionRefused(str(error)) from None
    # One run per agent: two would promote over each other, each judged against a stale incumbent.
    running = await running_evolution(client, agent)
    if running is not None:
        raise EvolutionRefused(f"{running} is evolving {agent} already; wait for it or cancel it first")
    counted = await client.count_workflows(f'WorkflowId STARTS_WITH "{evolve_prefix(agent)}"')
    n = counted.count + 1
    for _ in range(START_ATTEMPTS):
        try:
            return await client.start_workflow(
                "SelfModificationWorkflow",
                request,
                id=f"{evolve_prefix(agent)}{n}",
                task_queue=settings.task_queue,
                result_type=SelfModifyResult,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.KIND, KIND), SearchAttributePair(sa.AGENT, agent)]
                ),
            )
        except WorkflowAlreadyStartedError:
            n += 1
    raise EvolutionRefused(
        f"could not find a free id after {evolve_prefix(agent)}{n - START_ATTEMPTS}; try again"
    )
