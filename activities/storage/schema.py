"""The knowledge base's tables (SQLAlchemy) and its engine: items, analyses, experiments, spending, source
watermarks and cycles. The model registry adds its own tables to the same `Base`
(activities/models/registry.py); the schema's versions are the Alembic migrations beside this module."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and read back timezone-aware (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value.isoformat()} has no timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_id", name="uq_items_source"),
        sa.CheckConstraint("kind IN ('paper', 'repository')", name="ck_items_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(32))
    source_id: Mapped[str] = mapped_column(sa.String(255))
    title: Mapped[str] = mapped_column(sa.Text)
    authors: Mapped[list[str]] = mapped_column(sa.JSON)
    abstract: Mapped[str] = mapped_column(sa.Text)
    url: Mapped[str] = mapped_column(sa.Text)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(sa.Integer)
    # Failed analyses (not retried attempts: analyses that gave up); at MAX_ANALYSIS_FAILURES the item is
    # set aside, so one item nobody can analyse does not head every cycle forever.
    analysis_failures: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_analysis_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    # The analyser those failures were under (AnalyserKey.label): a set-aside item comes back when it changes.
    failed_analyser: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)


class Analysis(Base):
    __tablename__ = "analyses"
    __table_args__ = (
        sa.UniqueConstraint("item_id", "provider", "model", "prompt_version", name="uq_analyses_run"),
        sa.CheckConstraint("score >= 0 AND score <= 1", name="ck_analyses_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(sa.String(64))
    model: Mapped[str] = mapped_column(sa.String(128))
    prompt_version: Mapped[str] = mapped_column(sa.String(64))
    score: Mapped[float] = mapped_column(sa.Float)
    rationale: Mapped[str] = mapped_column(sa.Text)
    tags: Mapped[list[str]] = mapped_column(sa.JSON)
    tokens_in: Mapped[int] = mapped_column(sa.Integer)
    tokens_out: Mapped[int] = mapped_column(sa.Integer)
    cost: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(sa.String(32))
    plan: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cost: Mapped[float] = mapped_column(sa.Float, server_default="0")


class Spending(Base):
    """The spending ledger: every paid LLM call (activities/storage/ledger.py), by when it was made;
    (purpose, ref) makes recording it again a no-op. A call is `reserved` at its price cap before it is
    made (`cost` = `cap`) and `settled` at its actual cost after; a reservation never settled (a worker
    that died, a timeout) stays counted at its cap."""

    __tablename__ = "spending"
    __table_args__ = (sa.UniqueConstraint("purpose", "ref", name="uq_spending_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    cost: Mapped[float] = mapped_column(sa.Float)
    purpose: Mapped[str] = mapped_column(sa.String(64))
    ref: Mapped[str] = mapped_column(sa.String(255))
    state: Mapped[str] = mapped_column(sa.String(16), server_default="settled")
    scope: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, index=True)
    attempt: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, index=True)
    model: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    cap: Mapped[float] = mapped_column(sa.Float, server_default="0")
    tokens_in: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    tokens_out: Mapped[int] = mapped_column(sa.Integer, server_default="0")


class SourceState(Base):
    """Per source: the watermark the next fetch starts from, and its last success and failure."""

    __tablename__ = "sources"

    source: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The range a capped fetch left unread: the next fetches read it, then clear it.
    backfill_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    backfill_before: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Cycle(Base):
    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    trigger: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class AnalysisFailureRecord(Base):
    """Each failed analysis counted on an item once: `ref` (cycle and item) makes a retry a no-op."""

    __tablename__ = "analysis_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("items.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(sa.String(255), unique=True)
    analyser: Mapped[str] = mapped_column(sa.String(255))
    error: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class Lease(Base):
    """A named lease (e.g. the research cycle's one-at-a-time): held by `holder` until `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(255))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL, a busy timeout and write transactions that
    begin as writers (BEGIN IMMEDIATE), so two threads or processes queue instead of failing as
    deadlocked."""
    engine_url = sa.make_url(url)
    backend = engine_url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"knowledge base URL {engine_url.render_as_string()!r}: only sqlite and postgresql")
    if backend == "postgresql":
        return sa.create_engine(engine_url, pool_pre_ping=True)
    database = engine_url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(engine_url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL: readers do not wait for the writer, and a commit is one append (NORMAL: no fsync per
        # commit; a power cut may lose the last commits, never corrupt: a retried activity redoes them).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
