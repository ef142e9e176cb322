"""The spending ledger: every paid LLM call, recorded by the activity that makes it before it can be lost.

Before the HTTP call the gateway reserves a row at the call's price cap (an upper bound of its input
tokens and its whole completion cap, at the model's price); the reservation is refused when it would take
a budget past its limit: today's (UTC) for every call, and the scope's (e.g. a research cycle's) for a call
that carries one. After the call the row is settled at what the provider reported; a row never settled (a
worker that died after the provider answered, a timeout that may have been billed) stays counted at its
cap. So no budget is exceeded by more than the calls in flight, whatever fails.

Check and reserve are one transaction that no other reservation can interleave with: SQLite begins every
write transaction as the writer (BEGIN IMMEDIATE, activities/storage/schema.py); PostgreSQL takes a
transaction-scoped advisory lock first. Rows are keyed per attempt: (workflow, run, activity, attempt) from
`activity.info()`, and the call's number within the attempt (a repair is the second call). A retry is a new
attempt, so a paid-then-lost attempt stays counted beside its retry. SQLAlchemy loads on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

import structlog
from temporalio import activity

if TYPE_CHECKING:
    from activities.storage.handle import KnowledgeBaseHandle

log = structlog.get_logger(__name__)

# pg_advisory_xact_lock's key for the ledger: any constant no other lock of ours uses ("autarky$" as bytes).
LEDGER_LOCK = 0x6175746172_6B7924
RESERVED, SETTLED = "reserved", "settled"
MAX_KEY = 200  # characters of an attempt key (the ref column holds 255)
_EPSILON = 1e-12  # float sums: a call that exactly fills a budget is allowed

DAY_SETTING = "AUTARKY_LLM__BUDGET_PER_DAY_USD"
SCOPE_SETTING = "AUTARKY_LLM__BUDGET_PER_CYCLE_USD"


class BudgetSpent(Exception):
    """The reservation would take a budget past its limit; the message names the budget and its setting."""


@dataclass(frozen=True)
class Budgets:
    per_day_usd: float
    per_scope_usd: float  # for calls with a scope (a research cycle)


@dataclass(frozen=True)
class Reservation:
    purpose: str
    ref: str
    cap: float


def attempt_key() -> str:
    """This activity attempt's key (workflow id, run id, activity id, attempt); outside an activity a
    fresh uuid, so nothing else shares its rows."""
    try:
        info = activity.info()
    except RuntimeError:
        return f"local/{uuid.uuid4().hex}"
    key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}/{info.attempt}"
    if len(key) > MAX_KEY:  # very long workflow ids: keep a readable head and make it unique by a digest
        key = f"{key[: MAX_KEY - 33]}~{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    return key


def utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)


class SpendingLedger:
    """The ledger in the knowledge base behind `kb` (opened and migrated on first use)."""

    def __init__(self, kb: KnowledgeBaseHandle) -> None:
        self.kb = kb

    async def reserve(
        self,
        attempt: str,
        purpose: str,
        model: str,
        cap: float,
        scope: str | None,
        budgets: Budgets,
    ) -> Reservation:
        """Reserve `cap` USD for the next call of `attempt`, or raise BudgetSpent."""
        return await asyncio.to_thread(self.reserve_now, attempt, purpose, model, cap, scope, budgets)

    async def settle(self, reservation: Reservation, cost: float, tokens_in: int, tokens_out: int) -> None:
        """Record what the call cost. A failure to record is logged, not raised: the call is paid for, and
        failing the activity would make Temporal pay for it again; the row stays at its cap."""
        try:
            await asyncio.to_thread(self.settle_now, reservation, cost, tokens_in, tokens_out)
        except Exception as error:
            log.warning("llm spending not settled; counted at its cap", ref=reservation.ref, error=str(error))

    # ------------------------------------------------------------------------------------------- in threads

    def reserve_now(
        self,
        attempt: str,
        purpose: str,
        model: str,
        cap: float,
        scope: str | None,
        budgets: Budgets,
        now: datetime | None = None,
    ) -> Reservation:
        import sqlalchemy as sa

        from activities.storage.schema import Spending

        if cap < 0:
            raise ValueError(f"a price cap must not be negative, got {cap!r}")
        kb = self.kb.get()
        now = now or datetime.now(UTC)
        midnight = utc_midnight(now)
        total = sa.func.coalesce(sa.func.sum(Spending.cost), 0.0)
        with kb.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(LEDGER_LOCK)))
            today = float(connection.execute(sa.select(total).where(Spending.at >= midnight)).scalar_one())
            if today + cap > budgets.per_day_usd + _EPSILON:
                raise BudgetSpent(
                    f"today's budget of ${budgets.per_day_usd:.2f} is spent: ${today:.4f} spent or reserved "
                    f"today (UTC) and this call ({purpose}, {model}) may cost up to ${cap:.4f}; raise "
                    f"{DAY_SETTING} or wait for the next UTC day"
                )
            if scope is not None:
                in_scope = sa.select(total).where(Spending.scope == scope)
                spent = float(connection.execute(in_scope).scalar_one())
                if spent + cap > budgets.per_scope_usd + _EPSILON:
                    raise BudgetSpent(
                        f"the cycle's budget of ${budgets.per_scope_usd:.2f} is spent: ${spent:.4f} spent or "
                        f"reserved by {scope} and this call ({purpose}, {model}) may cost up to ${cap:.4f}; "
                        f"raise {SCOPE_SETTING}"
                    )
            # The call's number within its attempt: under the lock, so concurrent calls get distinct ones.
            calls = connection.execute(
                sa.select(sa.func.count(Spending.id)).where(Spending.attempt == attempt)
            ).scalar_one()
            ref = f"{attempt}#{calls + 1}"
            values: dict[str, Any] = {
                "at": now,
                "cost": cap,
                "cap": cap,
                "purpose": purpose[:64],
                "ref": ref,
                "state": RESERVED,
                "scope": scope,
                "attempt": attempt,
                "model": model[:200],
            }
            connection.execute(sa.insert(Spending).values(**values))
        return Reservation(purpose=values["purpose"], ref=ref, cap=cap)

    def settle_now(self, reservation: Reservation, cost: float, tokens_in: int, tokens_out: int) -> None:
        import sqlalchemy as sa

        from activities.storage.schema import Spending

        if cost < 0:
            raise ValueError(f"a cost must not be negative, got {cost!r}")
        if cost > reservation.cap + _EPSILON:  # the bound was wrong: the ledger keeps what was billed
            log.warning("llm call cost over its cap", ref=reservation.ref, cost=cost, cap=reservation.cap)
        with self.kb.get().engine.begin() as connection:
            connection.execute(
                sa.update(Spending)
                .where(Spending.purpose == reservation.purpose, Spending.ref == reservation.ref)
                .values(cost=cost, tokens_in=tokens_in, tokens_out=tokens_out, state=SETTLED)
            )

    def rows(self, scope: str | None = None) -> list[dict[str, Any]]:
        """The ledger's rows (of one scope), oldest first: for reports and tests."""
        import sqlalchemy as sa

        from activities.storage.schema import Spending

        query = sa.select(Spending.__table__).order_by(Spending.id)
        if scope is not None:
            query = query.where(Spending.scope == scope)
        with self.kb.get().engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
