"""The research knowledge base: items, their analyses and experiments, in SQLite or PostgreSQL.

Every write is idempotent (insert-on-conflict on the natural keys), because a research cycle may be re-run
and any activity retried: neither may duplicate a row. Each call is one transaction, so bad input is
refused with a ValueError before, or instead of, changing anything. The schema is versioned with Alembic
(`migrate`), so an existing database upgrades in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from activities.storage.research_queue import ResearchQueue
from activities.storage.schema import (
    Analysis,
    Base,
    Cycle,
    Experiment,
    Item,
    SourceState,
    Spending,
    make_engine,
    utc_now,
)
from autarky.research.items import (
    AnalysisIn,
    AnalysisRef,
    ExperimentRef,
    ExperimentUpdate,
    ItemIn,
    ItemRef,
    ScoredItem,
    normalise_source_id,
)
from autarky.research.types import CycleOutcome

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The advisory lock `migrate` holds on PostgreSQL: a fixed key, the same for every Autarky process.
MIGRATION_LOCK = int.from_bytes(b"autarkyM", "big")
_CHUNK = 500  # ids per IN (…) query: well below SQLite's bound-parameter limit


def head_revision() -> str:
    """The newest schema revision the migrations know (what `migrate()` brings a database to)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


class KnowledgeBase(ResearchQueue):
    """Items, analyses and experiments at one database URL. Thread-safe: each call is its own transaction.
    What waits for analysis, failures and the cycle's lease: ResearchQueue (research_queue.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._dialect = self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # --- schema ----------------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic; a database already there is left as it is.
        Processes migrating at once (workers and CLI commands on a first start) take turns: the later
        ones find the schema at `revision`."""
        # Alembic's progress lines ("will assume transactional DDL", plugins) are noise on every CLI call.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            if self._dialect == "postgresql":
                # Held until this transaction (the whole upgrade) commits or rolls back, on Alembic's own
                # connection; without it concurrent first starts both create the tables and all but one
                # fail on a duplicate key. (SQLite's transactions begin IMMEDIATE: writers already queue.)
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def revision(self) -> str | None:
        """The schema revision the database is at (None: not migrated yet)."""
        from alembic.migration import MigrationContext

        logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise in a CLI's output
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    # --- items -----------------------------------------------------------------------------------------

    def upsert_item(self, item: ItemIn) -> ItemRef:
        """Store `item`, or refresh the stored one with the same source and id: `last_seen` always; title,
        authors, abstract, url and version when the item is not older than the stored version. A row stored
        under one of the item's `former_source_ids` is rekeyed to its id (one item, not two)."""
        item = ItemIn.model_validate(item.model_dump())  # re-checks a model_construct()-ed item
        now = utc_now()
        values = item.model_dump(exclude={"former_source_ids"}) | {"first_seen": now, "last_seen": now}
        with self._transaction() as connection:
            if item.former_source_ids:
                self._adopt(connection, item)
            inserted = connection.execute(
                self._insert(Item)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["source", "source_id"])
                .returning(Item.id)
            ).scalar_one_or_none()
            if inserted is not None:
                return ItemRef(item_id=inserted, created=True)
            newer = Item.version <= item.version

            def if_newer(column: Any, value: Any) -> Any:
                return sa.case((newer, sa.literal(value, column.type)), else_=column)

            updated = connection.execute(
                sa.update(Item)
                .where(Item.source == item.source, Item.source_id == item.source_id)
                .values(
                    last_seen=now,
                    title=if_newer(Item.title, item.title),
                    authors=if_newer(Item.authors, item.authors),
                    abstract=if_newer(Item.abstract, item.abstract),
                    url=if_newer(Item.url, item.url),
                    version=sa.case((newer, item.version), else_=Item.version),
                )
                .returning(Item.id)
            ).scalar_one()
            return ItemRef(item_id=updated, created=False)

    @staticmethod
    def _adopt(connection: Connection, item: ItemIn) -> None:
        """Rekey the row stored under one of `item`'s former ids to its id, unless a row has that id."""
        same_source = Item.source == item.source
        taken = sa.select(Item.id).where(same_source, Item.source_id == item.source_id)
        if connection.execute(taken).first() is not None:
            return
        former = connection.execute(
            sa.select(Item.id)
            .where(same_source, Item.source_id.in_(item.former_source_ids))
            .order_by(Item.id)
            .limit(1)
        ).scalar_one_or_none()
        if former is not None:
            connection.execute(sa.update(Item).where(Item.id == former).values(source_id=item.source_id))

    def known_source_ids(self, source: str, ids: Iterable[str]) -> set[str]:
        """Those of `ids` (as given) already stored: for arXiv, at the version the id names or later, so a
        new version of a known paper counts as new; an id without a version is known at any version."""
        wanted: dict[str, list[tuple[str, int | None]]] = {}
        for raw in ids:
            base, version = normalise_source_id(source, raw)
            wanted.setdefault(base, []).append((raw, version))
        known: set[str] = set()
        bases = list(wanted)
        with self._transaction() as connection:
            for start in range(0, len(bases), _CHUNK):
                rows = connection.execute(
                    sa.select(Item.source_id, Item.version).where(
                        Item.source == source, Item.source_id.in_(bases[start : start + _CHUNK])
                    )
                )
                for base, stored in rows:
                    known.update(raw for raw, version in wanted[base] if version is None or version <= stored)
        return known

    # --- analyses --------------------------------------------------------------------------------------

    def record_analysis(self, analysis: AnalysisIn) -> AnalysisRef:
        """Store an analysis once: the same item, provider, model and prompt version again is a no-op."""
        score = analysis.score
        if not isinstance(score, int | float) or not 0 <= score <= 1:
            raise ValueError(f"analysis score must be between 0 and 1, got {score!r}")
        analysis = AnalysisIn.model_validate(analysis.model_dump())
        with self._transaction() as connection:
            self._require_item(connection, analysis.item_id)
            values = analysis.model_dump() | {"created_at": utc_now()}
            inserted = connection.execute(
                self._insert(Analysis)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["item_id", "provider", "model", "prompt_version"])
                .returning(Analysis.id)
            ).scalar_one_or_none()
            if inserted is not None:
                return AnalysisRef(analysis_id=inserted, created=True)
            existing = connection.execute(
                sa.select(Analysis.id).where(
                    Analysis.item_id == analysis.item_id,
                    Analysis.provider == analysis.provider,
                    Analysis.model == analysis.model,
                    Analysis.prompt_version == analysis.prompt_version,
                )
            ).scalar_one()
            return AnalysisRef(analysis_id=existing, created=False)

    def items_above(self, min_score: float, since: datetime | None = None) -> list[ScoredItem]:
        """Items whose best analysis (since `since`, if given) scores at least `min_score`, best first."""
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be between 0 and 1, got {min_score!r}")
        best = sa.func.max(Analysis.score).label("score")
        query = (
            sa.select(Item.id, Item.kind, Item.source, Item.source_id, Item.title, best)
            .join(Analysis, Analysis.item_id == Item.id)
            .group_by(Item.id, Item.kind, Item.source, Item.source_id, Item.title)
            .having(best >= min_score)
            .order_by(best.desc(), Item.id)
        )
        if since is not None:
            query = query.where(Analysis.created_at >= since)
        with self._transaction() as connection:
            return [
                ScoredItem(item_id=i, kind=k, source=s, source_id=sid, title=t, score=sc)
                for i, k, s, sid, t, sc in connection.execute(query)
            ]

    # --- experiments -----------------------------------------------------------------------------------

    def create_or_get_experiment(self, workflow_id: str, item_id: int) -> ExperimentRef:
        """The experiment of `workflow_id`, created ('proposed') the first time."""
        if not workflow_id:
            raise ValueError("experiment workflow_id must not be empty")
        now = utc_now()
        with self._transaction() as connection:
            self._require_item(connection, item_id)
            connection.execute(
                self._insert(Experiment)
                .values(
                    workflow_id=workflow_id,
                    item_id=item_id,
                    state="proposed",
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["workflow_id"])
            )
            ref = self._experiment(connection, workflow_id)
            if ref.item_id != item_id:
                raise ValueError(
                    f"experiment {workflow_id!r} is about item {ref.item_id}, not item {item_id}"
                )
            return ref

    def update_experiment(self, update: ExperimentUpdate) -> ExperimentRef:
        """Set the state, plan and/or outcome of an existing experiment (setting the same again is fine)."""
        update = ExperimentUpdate.model_validate(update.model_dump())
        values: dict[str, Any] = {
            k: v for k, v in update.model_dump(exclude={"workflow_id"}).items() if v is not None
        }
        with self._transaction() as connection:
            changed = connection.execute(
                sa.update(Experiment)
                .where(Experiment.workflow_id == update.workflow_id)
                .values(**values, updated_at=utc_now())
            ).rowcount
            if not changed:
                raise ValueError(f"no experiment for workflow {update.workflow_id!r}")
            return self._experiment(connection, update.workflow_id)

    def experiment(self, workflow_id: str) -> dict[str, Any] | None:
        """An experiment in full (plan and outcome included), for the activities that need them."""
        with self._transaction() as connection:
            row = connection.execute(
                sa.select(Experiment.__table__).where(Experiment.workflow_id == workflow_id)
            ).first()
            return dict(row._mapping) if row is not None else None

    def item(self, item_id: int) -> dict[str, Any] | None:
        """An item in full (abstract included), for the activities that analyse it."""
        with self._transaction() as connection:
            row = connection.execute(sa.select(Item.__table__).where(Item.id == item_id)).first()
            return dict(row._mapping) if row is not None else None

    def experiments(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest experiments with their item's title and best score, newest first."""
        best = (
            sa.select(sa.func.max(Analysis.score))
            .where(Analysis.item_id == Experiment.item_id)
            .scalar_subquery()
            .label("score")
        )
        query = (
            sa.select(
                Experiment.workflow_id,
                Experiment.item_id,
                Experiment.state,
                Experiment.cost,
                Experiment.updated_at,
                Item.title,
                Item.url,
                best,
            )
            .join(Item, Item.id == Experiment.item_id)
            .order_by(Experiment.updated_at.desc(), Experiment.id.desc())
            .limit(limit)
        )
        with self._transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def analysed_items(self, item_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Items with their latest analysis (title, url, score, rationale, tags, provider, model), as the
        digest shows them; items without an analysis are left out."""
        ids = list(item_ids)
        latest = self._latest_analysis()
        rows: list[dict[str, Any]] = []
        with self._transaction() as connection:
            for start in range(0, len(ids), _CHUNK):
                query = (
                    sa.select(
                        Item.id.label("item_id"),
                        Item.kind,
                        Item.source,
                        Item.source_id,
                        Item.title,
                        Item.url,
                        Analysis.score,
                        Analysis.rationale,
                        Analysis.tags,
                        Analysis.provider,
                        Analysis.model,
                    )
                    .join(latest, latest.c.item_id == Item.id)
                    .join(Analysis, Analysis.id == latest.c.analysis_id)
                    .where(Item.id.in_(ids[start : start + _CHUNK]))
                )
                rows.extend(dict(row._mapping) for row in connection.execute(query))
        return rows

    # --- sources and cycles ----------------------------------------------------------------------------

    def watermark(self, source: str) -> datetime | None:
        with self._transaction() as connection:
            return connection.execute(
                sa.select(SourceState.watermark).where(SourceState.source == source)
            ).scalar_one_or_none()

    def backfill(self, source: str) -> tuple[datetime, datetime] | None:
        """The range a capped fetch left unread (record_source_ok's `backfill`), or None."""
        with self._transaction() as connection:
            row = connection.execute(
                sa.select(SourceState.backfill_after, SourceState.backfill_before).where(
                    SourceState.source == source
                )
            ).one_or_none()
        return None if row is None or row[0] is None or row[1] is None else (row[0], row[1])

    def record_source_ok(
        self, source: str, newest: datetime | None, backfill: tuple[datetime, datetime] | None = None
    ) -> None:
        """A fetch succeeded: the watermark moves to `newest` (never back), the success time is kept, and
        the range it left unread replaces the stored one (None: all covered), in the same statement."""
        now = utc_now()
        after, before = backfill or (None, None)
        insert = self._insert(SourceState).values(
            source=source,
            watermark=newest,
            last_ok_at=now,
            backfill_after=after,
            backfill_before=before,
        )
        keep_newer = sa.case(
            (
                sa.or_(SourceState.watermark.is_(None), SourceState.watermark < insert.excluded.watermark),
                insert.excluded.watermark,
            ),
            else_=SourceState.watermark,
        )
        with self._transaction() as connection:
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["source"],
                    set_={
                        "watermark": keep_newer,
                        "last_ok_at": now,
                        "backfill_after": after,
                        "backfill_before": before,
                    },
                )
            )

    def record_source_error(self, source: str, error: str) -> None:
        now = utc_now()
        insert = self._insert(SourceState).values(source=source, last_error=error, last_error_at=now)
        with self._transaction() as connection:
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["source"], set_={"last_error": error, "last_error_at": now}
                )
            )

    def record_spending(self, purpose: str, ref: str, cost: float) -> bool:
        """Record an LLM cost that is not an analysis (e.g. an experiment's plan) once."""
        with self._transaction() as connection:
            return self._spend(connection, purpose, ref, cost)

    def _spend(self, connection: Connection, purpose: str, ref: str, cost: float) -> bool:
        if cost < 0:
            raise ValueError(f"a cost must not be negative, got {cost!r}")
        inserted = connection.execute(
            self._insert(Spending)
            .values(at=utc_now(), cost=cost, purpose=purpose, ref=ref)
            .on_conflict_do_nothing(index_elements=["purpose", "ref"])
            .returning(Spending.id)
        ).scalar_one_or_none()
        return inserted is not None

    def find_analysis(
        self, item_id: int, provider: str, model: str, prompt_version: str
    ) -> dict[str, Any] | None:
        """The analysis of this item by this provider, model and prompt version, if one was stored."""
        with self._transaction() as connection:
            row = connection.execute(
                sa.select(Analysis.__table__).where(
                    Analysis.item_id == item_id,
                    Analysis.provider == provider,
                    Analysis.model == model,
                    Analysis.prompt_version == prompt_version,
                )
            ).first()
            return dict(row._mapping) if row is not None else None

    def experiment_candidates(self, min_score: float, limit: int) -> list[ScoredItem]:
        """Items whose latest analysis scores above `min_score` and that have no experiment yet, best first.

        The latest, not the best: an item analysed again (a key added, a scorer that learned from people's
        decisions) is judged by what the analyser thinks now, not by an older, higher score."""
        has_experiment = sa.select(Experiment.id).where(Experiment.item_id == Item.id).exists()
        latest = self._latest_analysis()
        query = (
            sa.select(Item.id, Item.kind, Item.source, Item.source_id, Item.title, Analysis.score)
            .join(latest, latest.c.item_id == Item.id)
            .join(Analysis, Analysis.id == latest.c.analysis_id)
            .where(~has_experiment, Analysis.score > min_score)
            .order_by(Analysis.score.desc(), Item.id)
            .limit(limit)
        )
        with self._transaction() as connection:
            return [
                ScoredItem(item_id=i, kind=k, source=s, source_id=sid, title=t, score=sc)
                for i, k, s, sid, t, sc in connection.execute(query)
            ]

    def spent_since(self, moment: datetime) -> float:
        """What LLM calls cost since `moment` (USD), from the spending ledger alone: every paid call is a
        row there (activities/storage/ledger.py; a reservation not settled counts at its cap)."""
        with self._transaction() as connection:
            spent = connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(Spending.cost), 0.0)).where(Spending.at >= moment)
            ).scalar_one()
        return float(spent)

    def open_cycle(self, workflow_id: str, trigger: str, started_at: datetime) -> None:
        """Record a cycle as running (again: a no-op)."""
        with self._transaction() as connection:
            connection.execute(
                self._insert(Cycle)
                .values(workflow_id=workflow_id, trigger=trigger, status="running", started_at=started_at)
                .on_conflict_do_nothing(index_elements=["workflow_id"])
            )

    def close_cycle(self, outcome: CycleOutcome) -> None:
        with self._transaction() as connection:
            changed = connection.execute(
                sa.update(Cycle)
                .where(Cycle.workflow_id == outcome.cycle_id)
                .values(
                    status=outcome.status,
                    finished_at=outcome.finished_at or utc_now(),
                    outcome=outcome.model_dump(mode="json"),
                )
            ).rowcount
            if not changed:
                raise ValueError(f"no research cycle {outcome.cycle_id!r} was opened")

    def last_cycle(self) -> CycleOutcome | None:
        """The latest finished cycle's outcome."""
        with self._transaction() as connection:
            stored = connection.execute(
                sa.select(Cycle.outcome)
                .where(Cycle.outcome.is_not(None))
                .order_by(Cycle.started_at.desc(), Cycle.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        return CycleOutcome.model_validate(stored) if stored else None

    # --- helpers ---------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError as error:  # a constraint the checks above did not foresee
            raise ValueError(f"knowledge base refused the change: {error.orig}") from error

    def _insert(self, model: type[Base]) -> Any:
        module = sqlite if self._dialect == "sqlite" else postgresql
        return module.insert(model)

    @staticmethod
    def _latest_analysis() -> Any:
        """(item_id, analysis_id) of each item's latest analysis: what the analyser thinks now."""
        return (
            sa.select(Analysis.item_id, sa.func.max(Analysis.id).label("analysis_id"))
            .group_by(Analysis.item_id)
            .subquery()
        )

    @staticmethod
    def _require_item(connection: Connection, item_id: int) -> None:
        if connection.execute(sa.select(Item.id).where(Item.id == item_id)).first() is None:
            raise ValueError(f"unknown item id {item_id}")

    @staticmethod
    def _experiment(connection: Connection, workflow_id: str) -> ExperimentRef:
        row = connection.execute(
            sa.select(Experiment.id, Experiment.item_id, Experiment.state).where(
                Experiment.workflow_id == workflow_id
            )
        ).one()
        return ExperimentRef(
            experiment_id=row.id, workflow_id=workflow_id, item_id=row.item_id, state=row.state
        )
