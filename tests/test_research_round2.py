"""The research cycle, round 2 (issue 26), on the real Temporal server: provider-wide failures count against
no item (item 1), a key added later re-analyses the backlog (item 12), one cycle at a time (item 6), a
cycle is always heard (item 9), digests state the final status and are pruned (item 10), and the sample
source when no real source answers (item 13). Local arXiv, GitHub and OpenAI servers speak their wire
formats; a few activities are replaced by fakes where a test needs one to fail or hang."""

# ruff: noqa: F811 (pytest fixtures imported from tests.test_research_cycle, then requested by name)
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.research.digest import DigestActivities, render_digest
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.budget import research_finding
from autarky.research.types import (
    AnalyseInput,
    AnalyseResult,
    AnalyserKey,
    CycleInput,
    CycleOutcome,
    DigestInput,
    GatherInput,
    GatherResult,
    ResearchReport,
)
from tests.llm_servers import OpenAIServer, Reply
from tests.research_servers import ArxivServer, GitHubServer
from tests.test_research_cycle import (  # noqa: F401 (fixtures)
    Stack,
    arxiv_server,
    count,
    github_server,
    make_settings,
    make_stack,
)
from workers.registry import research_activities
from workflows.experiment import ExperimentWorkflow
from workflows.research import ResearchCycleWorkflow

LLM_KEY = AnalyserKey(label="openai:gpt-5-mini@research-1", offline=False, prompt_version="research-1")
# The listener is defined here, in a module the sandbox cannot re-import (it starts servers).
UNSANDBOXED = UnsandboxedWorkflowRunner()
UNAUTHORISED = Reply(status=401, body={"error": {"message": "Incorrect API key provided", "type": "invalid"}})


@workflow.defn(name="ResearchListener")
class Listener:
    """Stands for the autopilot: keeps the research reports it is sent."""

    def __init__(self) -> None:
        self.reports: list[ResearchReport] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="research_outcome")
    def research_outcome(self, report: ResearchReport) -> None:
        self.reports.append(report)

    @workflow.query
    def heard(self) -> list[ResearchReport]:
        return self.reports


async def _listener(client: Client, queue: str) -> Any:
    return await client.start_workflow(Listener.run, id=f"listener-{uuid.uuid4().hex[:8]}", task_queue=queue)


async def _heard(handle: Any) -> list[ResearchReport]:
    for _ in range(100):
        reports = await handle.query(Listener.heard)
        if reports:
            return reports
        await asyncio.sleep(0.1)
    return []


