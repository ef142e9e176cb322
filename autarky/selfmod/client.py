"""Self-modification from the client side: list the agents with their active versions, show and roll back
their pointers, and where to watch a run (starting one: autarky.selfmod.evolutions).

The agents' version stores live in `<data_dir>/agents/<agent>/`; reading them here never creates one
(the first self-modification run bootstraps an agent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from activities.selfmod.versions import AgentRepository, VersionStoreError
from autarky.core.settings import AutarkySettings
from autarky.core.temporal import external_profile
from autarky.selfmod.agents import AGENTS, agent_spec
from autarky.selfmod.types import ActivePointer, AgentSpec


def ui_hint(settings: AutarkySettings, workflow_id: str) -> str:
    """Where a person watches the run."""
    if external_profile() is not None:
        return f"your cluster's Temporal UI, workflow {workflow_id}"
    return (
        f"http://localhost:{settings.ui_port}/namespaces/{quote(settings.namespace, safe='')}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


# ---------------------------------------------------------------------- the version stores


def agents_root(settings: AutarkySettings) -> Path:
    return settings.data_dir / "agents"


def repository(settings: AutarkySettings, agent: str) -> AgentRepository:
    """The agent's version store (ValueError for an unknown agent); constructing it touches nothing."""
    agent_spec(agent)
    return AgentRepository(agents_root(settings), agent)


@dataclass
class AgentRow:
    spec: AgentSpec
    pointer: ActivePointer | None  # None: not evolved yet
    problem: str | None = None  # the store exists but cannot be read


def list_agents(settings: AutarkySettings) -> list[AgentRow]:
    """Every declared agent with its active pointer (None when it was never evolved)."""
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
    repo = repository(settings, agent)
    if not repo.pointer_path.exists():
        raise VersionStoreError(f"agent {agent} has not been evolved yet: nothing to roll back")
    before = repo.active()
    after = repo.rollback(by=by, reason=reason, now=datetime.now(UTC), to=to)
    return before, after
