"""Self-modification from the client side: start an evolution run (one per agent at a time, ids
`evolve/<agent>/<n>`), list the agents with their active versions, show and roll back their pointers.

The agents' version stores live in `<data_dir>/agents/<agent>/`; reading them here never creates one
(the first self-modification run bootstraps an agent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import AGENTS, agent_spec
from autarky.selfmod.types import ActivePointer, AgentSpec, SelfModifyInput, SelfModifyResult

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
    threshold: float | None = None,
    requested_by: str = "cli",
    reason: str = "",
) -> WorkflowHandle:
    """Start `SelfModificationWorkflow` for `agent` as `evolve/<agent>/<n>` (n: one more than the runs
    the server knows of); EvolutionRefused for bad input or when this agent is already evolving."""
    try:
        agent_spec(agent)
        request = SelfModifyInput(
            agent=agent,
            offline=offline,
            generations=generations,
            population=population,
            threshold=threshold,
            requested_by=requested_by,
            reason=reason,
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


def ui_hint(settings: AutarkySettings, workflow_id: str) -> str:
    """Where a person watches the run."""
    from autarky.core.temporal import external_profile

    if external_profile() is not None:
        return f"your cluster's Temporal UI, workflow {workflow_id}"
    return (
        f"http://localhost:{settings.ui_port}/namespaces/{quote(settings.namespace, safe='')}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


# ---------------------------------------------------------------------- the version stores


def agents_root(settings: AutarkySettings) -> Path:
    return settings.data_dir / "agents"


def repository(settings: AutarkySettings, agent: str):  # -> AgentRepository
    """The agent's version store (ValueError for an unknown agent); constructing it touches nothing."""
    from activities.selfmod.versions import AgentRepository

    agent_spec(agent)
    return AgentRepository(agents_root(settings), agent)


@dataclass
class AgentRow:
    spec: AgentSpec
    pointer: ActivePointer | None  # None: not evolved yet
    problem: str | None = None  # the store exists but cannot be read


def list_agents(settings: AutarkySettings) -> list[AgentRow]:
    """Every declared agent with its active pointer (None when it was never evolved)."""
    from activities.selfmod.versions import VersionStoreError

    rows = []
    for name, spec in AGENTS.items():
        repo = repository(settings, name)
        if not repo.pointer_path.exists():
            rows.append(AgentRow(spec, None))
            continue
        try:
            rows.append(AgentRow(spec, repo.active()))
        except VersionStoreError as error:
            rows.append(AgentRow(spec, None, str(error)))
    return rows


def history(settings: AutarkySettings, agent: str) -> list[ActivePointer]:
    """The agent's pointer changes, oldest first (empty when it was never evolved)."""
    return repository(settings, agent).history()


def rollback(
    settings: AutarkySettings, agent: str, by: str, reason: str, to: str | None = None
) -> tuple[ActivePointer, ActivePointer]:
    """Return the agent to `to` (default: the version before the active one); (before, after).
    VersionStoreError says why not (never evolved, nothing to roll back to, unknown commit)."""
    from activities.selfmod.versions import VersionStoreError

    repo = repository(settings, agent)
    if not repo.pointer_path.exists():
        raise VersionStoreError(f"agent {agent} has not been evolved yet: nothing to roll back")
    before = repo.active()
    after = repo.rollback(by=by, reason=reason, now=datetime.now(UTC), to=to)
    return before, after
