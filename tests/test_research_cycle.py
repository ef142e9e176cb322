"""The research cycle end to end on the real Temporal server: local arXiv and GitHub servers speaking their
wire formats, the knowledge base on SQLite, the offline analyser or an LLM server speaking OpenAI's format.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.storage.knowledge_base import KnowledgeBase
from autarky.core import search_attributes as sa
from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.llm.types import ModelPrice
from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings
from autarky.research.types import AnalyseInput, CycleInput, CycleOutcome, ExperimentOutcome
from tests.llm_servers import OpenAIServer, Reply, openai_completion
from tests.research_servers import ArxivServer, GitHubServer, Paper, Repo
from workers.registry import research_activities
from workflows.experiment import ExperimentWorkflow
from workflows.research import ResearchCycleWorkflow

NOW = datetime.now(UTC).replace(microsecond=0)

ON_TOPIC = [
    (
        "Speculative decoding with a KV cache for faster LLM inference serving",
        "We speed up LLM inference: speculative decoding and paged KV cache management raise serving "
        "throughput 2.1x and cut latency on vLLM, with quantization of the draft model.",
    ),
    (
        "Tool-using AI agents that plan multi-step tasks",
        "Autonomous AI agents with tool use and planning: a multi-agent framework where LLM agents "
        "decompose tasks, call tools and reflect, improving agent success rates on benchmarks.",
    ),
]
OFF_TOPIC = [
    ("Bird migration timing in Northern Europe", "We ringed 4,000 swallows and tracked their routes."),
    ("Medieval trade routes of the Hanseatic League", "An archival study of salt and herring prices."),
]


# Experiments are named by their item's arXiv id, and the Temporal server outlives each test: each test's
# papers get their own ids.
PREFIX = {"value": 0}


def paper(index: int, title: str, abstract: str, version: int = 1, hours_ago: float = 1) -> Paper:
    return Paper(
        arxiv_id=f"{PREFIX['value']}.{index:05d}v{version}",
        title=title,
        summary=abstract,
        authors=["Ada Lovelace", f"Author {index}"],
        published=NOW - timedelta(hours=hours_ago),
    )


def on_topic_papers() -> list[Paper]:
    """Two on-topic and two off-topic papers, with ids of their own (a new PREFIX)."""
    PREFIX["value"] = uuid.uuid4().int % 9000 + 1000
    return [paper(i, t, a, hours_ago=i) for i, (t, a) in enumerate(ON_TOPIC + OFF_TOPIC, start=1)]


def github_repos() -> list[Repo]:
    return [
        Repo(
            f"alice/agent-planner-{PREFIX['value']}",
            "AI agents with tool use, planning and multi-agent orchestration for autonomous systems",
            500,
            NOW - timedelta(hours=2),
            NOW - timedelta(days=30),
            topics=["llm", "ai-agents"],
        ),
        Repo(
            "bob/css-grid",
            "A CSS grid framework for websites",
            900,
            NOW - timedelta(hours=3),
            NOW,
            topics=["llm"],
        ),
    ]


@pytest.fixture
def arxiv_server() -> Iterator[ArxivServer]:
    with ArxivServer(on_topic_papers()) as server:
        yield server


@pytest.fixture
def github_server() -> Iterator[GitHubServer]:
    with GitHubServer(github_repos(), limit=100) as server:
        yield server


@dataclass
class Stack:
    client: Client
    settings: AutarkySettings
    queue: str
    arxiv: ArxivServer
    github: GitHubServer

    @property
    def kb(self) -> KnowledgeBase:
        kb = KnowledgeBase(self.settings.knowledge_db_url)
        kb.migrate()  # a no-op once a cycle has run
        return kb

    async def cycle(self, **fields: object) -> CycleOutcome:
        return await self.client.execute_workflow(
            ResearchCycleWorkflow.run,
            CycleInput(trigger="test", source_retry_interval=timedelta(milliseconds=100), **fields),
            id=f"research-test-{uuid.uuid4().hex[:8]}",
            task_queue=self.queue,
            execution_timeout=timedelta(minutes=2),
        )


def make_settings(tmp_path: Path, arxiv: ArxivServer, github: GitHubServer, **llm: object) -> AutarkySettings:
    return AutarkySettings(
        data_dir=tmp_path,
        research=ResearchSettings(
            arxiv_base_url=arxiv.api_url,
            github_base_url=github.url,
            arxiv_delay_seconds=0.01,
            github_topics=["ai-agents", "llm"],
            user_agent="Autarky tests (mailto:test@example.org)",
        ),
        llm=LlmSettings(**llm),
    )


@pytest.fixture
async def make_stack(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> AsyncIterator:
    workers: list[Worker] = []

    async def start(environ: Mapping[str, str] | None = None, **llm: object) -> Stack:
        settings = make_settings(tmp_path, arxiv_server, github_server, **llm)
        queue = f"research-test-{uuid.uuid4().hex[:8]}"
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[ResearchCycleWorkflow, ExperimentWorkflow],
            activities=research_activities(settings, environ or {}),
        )
        await worker.__aenter__()
        workers.append(worker)
        return Stack(client, settings, queue, arxiv_server, github_server)

    yield start
    for worker in workers:
        await worker.__aexit__(None, None, None)


def count(kb: KnowledgeBase, table: str) -> int:
    import sqlalchemy

    with kb.engine.connect() as connection:
        return connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one()


async def test_offline_cycle_end_to_end_then_a_second_cycle_stores_nothing_new(make_stack) -> None:
    stack: Stack = await make_stack()
    first = await stack.cycle()

    assert first.status == "completed" and first.analyser == "offline", first
    assert [(s.source, s.status) for s in first.sources] == [("arxiv", "ok"), ("github", "ok")]
    assert first.new_items == 6 and first.analysed == 6 and first.failed == 0 and first.pending == 0
    assert first.cost_usd == 0
    kb = stack.kb
    assert count(kb, "items") == 6 and count(kb, "analyses") == 6
    high = {i.title for i in kb.items_above(0.7)}
    assert {t for t, _ in ON_TOPIC} <= high, high
    assert not {t for t, _ in OFF_TOPIC} & high
    assert "bob/css-grid" not in high
    # Every item above 0.7 got one experiment, waiting for a person.
    assert len(first.experiments) == len(high)
    assert first.top_score is not None and first.top_score > 0.7

    digest = Path(first.digest or "")
    text = digest.read_text()
    assert digest.parent == stack.settings.data_dir / "research" / "digests"
    assert "offline" in text and ON_TOPIC[0][0] in text and "Bird migration" in text
    assert text.index(ON_TOPIC[0][0]) < text.index("Bird migration")  # best first

    # The UI: memo and search attributes of the cycle.
    description = await stack.client.get_workflow_handle(first.cycle_id).describe()
    memo = await description.memo()
    assert memo["status"] == "completed" and memo["analyser"] == "offline" and memo["analysed"] == 6
    assert description.typed_search_attributes.get(sa.RESEARCH_ITEMS) == 6
    assert description.typed_search_attributes.get(sa.KIND) == "research"

    second = await stack.cycle()
    assert second.status == "completed" and second.new_items == 0 and second.analysed == 0, second
    assert second.experiments == []  # the first cycle's experiments are not proposed again
    assert count(kb, "items") == 6 and count(kb, "analyses") == 6 and count(kb, "experiments") == len(high)
    assert stack.kb.last_cycle() == second


async def test_an_approved_experiment_is_ready_for_self_modification(make_stack) -> None:
    stack: Stack = await make_stack()
    cycle = await stack.cycle()
    assert cycle.experiments, cycle
    handle = stack.client.get_workflow_handle(cycle.experiments[0], result_type=ExperimentOutcome)

    async def pending() -> list[ApprovalRequest]:
        return await handle.query("pending_approvals", result_type=list[ApprovalRequest])

    for _ in range(100):  # the plan is made, then the approval asked
        if await pending():
            break
        await _pause()
    [approval] = await pending()
    assert "offline" in approval.why and approval.subject.startswith("try item")
    plan = stack.kb.experiment(handle.id)
    assert plan is not None and plan["state"] == "awaiting_approval" and plan["plan"]["provider"] == "offline"

    await handle.execute_update(
        "approve", ApprovalDecision(approval_id=approval.approval_id, approver="ada", reason="worth a try")
    )
    result = await handle.result()
    assert result.state == "approved" and result.decided_by == "ada"
    stored = stack.kb.experiment(handle.id)
    assert stored is not None and stored["state"] == "approved"
    assert stored["outcome"]["ready_for"] == "self-modification"
    # The other experiments still wait; the cycle did not wait for them.
    for other in cycle.experiments[1:]:
        description = await stack.client.get_workflow_handle(other).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        await stack.client.get_workflow_handle(other).terminate("test over")


async def test_a_v2_paper_updates_its_item(make_stack) -> None:
    stack: Stack = await make_stack()
    await stack.cycle()
    title, _ = ON_TOPIC[0]
    # A new version keeps its first submission date; arXiv's `updated` says when it was revised.
    v2 = paper(1, title + " (revised)", "Revised abstract on LLM inference.", version=2, hours_ago=1)
    v2.updated = datetime.now(UTC)
    stack.arxiv.papers.append(v2)

    again = await stack.cycle()
    assert [s.fetched for s in again.sources if s.source == "arxiv"] == [1]
    assert again.new_items == 0
    assert count(stack.kb, "items") == 6
    [item] = [i for i in stack.kb.items_above(0) if i.source_id == f"{PREFIX['value']}.00001"]
    stored = stack.kb.item(item.item_id)
    assert stored is not None and stored["version"] == 2 and stored["title"].endswith("(revised)")


async def test_a_source_answering_503_does_not_stop_the_cycle(make_stack) -> None:
    stack: Stack = await make_stack()
    stack.arxiv.mode = "unavailable"
    outcome = await stack.cycle(source_attempts=2)

    assert outcome.status == "completed"
    arxiv, github = outcome.sources
    assert arxiv.status == "unavailable" and "503" in (arxiv.error or ""), arxiv
    assert github.status == "ok" and github.new_items == 2
    assert outcome.analysed == 2
    text = Path(outcome.digest or "").read_text()
    assert "arxiv: **unavailable**" in text and "503" in text
    # Recovered, the next cycle fetches what it missed.
    stack.arxiv.mode = "ok"
    later = await stack.cycle()
    assert later.sources[0].status == "ok" and later.sources[0].new_items == 4


async def test_a_spent_budget_stops_the_cycle_and_the_next_cycle_goes_on(make_stack) -> None:
    with OpenAIServer() as llm:
        price = {"gpt-test": ModelPrice(input=1000.0, output=1000.0)}  # a call may cost dollars
        stack: Stack = await make_stack(
            {"OPENAI_API_KEY": "sk-test"},
            openai_base_url=llm.base_url,
            openai_model="gpt-test",
            prices=price,
            budget_per_cycle_usd=0.01,
            budget_per_day_usd=100.0,
        )
        # No autopilot runs here: telling it fails, and the cycle still ends well.
        outcome = await stack.cycle(concurrency=1, report_to="no-such-autopilot")
        assert outcome.analyser == "openai:gpt-test"
        # The gateway refuses a call that could take the cycle past its budget: the provider's failure,
        # so the cycle stops at once, says which setting to raise, and counts nothing against the items.
        assert outcome.status == "stopped_for_budget", outcome
        assert "AUTARKY_LLM__BUDGET_PER_CYCLE_USD" in (outcome.stopped_reason or "")
        assert outcome.analysed == 0 and outcome.failed == 0 and outcome.pending == 6
        assert [r for r in llm.requests if "ItemAnalysis" in str(r.body)] == []
        text = Path(outcome.digest or "").read_text()
        assert "stopped for budget" in text and "openai:gpt-test" in text

        # A budget that allows it: the items left over are analysed.
        richer: Stack = await make_stack(
            {"OPENAI_API_KEY": "sk-test"},
            openai_base_url=llm.base_url,
            openai_model="gpt-test",
            prices=price,
            budget_per_cycle_usd=100.0,
            budget_per_day_usd=100.0,
        )
        after = await richer.cycle(concurrency=1)
        assert after.status == "completed" and after.analysed == 6 and after.pending == 0, after


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.1)


async def test_an_item_the_llm_answers_badly_fails_alone_and_its_cost_counts(make_stack) -> None:
    with OpenAIServer() as llm:
        stack: Stack = await make_stack(
            {"OPENAI_API_KEY": "sk-test"},
            openai_base_url=llm.base_url,
            openai_model="gpt-test",
            prices={"gpt-test": ModelPrice(input=10.0, output=10.0)},
        )
        bad = Reply(body=openai_completion("this is not JSON", tokens_in=1000, tokens_out=1000))
        llm.script(bad, bad)  # the first item's answer, and its one repair
        outcome = await stack.cycle(concurrency=1)

    assert outcome.status == "completed" and outcome.failed == 1 and outcome.analysed == 5, outcome
    assert outcome.pending == 1  # the next cycle tries it again
    # The two paid calls of the failed item count: 2 × 2000 tokens at $10 per million.
    assert outcome.cost_usd >= 0.04


async def test_a_provider_that_rejects_every_call_stops_analysis_at_once(make_stack) -> None:
    with OpenAIServer() as llm:
        stack: Stack = await make_stack({"OPENAI_API_KEY": "sk-test"}, openai_base_url=llm.base_url)
        unauthorised = Reply(status=401, body={"error": {"message": "Incorrect API key", "type": "invalid"}})
        llm.script(*[unauthorised] * 10)
        outcome = await stack.cycle(concurrency=1)
        assert len(llm.requests) == 1  # the provider's failure, not the item's: no use asking again

    assert outcome.status == "failed" and outcome.failed == 0 and outcome.analysed == 0, outcome
    assert (outcome.stopped_reason or "").startswith("analysis stopped: ")
    assert "OPENAI_API_KEY" in (outcome.stopped_reason or "")  # the gateway's advice, not a traceback
    assert outcome.pending == 6  # nothing counted against the items (tests/test_research_round2.py)


async def test_an_item_that_keeps_failing_is_set_aside_after_three_cycles(make_stack) -> None:
    from activities.research.offline_analyser import offline_model_label
    from activities.storage.handle import KnowledgeBaseHandle

    stack: Stack = await make_stack()
    label = await offline_model_label(stack.settings, KnowledgeBaseHandle(stack.settings.knowledge_db_url))
    for cycle in ("research-1", "research-2", "research-3"):
        stack.kb.upsert_item(
            ItemIn(kind="paper", source="arxiv", source_id=f"{PREFIX['value']}.99999", title="Bad")
        )
        [bad] = [i for i in stack.kb.unanalysed_items(10) if stack.kb.item(i)["title"] == "Bad"]
        stack.kb.record_analysis_failure(bad, "LlmRefused: no", f"{cycle}/{bad}", f"offline:{label}")
    outcome = await stack.cycle()
    assert outcome.analysed == 6 and outcome.failed == 0 and outcome.pending == 0, outcome


async def test_a_retried_analysis_does_not_ask_the_llm_again(tmp_path: Path) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities.research.analysis import AnalysisActivities
    from activities.storage.handle import KnowledgeBaseHandle

    with OpenAIServer() as llm, ArxivServer([]) as arxiv, GitHubServer([]) as github:
        settings = make_settings(
            tmp_path,
            arxiv,
            github,
            openai_base_url=llm.base_url,
            openai_model="gpt-test",
            prices={"gpt-test": ModelPrice(input=1.0, output=1.0)},
        )
        kb = KnowledgeBaseHandle(settings.knowledge_db_url)
        item = kb.get().upsert_item(ItemIn(kind="paper", source="arxiv", source_id="2611.00042", title="T"))
        analysis = AnalysisActivities(settings, kb, {"OPENAI_API_KEY": "sk-test"})
        request = AnalyseInput(cycle_id="research-1", item_id=item.item_id)

        first = await ActivityEnvironment().run(analysis.analyse_item, request)
        again = await ActivityEnvironment().run(analysis.analyse_item, request)  # its result was lost
    assert len(llm.requests) == 1
    assert again == first and first.cost > 0  # the stored cost: the workflow had not counted it yet


async def test_analyses_are_routed_by_the_slot_split_and_their_outcomes_recorded(make_stack) -> None:
    from activities.models.registry import ModelRegistry
    from autarky.models.types import Variant

    with OpenAIServer() as llm:
        price = ModelPrice(input=0.1, output=0.1)
        stack: Stack = await make_stack(
            {"OPENAI_API_KEY": "sk-test"},
            openai_base_url=llm.base_url,
            openai_model="gpt-a",
            prices={"gpt-a": price, "gpt-b": price},
        )
        registry = ModelRegistry(stack.kb)
        first = Variant(name="openai-gpt-a", provider="openai", model="gpt-a")
        registry.register_slot("research-analyst", [first], first.name)
        registry.add_variant(
            "research-analyst", Variant(name="openai-gpt-b", provider="openai", model="gpt-b")
        )
        registry.set_split("research-analyst", {"openai-gpt-a": 0.5, "openai-gpt-b": 0.5}, key="test-split")
        outcome = await stack.cycle()
        asked = [r.body["model"] for r in llm.requests if "ItemAnalysis" in str(r.body)]

    assert outcome.analysed == 6
    counts = registry.outcome_counts("research-analyst", NOW - timedelta(days=1))
    assert counts["openai-gpt-a"] + counts["openai-gpt-b"] == 6 and min(counts.values()) >= 1, counts
    assert sorted(asked) == sorted(["gpt-a"] * counts["openai-gpt-a"] + ["gpt-b"] * counts["openai-gpt-b"])
