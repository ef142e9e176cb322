"""The research cycle's queue in the knowledge base: which items wait for an analysis (none yet, or none by
the current analyser while still recent), failures counted on items under their analyser (set aside after
a few, back when the analyser changes or a person says retry), and the one-cycle-at-a-time lease.

A mixin of `KnowledgeBase` (activities/storage/knowledge_base.py), which provides the transactions.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from activities.storage.schema import Analysis, AnalysisFailureRecord, Base, Item, Lease, utc_now
from autarky.research.items import OFFLINE_MODEL
from autarky.research.types import AnalyserKey

MAX_ANALYSIS_FAILURES = 3
RESEARCH_LEASE = "research-cycle"


class ResearchQueue:
    """Methods of `KnowledgeBase`; `_transaction`, `_insert` and `_require_item` are its."""

    if TYPE_CHECKING:  # what the mixin uses of KnowledgeBase, for the type checker only

        def _transaction(self) -> AbstractContextManager[Connection]: ...

        def _insert(self, model: type[Base]) -> Any: ...

        @staticmethod
        def _require_item(connection: Connection, item_id: int) -> None: ...

    # --- waiting items ---------------------------------------------------------------------------------

    @staticmethod
    def _never_analysed() -> Any:
        return ~sa.select(Analysis.id).where(Analysis.item_id == Item.id).exists()

    @classmethod
    def _waiting(cls, analyser: AnalyserKey | None = None, since: datetime | None = None) -> Any:
        """Items waiting for an analysis: none yet, or (first seen since `since`) none by `analyser`; and
        not set aside, i.e. fewer than MAX_ANALYSIS_FAILURES failures under this analyser (round-1 items,
        counted under no analyser, come back once: their failures were mostly the provider's)."""
        needs = cls._never_analysed()
        if analyser is not None and since is not None:
            if analyser.offline:
                current = sa.and_(Analysis.provider == OFFLINE_MODEL, Analysis.model == analyser.model)
            else:
                current = sa.and_(
                    Analysis.provider != OFFLINE_MODEL, Analysis.prompt_version == analyser.prompt_version
                )
            has_current = sa.select(Analysis.id).where(Analysis.item_id == Item.id, current).exists()
            needs = sa.or_(needs, sa.and_(Item.first_seen >= since, ~has_current))
        kept = Item.analysis_failures < MAX_ANALYSIS_FAILURES
        if analyser is not None:
            kept = sa.or_(kept, Item.failed_analyser.is_(None), Item.failed_analyser != analyser.label)
        return sa.and_(needs, kept)

    def unanalysed_items(
        self, limit: int, analyser: AnalyserKey | None = None, since: datetime | None = None
    ) -> list[int]:
        """Ids of items waiting for an analysis: never analysed first, then those that failed before, oldest
        first; a cycle stopped by its budget leaves some, and the next cycle takes them before its own."""
        query = (
            sa.select(Item.id)
            .where(self._waiting(analyser, since))
            .order_by(~self._never_analysed(), Item.analysis_failures, Item.first_seen, Item.id)
            .limit(limit)
        )
        with self._transaction() as connection:
            return list(connection.execute(query).scalars())

    def count_unanalysed(self, analyser: AnalyserKey | None = None, since: datetime | None = None) -> int:
        query = sa.select(sa.func.count(Item.id)).where(self._waiting(analyser, since))
        with self._transaction() as connection:
            return connection.execute(query).scalar_one()

    # --- failures --------------------------------------------------------------------------------------

    def record_analysis_failure(self, item_id: int, error: str, ref: str, analyser: str = "") -> bool:
        """An analysis of the item failed for the item's own reason (`ref` names the attempt, e.g. cycle
        and item: recording it again is a no-op). Failures under another analyser start the count afresh.
        What the call cost is the gateway's to record. True when recorded now."""
        with self._transaction() as connection:
            self._require_item(connection, item_id)
            inserted = connection.execute(
                self._insert(AnalysisFailureRecord)
                .values(item_id=item_id, ref=ref, analyser=analyser, error=error[:1000], at=utc_now())
                .on_conflict_do_nothing(index_elements=["ref"])
                .returning(AnalysisFailureRecord.id)
            ).scalar_one_or_none()
            if inserted is None:
                return False
            same = sa.func.coalesce(Item.failed_analyser, "") == analyser
            connection.execute(
                sa.update(Item)
                .where(Item.id == item_id)
                .values(
                    analysis_failures=sa.case((same, Item.analysis_failures + 1), else_=1),
                    failed_analyser=analyser,
                    last_analysis_error=error[:1000],
                )
            )
            return True

    def set_aside_items(self) -> list[dict[str, Any]]:
        """Items set aside after failing MAX_ANALYSIS_FAILURES times under one analyser (the CLI lists
        them for `autarky research retry`)."""
        query = (
            sa.select(
                Item.id.label("item_id"),
                Item.source,
                Item.source_id,
                Item.title,
                Item.analysis_failures,
                Item.failed_analyser,
                Item.last_analysis_error,
            )
            .where(Item.analysis_failures >= MAX_ANALYSIS_FAILURES, self._never_analysed())
            .order_by(Item.id)
        )
        with self._transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def retry_items(self, item_ids: list[int] | None = None) -> list[int]:
        """Forget the failures of `item_ids` (None: of every set-aside item), so the next cycle tries them
        again; the ids reset."""
        with self._transaction() as connection:
            where = (
                Item.analysis_failures >= MAX_ANALYSIS_FAILURES if item_ids is None else Item.id.in_(item_ids)
            )
            reset = connection.execute(
                sa.update(Item)
                .where(where, Item.analysis_failures > 0)
                .values(analysis_failures=0, failed_analyser=None)
                .returning(Item.id)
            ).scalars()
            return sorted(reset)

    # --- the one-cycle-at-a-time lease -----------------------------------------------------------------

    def take_lease(self, holder: str, until: datetime, name: str = RESEARCH_LEASE) -> str:
        """Take the lease `name` until `until` if it is free, expired or `holder`'s already (then it is
        extended); returns who holds it now, `holder` when taken."""
        now = utc_now()
        insert = self._insert(Lease).values(name=name, holder=holder, expires_at=until)
        with self._transaction() as connection:
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
                    where=sa.or_(Lease.expires_at < now, Lease.holder == holder),
                )
            )
            return connection.execute(sa.select(Lease.holder).where(Lease.name == name)).scalar_one()

    def release_lease(self, holder: str, name: str = RESEARCH_LEASE) -> bool:
        """Give the lease back (only its holder can); True when it was held by `holder`."""
        with self._transaction() as connection:
            deleted = connection.execute(
                sa.delete(Lease).where(Lease.name == name, Lease.holder == holder)
            ).rowcount
            return bool(deleted)