def _with_fakes(settings: AutarkySettings, *fakes: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The research activities, those named like a fake replaced by it."""
    names = {activity._Definition.must_from_callable(f).name for f in fakes}
    real = [
        a
        for a in research_activities(settings, {})
        if activity._Definition.must_from_callable(a).name not in names
    ]
    return real + list(fakes)


@asynccontextmanager
async def _worker_with(client: Client, settings: AutarkySettings, *fakes: Callable[..., Any]) -> Any:
    """A worker on a fresh queue for the cycle, its experiments and a stand-in autopilot, with the research
    activities named like a fake replaced by it; yields the queue."""
    queue = f"research-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ResearchCycleWorkflow, ExperimentWorkflow, Listener],
        activities=_with_fakes(settings, *fakes),
        workflow_runner=UNSANDBOXED,
    ):
        yield queue


async def _run(
    client: Client, queue: str, input: CycleInput, timeout: timedelta = timedelta(minutes=2)
) -> CycleOutcome:
    return await client.execute_workflow(
        ResearchCycleWorkflow.run,
        input,
        id=f"research-test-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        execution_timeout=timeout,
    )


# --------------------------------------------------------------------------------- item 1: failure classes


async def test_six_cycles_with_a_wrong_key_then_the_right_key_analyse_the_whole_backlog(make_stack) -> None:
    with OpenAIServer() as llm:
        stack: Stack = await make_stack({"OPENAI_API_KEY": "sk-test"}, openai_base_url=llm.base_url)
        llm.script(*[UNAUTHORISED] * 6)
        for _ in range(6):
            outcome = await stack.cycle(concurrency=1)
            # Stopped at once: one call, counted against no item, saying what to fix.
            assert outcome.status == "failed" and outcome.failed == 0 and outcome.analysed == 0, outcome
            assert "OPENAI_API_KEY" in (outcome.stopped_reason or ""), outcome.stopped_reason
            assert outcome.pending == 6
        assert len(llm.requests) == 6
        assert stack.kb.set_aside_items() == []
        # The key is right now (the server answers): the whole backlog is analysed.
        fixed = await stack.cycle(concurrency=1)
    assert fixed.status == "completed" and fixed.analysed == 6 and fixed.pending == 0, fixed


async def test_an_item_failure_is_counted_under_its_analyser(make_stack) -> None:
    with OpenAIServer() as llm:
        stack: Stack = await make_stack({"OPENAI_API_KEY": "sk-test"}, openai_base_url=llm.base_url)
        bad = Reply(
            status=400, body={"error": {"message": "This item's prompt is refused", "type": "invalid"}}
        )
        llm.script(bad)
        outcome = await stack.cycle(concurrency=1)
    assert outcome.status == "completed" and outcome.failed == 1 and outcome.analysed == 5, outcome
    import sqlalchemy as sa

    with stack.kb.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT failed_analyser, analysis_failures FROM items")).all()
    assert [r for r in rows if r[1]] == [(f"{outcome.analyser}@research-1", 1)], rows


async def test_an_item_failing_for_an_unforeseen_reason_counts_against_it_not_the_cycle(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    """A bug or a hang on one item (no LLM failure type) is the item's: counted on it (set aside after a
    few), the rest analysed. Counted as the provider's, the same item would stop every cycle first."""
    failed: list[int] = []

    @activity.defn(name="analyse_item")
    async def first_one_breaks(request: AnalyseInput) -> AnalyseResult:
        if not failed or failed == [request.item_id]:
            failed.append(request.item_id)
            raise ValueError("a bug this item's text triggers")
        return AnalyseResult(
            item_id=request.item_id, source="arxiv", source_id=str(request.item_id), analysis_id=0,
            score=0.1, provider="offline", model="test", tokens_in=0, tokens_out=0, cost=0.0,
        )  # fmt: skip

    settings = make_settings(tmp_path, arxiv_server, github_server)
    async with _worker_with(client, settings, first_one_breaks) as queue:
        outcome = await _run(client, queue, CycleInput(concurrency=1, analysis_attempts=1))
    assert outcome.status == "completed" and outcome.failed == 1 and outcome.analysed == 5, outcome


# --------------------------------------------------------------------------------- item 12: re-analysis


async def test_a_key_added_later_analyses_the_recent_backlog_again(make_stack) -> None:
    offline: Stack = await make_stack()
    first = await offline.cycle()
    assert first.analyser == "offline" and first.analysed == 6
    with OpenAIServer() as llm:
        keyed: Stack = await make_stack({"OPENAI_API_KEY": "sk-test"}, openai_base_url=llm.base_url)
        again = await keyed.cycle()
        assert again.analyser.startswith("openai:") and again.analysed == 6, again
        assert count(keyed.kb, "analyses") == 12
        assert (await keyed.cycle()).analysed == 0  # once


# --------------------------------------------------------------------------------- item 6: one at a time


async def test_two_cycles_started_together_one_analyses_and_the_other_is_skipped(make_stack) -> None:
    with OpenAIServer(latency=0.2) as llm:
        stack: Stack = await make_stack({"OPENAI_API_KEY": "sk-test"}, openai_base_url=llm.base_url)
        outcomes = await asyncio.gather(stack.cycle(), stack.cycle())
        analyses = [r for r in llm.requests if "ItemAnalysis" in str(r.body)]
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["completed", "skipped"], outcomes
    done, skipped = sorted(outcomes, key=lambda o: o.status)
    assert done.analysed == 6 and skipped.analysed == 0 and skipped.digest is None
    assert done.cycle_id in (skipped.stopped_reason or "")
    assert len(analyses) == 6  # each item paid once
    memo = await (await stack.client.get_workflow_handle(skipped.cycle_id).describe()).memo()
    assert memo["status"] == "skipped" and done.cycle_id in memo["stopped_reason"]
    # The lease was given back: the next cycle runs.
    assert (await stack.cycle()).status == "completed"


# --------------------------------------------------------------------------------- item 9: always heard


