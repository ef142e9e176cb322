"""Diffs shown to the people who approve a promotion, in the knowledge base (revision 0006), which every
worker and every approver's `autarky approvals --diff ID` reads: not a path on one worker's disk.

A diff is stored once per agent, commit and text (a retried activity finds the row it stored); the
workflow carries only its id and an excerpt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime, utc_now


class PromotionDiff(Base):
    __tablename__ = "promotion_diffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 of agent, commit and text
    agent: Mapped[str] = mapped_column(sa.String(128))
    commit_id: Mapped[str] = mapped_column(sa.String(64))
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


def store_diff(kb: KnowledgeBase, agent: str, commit: str, text: str) -> int:
    """The id of the stored diff, stored now or by an earlier attempt."""
    key = hashlib.sha256(f"{agent}\0{commit}\0{text}".encode()).hexdigest()
    values = {"key": key, "agent": agent, "commit_id": commit, "text": text, "created_at": utc_now()}
    with kb._transaction() as connection:
        connection.execute(
            kb._insert(PromotionDiff).values(**values).on_conflict_do_nothing(index_elements=["key"])
        )
        return connection.execute(sa.select(PromotionDiff.id).where(PromotionDiff.key == key)).scalar_one()


@dataclass(frozen=True)
class StoredDiff:
    id: int
    agent: str
    commit: str
    text: str
    created_at: datetime


def read_diff(kb: KnowledgeBase, diff_id: int) -> StoredDiff | None:
    t = PromotionDiff
    query = sa.select(t.id, t.agent, t.commit_id, t.text, t.created_at).where(t.id == diff_id)
    with kb._transaction() as connection:
        row = connection.execute(query).first()
    return None if row is None else StoredDiff(*row)
