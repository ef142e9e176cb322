"""The spending ledger and the budgets it enforces, on SQLite and PostgreSQL (issue 26, items 5 and 8):
every paid call is reserved at its price cap before it is made and settled after, retries, repairs and
crashes included; no budget is exceeded by more than the calls in flight; every caller shares them."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.models.llm import LlmGateway
from activities.models.providers import input_bound
from activities.models.routed import RoutedGateway
from activities.research.analysis import AnalysisActivities
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.ledger import Budgets, BudgetSpent, SpendingLedger
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.llm.types import LlmRequest, LlmResult, ModelPrice
from autarky.research.items import AnalysisIn, ItemIn
from autarky.research.types import AnalyseInput
from tests.llm_servers import OpenAIServer, Reply, openai_completion
from tests.test_knowledge_base import db_url  # noqa: F401  (the fixture: SQLite, and PostgreSQL when set)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-ledger"
PRICE = ModelPrice(input=100.0, output=200.0)  # USD per million tokens: a call costs about a tenth of a cent


class Verdict(BaseModel):
    score: float = Field(ge=0, le=1)


def request(**extra: Any) -> LlmRequest:
    return LlmRequest(**({"prompt": "Rate this paper.", "max_tokens": 200, "purpose": "triage"} | extra))


def cap_of(req: LlmRequest) -> float:
    """The price cap the gateway reserves for `req`'s first call."""
    return (input_bound(req, Verdict, None) * PRICE.input + req.max_tokens * PRICE.output) / 1e6


def billed(server: OpenAIServer) -> float:
    """What the fake provider billed: every successful reply's usage at the price."""
    return sum(i * PRICE.input + o * PRICE.output for i, o in server.billed) / 1e6


def settings_for(server: OpenAIServer, **extra: Any) -> LlmSettings:
    return LlmSettings(
        provider="openai",
        openai_base_url=server.base_url,
        openai_model=MODEL,
        prices={MODEL: PRICE},
        request_timeout=timedelta(seconds=10),
        **extra,
    )


def gateway_for(server: OpenAIServer, url: str, **extra: Any) -> LlmGateway:
    ledger = SpendingLedger(KnowledgeBaseHandle(url))
    return LlmGateway(settings_for(server, **extra), environ={"OPENAI_API_KEY": "sk-test"}, ledger=ledger)


def ledger_rows(url: str, scope: str | None = None) -> list[dict[str, Any]]:
    return SpendingLedger(KnowledgeBaseHandle(url)).rows(scope)


# ------------------------------------------------------------------------------------------- the ledger


def test_reserve_settle_and_refuse(db_url: str) -> None:  # noqa: F811
    ledger = SpendingLedger(KnowledgeBaseHandle(db_url))
    budgets = Budgets(per_day_usd=1.0, per_scope_usd=0.5)
    first = ledger.reserve_now("wf/run/1/1", "triage", "openai:m", 0.3, "cycle-1", budgets)
    second = ledger.reserve_now("wf/run/1/1", "triage", "openai:m", 0.15, "cycle-1", budgets)
    assert (first.ref, second.ref) == ("wf/run/1/1#1", "wf/run/1/1#2")  # numbered within the attempt
    with pytest.raises(BudgetSpent, match=r"the cycle's budget of \$0.50 is spent.*BUDGET_PER_CYCLE_USD"):
        ledger.reserve_now("wf/run/1/2", "triage", "openai:m", 0.1, "cycle-1", budgets)
    ledger.settle_now(first, 0.01, 100, 20)  # settled below its cap: room again
    ledger.reserve_now("wf/run/1/2", "triage", "openai:m", 0.1, "cycle-1", budgets)
    with pytest.raises(BudgetSpent, match=r"today's budget of \$1.00 is spent.*BUDGET_PER_DAY_USD"):
        ledger.reserve_now("other", "plan", "openai:m", 0.8, None, budgets)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    ledger.reserve_now("other", "plan", "openai:m", 0.8, None, budgets, now=tomorrow)  # a new UTC day

    rows = ledger.rows("cycle-1")
    assert [(r["state"], r["cost"], r["tokens_in"]) for r in rows] == [
        ("settled", 0.01, 100),
        ("reserved", 0.15, 0),
        ("reserved", 0.1, 0),
    ]
    kb = KnowledgeBase(db_url)
    assert kb.spent_since(datetime.now(UTC) - timedelta(hours=1)) == pytest.approx(0.01 + 0.15 + 0.1 + 0.8)
    kb.close()


