"""Self-modification from the client side: list the agents with their active versions, show and roll back
their pointers, and where to watch a run (starting one: autarky.selfmod.evolutions).

The truth of the agents' versions is in the knowledge base every host shares (`knowledge_base_url`:
activities/selfmod/agent_store.py), so these act on it from any host; `<data_dir>/agents/<agent>/` is
this host's cache of it. Reading never bootstraps an agent (the first self-modification run does)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from activities.selfmod.running_version import running_version
from activities.selfmod.versions import AgentRepository, VersionStoreError, read_active_pointer
from autarky.core.settings import AutarkySettings
from autarky.core.temporal import external_profile
from autarky.selfmod import genesis
from autarky.selfmod.agents import AGENTS, agent_spec
from autarky.selfmod.types import ActivePointer, AgentSpec

if TYPE_CHECKING:
    from activities.selfmod.agent_store import AgentStore


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


def install_generated(settings: AutarkySettings) -> None:
    """Let this process find the agents made by genesis (registered in the knowledge base)."""
    from activities.selfmod import genesis_registry
    from activities.storage.handle import KnowledgeBaseHandle

    genesis_registry.install(KnowledgeBaseHandle(settings.knowledge_db_url))


def store(settings: AutarkySettings) -> AgentStore:
    from activities.selfmod.agent_store import AgentStore  # SQLAlchemy: only for the commands that need it

    return AgentStore.at(settings.knowledge_db_url)


def repository(settings: AutarkySettings, agent: str) -> AgentRepository:
    """The agent's versions (ValueError for an unknown agent); constructing it touches nothing."""
    install_generated(settings)
    agent_spec(agent)
    return AgentRepository(agents_root(settings), agent, store(settings))


@dataclass
class AgentRow:
    spec: AgentSpec
    pointer: ActivePointer | None  # None: not evolved yet
    problem: str | None = None  # the store exists but cannot be read
    waits: str | None = None  # the active version's code is not this installation's: what runs instead


def list_agents(settings: AutarkySettings) -> list[AgentRow]:
    """Every declared agent with its active pointer (None when it was never evolved)."""
    rows = []
    shared = store(settings)
    install_generated(settings)
    made = {a.spec.name: a.spec for a in genesis.registry.all()}  # agents made by genesis, registered
    for name, spec in {**AGENTS, **made}.items():
        try:
            pointer = read_active_pointer(agents_root(settings), name, shared)
            rows.append(AgentRow(spec, pointer, waits=_waits(settings, spec, shared)))
        except VersionStoreError as error:
            rows.append(AgentRow(spec, None, str(error)))
    return rows


def _waits(settings: AutarkySettings, spec: AgentSpec, shared: AgentStore) -> str | None:
    """Why the active version does not run on workers of this installation (an agent without live code
    runs only its own sources: activities/selfmod/running_version.py), and what runs meanwhile."""
    try:
        return running_version(agents_root(settings), spec, shared).note()
    except VersionStoreError as error:
        return f"cannot tell whether its code runs here: {error}"


def history(settings: AutarkySettings, agent: str) -> list[ActivePointer]:
    """The agent's pointer changes, oldest first (empty when it was never evolved)."""
    return repository(settings, agent).history()


def rollback(
    settings: AutarkySettings, agent: str, by: str, reason: str, to: str | None = None
) -> tuple[ActivePointer, ActivePointer]:
    """Return the agent to `to` (default: the version before the active one); (before, after).
    VersionStoreError says why not (never evolved, nothing to roll back to, unknown commit)."""
    repo = repository(settings, agent)
    if read_active_pointer(agents_root(settings), agent, repo.store) is None:
        raise VersionStoreError(f"agent {agent} has not been evolved yet: nothing to roll back")
    before = repo.active()
    after = repo.rollback(by=by, reason=reason, now=datetime.now(UTC), to=to)
    return before, after