async def test_without_a_research_worker_the_cycle_fails_fast_naming_the_queue(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    queue = f"research-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[ResearchCycleWorkflow, Listener], workflow_runner=UNSANDBOXED
    ):
        autopilot = await _listener(client, queue)
        outcome = await _run(
            client,
            queue,
            CycleInput(
                activity_task_queue="nobody-serves-this",
                activity_start_timeout=timedelta(seconds=1),
                report_to=autopilot.id,
            ),
            timeout=timedelta(seconds=30),
        )
        assert outcome.status == "failed" and "nobody-serves-this" in (outcome.stopped_reason or ""), outcome
        memo = await (await client.get_workflow_handle(outcome.cycle_id).describe()).memo()
        assert memo["status"] == "failed" and "nobody-serves-this" in memo["stopped_reason"]
        [report] = await _heard(autopilot)
        assert report.status == "failed" and "nobody-serves-this" in (report.reason or "")
        await autopilot.terminate("test over")


async def test_a_cycle_whose_close_fails_is_still_heard(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    @activity.defn(name="close_research_cycle")
    async def close_fails(outcome: CycleOutcome) -> None:
        raise ApplicationError("the knowledge base refused the change", non_retryable=True)

    settings = make_settings(tmp_path, arxiv_server, github_server)
    async with _worker_with(client, settings, close_fails) as queue:
        autopilot = await _listener(client, queue)
        outcome = await _run(client, queue, CycleInput(report_to=autopilot.id))
        assert outcome.status == "failed" and outcome.analysed == 6, outcome
        assert "the outcome was not recorded" in (outcome.stopped_reason or "")
        memo = await (await client.get_workflow_handle(outcome.cycle_id).describe()).memo()
        assert memo["status"] == "failed"
        [report] = await _heard(autopilot)
        assert report.status == "failed"
        for experiment in outcome.experiments:
            await client.get_workflow_handle(experiment).terminate("test over")
        await autopilot.terminate("test over")


async def test_a_cycle_stops_short_of_its_timeout_and_reports(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    @activity.defn(name="analyse_item")
    async def hangs(request: AnalyseInput) -> AnalyseResult:
        await asyncio.sleep(600)  # cancelled when the cycle stops
        raise AssertionError("not reached")

    settings = make_settings(tmp_path, arxiv_server, github_server)
    async with _worker_with(client, settings, hangs) as queue:
        autopilot = await _listener(client, queue)
        started = time.monotonic()
        outcome = await _run(client, queue, CycleInput(report_to=autopilot.id), timeout=timedelta(seconds=20))
        assert time.monotonic() - started < 20
        assert outcome.status == "stopped_for_time" and outcome.analysed == 0, outcome
        assert "stopped short of the cycle's timeout" in (outcome.stopped_reason or "")
        assert outcome.digest and "stopped short" in Path(outcome.digest).read_text()
        memo = await (await client.get_workflow_handle(outcome.cycle_id).describe()).memo()
        assert memo["status"] == "stopped_for_time" and "stopped short" in memo["stopped_reason"]
        [report] = await _heard(autopilot)
        assert report.status == "stopped_for_time"  # a finding for the autopilot: it cannot finish
        assert research_finding(report, datetime.now(UTC)) is not None
        await autopilot.terminate("test over")


async def test_a_cancelled_cycle_gives_the_lease_back_and_is_heard(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    """A person cancels a hanging cycle (as `autarky research run` suggests when one is running): the next
    cycle is not skipped for the cancelled one's lease, and the autopilot hears how it ended."""
    release = asyncio.Event()

    @activity.defn(name="analyse_item")
    async def hangs_once(request: AnalyseInput) -> AnalyseResult:
        if not release.is_set():
            await asyncio.sleep(600)  # the cancelled cycle's analysis; never returns
        raise ApplicationError("refused", type="LlmRefused", non_retryable=True)

    settings = make_settings(tmp_path, arxiv_server, github_server)
    async with _worker_with(client, settings, hangs_once) as queue:
        autopilot = await _listener(client, queue)
        cycle = await client.start_workflow(
            ResearchCycleWorkflow.run,
            CycleInput(report_to=autopilot.id),
            id=f"research-test-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            execution_timeout=timedelta(minutes=5),
        )
        for _ in range(300):  # until it analyses (then it holds the lease)
            current = await cycle.query(ResearchCycleWorkflow.current_outcome)
            if current is not None and current.analyser != "?":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        await cycle.cancel()
        with pytest.raises(WorkflowFailureError):
            await cycle.result()
        [report] = await _heard(autopilot)
        assert report.status == "failed" and "cancelled" in (report.reason or "")
        release.set()
        after = await _run(client, queue, CycleInput(report_to=autopilot.id))
        assert after.status != "skipped", after  # the cancelled cycle gave its lease back
        await autopilot.terminate("test over")


# --------------------------------------------------------------------------------- item 10: digests


async def test_the_digest_states_the_final_status_and_an_empty_cycle_writes_none(make_stack) -> None:
    stack: Stack = await make_stack()
    first = await stack.cycle()
    text = Path(first.digest or "").read_text()
    assert "Status: **completed**" in text and "running" not in text
    for experiment in first.experiments:
        await stack.client.get_workflow_handle(experiment).terminate("test over")
    pages = sorted((stack.settings.data_dir / "research" / "digests").glob("*.md"))

    empty = await stack.cycle()
    assert empty.status == "completed" and empty.new_items == 0 and empty.analysed == 0, empty
    assert empty.digest is None
    assert sorted((stack.settings.data_dir / "research" / "digests").glob("*.md")) == pages
    memo = await (await stack.client.get_workflow_handle(empty.cycle_id).describe()).memo()
    assert memo["status"] == "completed" and memo.get("digest") is None


async def test_digests_past_their_retention_are_pruned(tmp_path: Path) -> None:
    with ArxivServer([]) as arxiv, GitHubServer([]) as github:
        settings = make_settings(tmp_path, arxiv, github)
    digests = DigestActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))
    digests.directory.mkdir(parents=True)
    old, recent = digests.directory / "research-old.md", digests.directory / "research-recent.md"
    old.write_text("old")
    recent.write_text("recent")
    a_while_ago = time.time() - settings.research.digest_retention.total_seconds() - 60
    os.utime(old, (a_while_ago, a_while_ago))
    outcome = CycleOutcome(cycle_id="research-now", status="failed", analyser="offline", stopped_reason="x")
    written = await ActivityEnvironment().run(digests.write_digest, DigestInput(outcome=outcome))
    assert written is not None and Path(written).exists()
    assert not old.exists() and recent.exists()


def test_sample_items_are_labelled_in_the_digest() -> None:
    outcome = CycleOutcome(cycle_id="research-1", status="completed", analyser="offline", analysed=1)
    row = {
        "item_id": 1,
        "kind": "paper",
        "source": "sample",
        "source_id": "sample-001",
        "title": "A synthetic paper on AI agents",
        "url": "",
        "score": 0.8,
        "rationale": "",
        "tags": [],
        "provider": "offline",
        "model": "m",
    }
    text = render_digest(outcome, [row])
    assert "**sample** A synthetic paper" in text and "synthetic examples" in text
    assert "synthetic examples" not in render_digest(outcome, [row | {"source": "arxiv"}])


# --------------------------------------------------------------------------------- item 13: sample source


@pytest.mark.parametrize("real_sources_answer", [False, True])
async def test_the_sample_source_is_gathered_when_no_real_source_answers(
    client: Client,
    tmp_path: Path,
    arxiv_server: ArxivServer,
    github_server: GitHubServer,
    real_sources_answer: bool,
) -> None:
    asked: list[str] = []

    @activity.defn(name="gather_source")
    async def gather(request: GatherInput) -> GatherResult:
        asked.append(request.source)
        if request.source != "sample" and not real_sources_answer:
            raise ApplicationError(f"{request.source} unavailable: no network", non_retryable=True)
        return GatherResult(source=request.source, fetched=0, new_items=0, updated_items=0)

    settings = make_settings(tmp_path, arxiv_server, github_server)
    queue = f"research-test-{uuid.uuid4().hex[:8]}"
    workflows = [ResearchCycleWorkflow, ExperimentWorkflow]
    async with Worker(
        client, task_queue=queue, workflows=workflows, activities=_with_fakes(settings, gather)
    ):
        outcome = await _run(client, queue, CycleInput(source_attempts=1))
    if real_sources_answer:
        assert sorted(asked) == ["arxiv", "github"] and [s.source for s in outcome.sources] == [
            "arxiv",
            "github",
        ]
    else:
        assert sorted(asked) == ["arxiv", "github", "sample"], asked
        assert [(s.source, s.status) for s in outcome.sources][-1] == ("sample", "ok")


async def test_a_paid_analyser_never_gets_the_sample_items(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    """With a paid LLM, no real source answering is a finding, not a reason to pay for synthetic items and
    ask a person to approve experiments on them."""
    asked: list[str] = []

    @activity.defn(name="gather_source")
    async def gather(request: GatherInput) -> GatherResult:
        asked.append(request.source)
        raise ApplicationError(f"{request.source} unavailable: no network", non_retryable=True)

    settings = make_settings(tmp_path, arxiv_server, github_server, openai_base_url="http://127.0.0.1:9/v1")
    real = research_activities(settings, {"OPENAI_API_KEY": "sk-test-not-real"})
    activities = [a for a in real if activity._Definition.must_from_callable(a).name != "gather_source"]
    queue = f"research-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ResearchCycleWorkflow, ExperimentWorkflow],
        activities=[*activities, gather],
    ):
        outcome = await _run(client, queue, CycleInput(source_attempts=1))
    assert outcome.analyser.startswith("openai:"), outcome
    assert sorted(asked) == ["arxiv", "github"], asked  # no sample


# --------------------------------------------------------------------------------- retry and the CLI's run


async def test_research_retry_lists_and_brings_back_set_aside_items(tmp_path: Path) -> None:
    from activities.storage.knowledge_base import KnowledgeBase
    from autarky.research.items import ItemIn
    from tests.test_cli import cli

    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'knowledge.db'}")
    kb.migrate()
    item = kb.upsert_item(ItemIn(kind="paper", source="arxiv", source_id="2612.00001", title="Hard")).item_id
    for cycle in (1, 2, 3):
        kb.record_analysis_failure(
            item, "LlmInvalidOutput: not JSON", f"research-{cycle}/{item}", "openai:m@1"
        )
    environ = {"AUTARKY_DATA_DIR": str(tmp_path)}

    code, out = await cli(None, "research", "retry", **environ)
    assert code == 0 and "Hard" in out and "openai:m@1" in out and "--all" in out, out
    code, out = await cli(None, "research", "retry", str(item), "424242", **environ)
    assert code == 1 and f"analyses again: {item}" in out and "424242" in out, out
    assert kb.unanalysed_items(10, LLM_KEY, None) == [item]
    code, out = await cli(None, "research", "retry", "--all", **environ)
    assert code == 0 and "nothing to retry" in out, out