def test_the_migration_moves_analysis_costs_into_the_ledger(db_url: str) -> None:  # noqa: F811
    old = KnowledgeBase(db_url)
    old.migrate("0008")
    item = old.upsert_item(ItemIn(kind="paper", source="arxiv", source_id="2401.1", title="T"))
    analysis = AnalysisIn(item_id=item.item_id, provider="openai", model="m", score=0.5, cost=0.25)
    old.record_analysis(analysis.model_copy(update={"tokens_in": 10, "tokens_out": 5}))
    old.close()

    kb = KnowledgeBase(db_url)
    kb.migrate("0009")
    assert kb.spent_since(datetime.now(UTC) - timedelta(hours=1)) == pytest.approx(0.25)
    [row] = SpendingLedger(KnowledgeBaseHandle(db_url)).rows()
    assert (row["purpose"], row["state"], row["model"], row["tokens_in"]) == (
        "analysis",
        "settled",
        "openai:m",
        10,
    )
    # From now on an analysis's cost is its gateway's ledger row: recording one adds nothing to the budget.
    other = kb.upsert_item(ItemIn(kind="paper", source="arxiv", source_id="2401.2", title="U"))
    kb.record_analysis(analysis.model_copy(update={"item_id": other.item_id}))
    assert kb.spent_since(datetime.now(UTC) - timedelta(hours=1)) == pytest.approx(0.25)
    kb.close()


# ------------------------------------------------------------------------------------ budgets that hold


async def test_concurrent_calls_cannot_together_pass_the_budget(db_url: str) -> None:  # noqa: F811
    # Issue 26 item 8: 4 parallel analyses spent $0.0168 against $0.01.
    cap = cap_of(request())
    with OpenAIServer(latency=0.3) as server:
        gateway = gateway_for(server, db_url, budget_per_day_usd=3.5 * cap)
        outcomes = await asyncio.gather(
            *(gateway.complete(request(), Verdict) for _ in range(10)), return_exceptions=True
        )
    answered = [o for o in outcomes if isinstance(o, LlmResult)]
    refused = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(answered) + len(refused) == 10
    assert len(answered) == len(server.requests) == 3  # three caps fit, a fourth does not
    assert {e.type for e in refused} == {"LlmBudgetSpent"} and all(e.non_retryable for e in refused)
    assert "AUTARKY_LLM__BUDGET_PER_DAY_USD" in refused[0].message
    rows = ledger_rows(db_url)
    assert [r["state"] for r in rows] == ["settled"] * 3
    assert sum(r["cost"] for r in rows) == pytest.approx(billed(server))  # the ledger = what was billed
    assert sum(r["cost"] for r in rows) <= 3.5 * cap


@activity.defn(name="llm_budget_test_paid_then_lost")
async def paid_then_lost(url_and_server: list[str]) -> float:
    """Pays for an answer (repaired once on the first attempt), then fails on the first attempt, as an
    activity whose worker lost the result would: Temporal retries, and the retry pays again."""
    url, base_url = url_and_server
    settings = LlmSettings(
        provider="openai", openai_base_url=base_url, openai_model=MODEL, prices={MODEL: PRICE}
    )
    gateway = LlmGateway(
        settings, environ={"OPENAI_API_KEY": "sk-test"}, ledger=SpendingLedger(KnowledgeBaseHandle(url))
    )
    result = await gateway.complete(request(budget_scope="cycle-r"), Verdict)
    if activity.info().attempt == 1:
        raise RuntimeError("lost after the provider answered")
    return result.cost_usd


