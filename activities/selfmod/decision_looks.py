"""How often an agent's decision part has been looked at, per data version (knowledge base, revision 0013).

Each comparison of a candidate with the incumbent on the decision part is a look at data the search never
saw. Looked at every week, the same data would sooner or later promote a lucky candidate, so each look
spends part of the false-promotion allowance (autarky.selfmod.policy.look_confidence) and the count starts
again only when the data changes (a new data version: new labelled data, a fresh split).

A look is keyed by the evolution run that made it: a retried comparison is the same look.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime


class DecisionLook(Base):
    __tablename__ = "agent_decision_looks"
    __table_args__ = (
        sa.UniqueConstraint("agent", "data_version", "run_id", name="uq_agent_decision_looks_run"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(128))
    data_version: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(256))
    looked_at: Mapped[datetime] = mapped_column(UtcDateTime)


def record_look(
    kb: KnowledgeBaseHandle | KnowledgeBase, agent: str, data_version: str, run_id: str, now: datetime
) -> int:
    """The number of this look (1 for the first) at `agent`'s decision part of `data_version`; a run that
    looked before gets its own number again."""
    engine = (kb.get() if isinstance(kb, KnowledgeBaseHandle) else kb).engine
    t = DecisionLook
    mine = sa.and_(t.agent == agent, t.data_version == data_version, t.run_id == run_id)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(t).values(agent=agent, data_version=data_version, run_id=run_id, looked_at=now)
            )
    except IntegrityError:
        pass  # this run's look is stored already (a retried comparison)
    with engine.connect() as connection:
        own = connection.execute(sa.select(t.id).where(mine)).scalar_one()
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(t)
            .where(t.agent == agent, t.data_version == data_version, t.id <= own)
        ).scalar_one()


def looks(kb: KnowledgeBaseHandle | KnowledgeBase, agent: str, data_version: str) -> int:
    """How many looks `agent`'s decision part of `data_version` has had."""
    engine = (kb.get() if isinstance(kb, KnowledgeBaseHandle) else kb).engine
    t = DecisionLook
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(t).where(t.agent == agent, t.data_version == data_version)
        ).scalar_one()


def looked_at(kb: KnowledgeBaseHandle | KnowledgeBase, agent: str, run_id: str) -> str | None:
    """The data version an evolution run compared on, or None when it never reached the comparison."""
    engine = (kb.get() if isinstance(kb, KnowledgeBaseHandle) else kb).engine
    t = DecisionLook
    with engine.connect() as connection:
        return connection.execute(
            sa.select(t.data_version).where(t.agent == agent, t.run_id == run_id).limit(1)
        ).scalar_one_or_none()