async def test_research_run_triggers_the_schedule_so_it_never_runs_beside_it(
    client: Client, tmp_path: Path, arxiv_server: ArxivServer, github_server: GitHubServer
) -> None:
    from autarky.client import RESEARCH_SCHEDULE_ID, AutarkyClient, ResearchBusy
    from schedules import RESEARCH_SCHEDULE_ID as DECLARED
    from schedules import SCHEDULES, sync_schedules

    assert RESEARCH_SCHEDULE_ID == DECLARED
    queue = f"research-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, arxiv_server, github_server)
    settings = settings.model_copy(
        update={
            "task_queue": queue,
            "research_task_queue": queue,
            "research": settings.research.model_copy(update={"interval": timedelta(days=1)}),
        }
    )
    # Not run when created (as `autarky up` has it): here the CLI is what starts the first cycle.
    declared = [s for s in SCHEDULES if s.schedule_id == RESEARCH_SCHEDULE_ID]
    research = [replace(s, run_when_created=False) for s in declared]
    workflows = [ResearchCycleWorkflow, ExperimentWorkflow]
    async with Worker(
        client, task_queue=queue, workflows=workflows, activities=research_activities(settings, {})
    ):
        await sync_schedules(client, settings, research)
        try:
            autarky = AutarkyClient(client, settings)
            started = asyncio.create_task(autarky.run_research(wait=True))
            await asyncio.sleep(0.5)
            with pytest.raises(ResearchBusy, match="is running"):  # the schedule's own run, started above
                await autarky.run_research(wait=False)
            cycle_id, outcome = await started
            assert outcome is not None and outcome.status == "completed" and outcome.analysed == 6, outcome
            description = await client.get_schedule_handle(RESEARCH_SCHEDULE_ID).describe()
            assert cycle_id in [a.action.workflow_id for a in description.info.recent_actions]
            for experiment in outcome.experiments:
                await client.get_workflow_handle(experiment).terminate("test over")
        finally:
            await client.get_schedule_handle(RESEARCH_SCHEDULE_ID).delete()