@workflow.defn(name="LlmBudgetTestWorkflow", sandboxed=False)
class PaidThenLostWorkflow:
    @workflow.run
    async def run(self, args: list[str]) -> float:
        return await workflow.execute_activity(
            "llm_budget_test_paid_then_lost",
            args,
            result_type=float,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3),
        )


async def test_a_paid_attempt_temporal_retries_stays_counted(client: Client, db_url: str) -> None:  # noqa: F811
    # Issue 26 item 5: a call paid in an attempt Temporal then retried vanished from both budgets.
    with OpenAIServer() as server:
        server.script(Reply(200, openai_completion("not json", tokens_in=40, tokens_out=7)))  # repaired
        queue = f"llm-budget-{uuid.uuid4().hex[:8]}"
        async with Worker(
            client, task_queue=queue, workflows=[PaidThenLostWorkflow], activities=[paid_then_lost]
        ):
            last_cost = await client.execute_workflow(
                PaidThenLostWorkflow.run,
                [db_url, server.base_url],
                id=f"llm-budget-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
    rows = ledger_rows(db_url, "cycle-r")
    assert len(server.requests) == len(server.billed) == 3  # attempt 1: answer + repair; attempt 2: answer
    assert [r["ref"].rsplit("/", 1)[-1] for r in rows] == ["1#1", "1#2", "2#1"]  # attempt#call
    assert all(r["state"] == "settled" for r in rows)
    assert sum(r["cost"] for r in rows) == pytest.approx(billed(server))
    assert rows[-1]["cost"] == pytest.approx(last_cost)  # the workflow hears only the last attempt's


CRASHING_CALL = """
import asyncio, sys
from datetime import timedelta
from pydantic import BaseModel, Field
from activities.models.llm import LlmGateway
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.ledger import SpendingLedger
from autarky.llm.settings import LlmSettings
from autarky.llm.types import LlmRequest, ModelPrice

class Verdict(BaseModel):  # as the test's: the same schema, the same cap
    score: float = Field(ge=0, le=1)

url, base_url, model = sys.argv[1:4]
settings = LlmSettings(provider="openai", openai_base_url=base_url, openai_model=model,
                       prices={model: ModelPrice(input=100.0, output=200.0)},
                       request_timeout=timedelta(seconds=30))
gateway = LlmGateway(settings, environ={"OPENAI_API_KEY": "sk-test"},
                     ledger=SpendingLedger(KnowledgeBaseHandle(url)))
question = LlmRequest(prompt="Rate this paper.", max_tokens=200, purpose="triage")
asyncio.run(gateway.complete(question, Verdict))
"""


async def test_a_worker_that_dies_mid_call_leaves_its_cap_counted(db_url: str) -> None:  # noqa: F811
    cap = cap_of(request())
    with OpenAIServer(latency=2.0) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", CRASHING_CALL, db_url, server.base_url, MODEL], cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 30
            while not server.requests and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.requests, "the call never reached the provider"
        finally:
            process.kill()  # the provider has the request and will answer (and bill) into the void
            process.wait()
        deadline = time.monotonic() + 10
        while not server.billed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [row] = ledger_rows(db_url)
        assert row["state"] == "reserved" and row["cost"] == pytest.approx(cap)
        assert row["cost"] >= billed(server) > 0  # the cap covers what the provider billed

        # The next call sees it: 1.5 caps leave no room for another.
        gateway = gateway_for(server, db_url, budget_per_day_usd=1.5 * cap)
        with pytest.raises(ApplicationError) as caught:
            await gateway.complete(request(), Verdict)
        assert caught.value.type == "LlmBudgetSpent" and len(server.requests) == 1


# ---------------------------------------------------------------------------------- every caller shares


def test_every_production_gateway_has_the_ledger() -> None:
    # Issue 26 item 8: self-modification's gateway (and any new one) spent outside the day's budget.
    found = []
    for folder in ("activities", "workflows", "autarky", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                func = getattr(node, "func", None)
                if isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "LlmGateway":
                    found.append(path.name)  # LlmGateway.metered: the ledger of the knowledge base given
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "LlmGateway":
                    ledger = next((k.value for k in node.keywords if k.arg == "ledger"), None)
                    found.append(path.name)
                    assert ledger is not None, f"{path}:{node.lineno} builds an LlmGateway without ledger="
                    assert not (isinstance(ledger, ast.Constant) and ledger.value is None), (
                        f"{path}:{node.lineno}: an unmetered gateway in production code"
                    )
    assert {"analysis.py", "activities.py", "routed.py"} <= set(found)


async def test_ab_routed_calls_share_the_budgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    with OpenAIServer() as server:
        routed = RoutedGateway(
            settings_for(server, budget_per_day_usd=1.0),
            {"OPENAI_API_KEY": "sk-test"},
            KnowledgeBaseHandle(url),
            "research-analyst",
        )
        variant = await routed.route("1")
        await routed.complete(variant, "1", request(), Verdict)
        [row] = ledger_rows(url)
        assert row["state"] == "settled" and row["model"] == f"openai:{MODEL}"

        spent = LlmSettings(**(settings_for(server).model_dump() | {"budget_per_day_usd": 0.0}))
        broke = RoutedGateway(
            spent, {"OPENAI_API_KEY": "sk-test"}, KnowledgeBaseHandle(url), "research-analyst"
        )
        with pytest.raises(ApplicationError) as caught:
            await broke.complete(variant, "2", request(), Verdict)
    assert caught.value.type == "LlmBudgetSpent" and len(server.requests) == 1


async def test_an_analysis_counts_against_its_cycle_and_uses_the_cap_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'knowledge.db'}"  # the one AutarkySettings(data_dir=tmp_path) names
    handle = KnowledgeBaseHandle(url)

    def analyser(server: OpenAIServer, **budgets: float) -> AnalysisActivities:
        llm = settings_for(server, analysis_max_tokens=300, **budgets)
        settings = AutarkySettings(data_dir=tmp_path, llm=llm)  # its knowledge base: `url`
        return AnalysisActivities(settings, handle, environ={"OPENAI_API_KEY": "sk-test"})

    with OpenAIServer() as server:
        kb = handle.get()
        ids = [
            kb.upsert_item(
                ItemIn(kind="paper", source="arxiv", source_id=f"2401.{i}", title=f"Paper {i}")
            ).item_id
            for i in range(3)
        ]
        await analyser(server).analyse_item(AnalyseInput(cycle_id="cycle-a", item_id=ids[0]))
        body = server.requests[0].body
        assert body["max_completion_tokens"] == 300  # the setting, not a constant
        [row] = ledger_rows(url, "cycle-a")
        assert row["purpose"] == "research-analysis" and row["state"] == "settled"
        assert 0 < row["cost"] < row["cap"]

        # A cycle budget of a cap and a half cost: the first analysis's cost and another's cap do not fit.
        tight = analyser(server, budget_per_cycle_usd=row["cap"] + row["cost"] / 2)
        with pytest.raises(ApplicationError) as caught:
            await tight.analyse_item(AnalyseInput(cycle_id="cycle-a", item_id=ids[1]))
        assert caught.value.type == "LlmBudgetSpent" and caught.value.non_retryable
        assert "the cycle's budget" in caught.value.message and "cycle-a" in caught.value.message
        assert "AUTARKY_LLM__BUDGET_PER_CYCLE_USD" in caught.value.message
        assert len(server.requests) == 1
        # Another cycle has a budget of its own (the day's is far from spent).
        await tight.analyse_item(AnalyseInput(cycle_id="cycle-b", item_id=ids[1]))
        assert len(server.requests) == 2
        assert sum(r["cost"] for r in ledger_rows(url)) == pytest.approx(billed(server))
