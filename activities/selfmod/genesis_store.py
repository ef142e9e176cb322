"""Agents made by genesis, registered after a person approved them (knowledge base, revision 0014): every
host reads them; `autarky.selfmod.genesis.registry` loads them from here (its loader is installed by
activities/selfmod/genesis_registry.py, which loads SQLAlchemy only when it is needed)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime
from autarky.selfmod.genesis import GeneratedAgent, registry


class GeneratedAgentRow(Base):
    __tablename__ = "generated_agents"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    record: Mapped[str] = mapped_column(sa.Text)  # GeneratedAgent as JSON


def _engine(kb: KnowledgeBaseHandle | KnowledgeBase) -> sa.Engine:
    return (kb.get() if isinstance(kb, KnowledgeBaseHandle) else kb).engine


def load_all(kb: KnowledgeBaseHandle | KnowledgeBase) -> list[GeneratedAgent]:
    with _engine(kb).connect() as connection:
        rows = connection.execute(sa.select(GeneratedAgentRow.record)).scalars()
        return [GeneratedAgent.model_validate_json(text) for text in rows]


def save(kb: KnowledgeBaseHandle | KnowledgeBase, agent: GeneratedAgent) -> bool:
    """Register `agent`: True when it stands as its genesis run's, False when another run registered one of
    that name (the first stands). A row of the same run is this run's: a retry of the activity after the
    row was committed (a failure later in it) registered nothing new, yet the agent is this run's."""
    assert agent.registered_at is not None
    t = GeneratedAgentRow
    with _engine(kb).begin() as connection:
        existing = connection.execute(sa.select(t.record).where(t.name == agent.spec.name)).scalar()
        if existing is not None:
            first = GeneratedAgent.model_validate_json(existing)
            if not agent.genesis_run or first.genesis_run != agent.genesis_run:
                return False
        else:
            connection.execute(
                sa.insert(t).values(
                    name=agent.spec.name, registered_at=agent.registered_at, record=agent.model_dump_json()
                )
            )
    registry.refresh()
    return True
