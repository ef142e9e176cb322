"""People's verdicts on research items, which the offline analyser learns from (autarky/research/learning.py):
their ratings (`autarky research rate ITEM good|bad`, table `item_ratings`, revision 0011) and their
decisions on experiments (approved: good, rejected: bad; read from `experiments`, not copied).

Blocking (SQLAlchemy); activities call it in a thread.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, Experiment, Item, UtcDateTime, utc_now
from autarky.research.learning import Decision

VERDICTS = {"approved": True, "rejected": False}  # an experiment's state → the item was good or not


class ItemRating(Base):
    """One rating per item: rating it again replaces the verdict."""

    __tablename__ = "item_ratings"

    item_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    good: Mapped[bool] = mapped_column(sa.Boolean)
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Ratings:
    """Ratings and experiment decisions in one knowledge base."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    def rate(self, item_id: int, good: bool) -> bool | None:
        """Record a person's verdict on the item (replacing an earlier one); the earlier verdict, None if
        there was none. An unknown item is a ValueError naming where the ids are listed."""
        module = sqlite if self.kb.engine.dialect.name == "sqlite" else postgresql
        with self.kb.engine.begin() as connection:
            if connection.execute(sa.select(Item.id).where(Item.id == item_id)).first() is None:
                raise ValueError(f"no research item {item_id}: `autarky research list` shows the items' ids")
            before = connection.execute(
                sa.select(ItemRating.good).where(ItemRating.item_id == item_id)
            ).scalar_one_or_none()
            now = utc_now()
            insert = module.insert(ItemRating).values(item_id=item_id, good=good, rated_at=now)
            connection.execute(
                insert.on_conflict_do_update(index_elements=["item_id"], set_={"good": good, "rated_at": now})
            )
            return before

    def signature(self) -> tuple[object, ...]:
        """Changes whenever `decisions` may have: counts and latest change times of ratings and of decided
        experiments (one cheap query each, so a worker re-reads the decisions only when it must)."""
        decided = Experiment.state.in_(list(VERDICTS))
        with self.kb.engine.connect() as connection:
            ratings = connection.execute(
                sa.select(sa.func.count(ItemRating.item_id), sa.func.max(ItemRating.rated_at))
            ).one()
            experiments = connection.execute(
                sa.select(sa.func.count(Experiment.id), sa.func.max(Experiment.updated_at)).where(decided)
            ).one()
        return (*ratings, *experiments)

    def decisions(self) -> list[Decision]:
        """Every item a person judged, once: its rating if it was rated, else the latest decided experiment
        on it (expired ones decide nothing). Ordered by item id."""
        verdicts: dict[int, bool] = {}
        with self.kb.engine.connect() as connection:
            decided = connection.execute(
                sa.select(Experiment.item_id, Experiment.state)
                .where(Experiment.state.in_(list(VERDICTS)))
                .order_by(Experiment.updated_at, Experiment.id)
            )
            for item_id, state in decided:
                verdicts[item_id] = VERDICTS[state]  # the latest decision wins
            for item_id, good in connection.execute(sa.select(ItemRating.item_id, ItemRating.good)):
                verdicts[item_id] = bool(good)  # a rating says more than an experiment's fate
            texts: dict[int, tuple[str, str]] = {}
            ids = sorted(verdicts)
            for start in range(0, len(ids), 500):  # below SQLite's bound-parameter limit
                rows = connection.execute(
                    sa.select(Item.id, Item.title, Item.abstract).where(Item.id.in_(ids[start : start + 500]))
                )
                texts.update({i: (title, abstract) for i, title, abstract in rows})
        return [Decision(i, *texts[i], verdicts[i]) for i in ids if i in texts]
