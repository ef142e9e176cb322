"""An approved research experiment that names one of our agents starts that agent's self-modification.

The first tests record the experiment's knowledge-base activities and the start (their real versions are
tested in tests/test_research_cycle.py and tests/test_cli_agents.py); the last runs everything for real,
up to the evolution's first request to the LLM (issue 30, item 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.selfmod.patches import SYSTEM as PATCH_SYSTEM
from activities.storage.knowledge_base import KnowledgeBase
from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.research.items import ExperimentRef, ExperimentUpdate, ItemIn
from autarky.research.types import ExperimentInput, ExperimentOutcome, ExperimentStep, PlanSummary
from autarky.selfmod.agents import RELEVANCE_SCORER, agent_for
from autarky.selfmod.experiments import MIN_SCORE
from autarky.selfmod.types import StartedEvolution, StartEvolutionInput
from tests.llm_servers import OpenAIServer, Reply, openai_completion
from workers.registry import research_activities, selfmod_host_queue
from workflows.experiment import ExperimentWorkflow, experiment_id
from workflows.self_modify import SelfModificationWorkflow


class Recorder:
    def __init__(self, agent: str | None, refuse: str | None = None, brief: str = "") -> None:
        self.agent, self.refuse, self.brief = agent, refuse, brief
        self.updates: list[ExperimentUpdate] = []
        self.started: list[StartEvolutionInput] = []

    def activities(self) -> list:
        @activity.defn(name="open_experiment")
        async def open_experiment(step: ExperimentStep) -> ExperimentRef:
            return ExperimentRef(
                experiment_id=1, workflow_id=step.workflow_id, item_id=step.item_id, state="proposed"
            )

        @activity.defn(name="plan_experiment")
        async def plan_experiment(step: ExperimentStep) -> PlanSummary:
            return PlanSummary(
                provider="offline",
                model="offline-bm25-v1",
                offline=True,
                what="try it",
                metric="NAB",
                agent=self.agent,
                brief=self.brief,
            )

        @activity.defn(name="update_experiment")
        async def update_experiment(update: ExperimentUpdate) -> ExperimentRef:
            self.updates.append(update)
            return ExperimentRef(experiment_id=1, workflow_id=update.workflow_id, item_id=7, state="planned")

        @activity.defn(name="start_evolution")
        async def start_evolution(request: StartEvolutionInput) -> StartedEvolution:
            self.started.append(request)
            if self.refuse:
                return StartedEvolution(refused=self.refuse)
            return StartedEvolution(workflow_id=f"evolve/{request.agent}/1")

        return [open_experiment, plan_experiment, update_experiment, start_evolution]


async def approve_and_finish(client: Client, recorder: Recorder) -> ExperimentOutcome:
    queue = f"experiment-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[ExperimentWorkflow], activities=recorder.activities()
    ):
        handle = await client.start_workflow(
            ExperimentWorkflow.run,
            ExperimentInput(item_id=7, score=0.9, cycle_id="research-test", activity_task_queue=queue),
            id=f"experiment-test-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(1200):  # up to a minute: a busy machine may take its time
            pending = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
            if pending:
                break
            await asyncio.sleep(0.05)
        await handle.execute_update(
            "approve", ApprovalDecision(approval_id=pending[0].approval_id, approver="ada", reason="go")
        )
        return await handle.result()


async def test_an_approved_experiment_naming_an_agent_starts_its_evolution(client: Client) -> None:
    recorder = Recorder("anomaly-detector", brief="Source: Robust online scoring\nPlan:\nWhat to try: it")
    outcome = await approve_and_finish(client, recorder)
    assert outcome.state == "approved"
    [started] = recorder.started
    assert started.agent == "anomaly-detector" and started.requested_by.startswith("experiment-test-")
    assert started.brief == recorder.brief  # the plan and its source, for the evolution's LLM
    assert "approved by ada" in started.reason
    final = recorder.updates[-1]
    assert final.state == "approved" and final.outcome is not None
    assert final.outcome["evolution"] == "evolve/anomaly-detector/1"
    assert final.outcome["ready_for"] == "self-modification"


async def test_a_refused_start_is_recorded_and_one_naming_no_agent_starts_nothing(client: Client) -> None:
    busy = Recorder("relevance-scorer", refuse="evolve/relevance-scorer/3 is evolving it already")
    await approve_and_finish(client, busy)
    assert busy.updates[-1].outcome is not None
    assert "is evolving it already" in busy.updates[-1].outcome["evolution_not_started"]

    none = Recorder(None)
    await approve_and_finish(client, none)
    assert none.started == []
    assert none.updates[-1].outcome is not None and "evolution" not in none.updates[-1].outcome


def test_items_are_matched_to_the_agent_they_are_about() -> None:
    assert agent_for("Streaming anomaly detection on cloud metrics") == "anomaly-detector"
    assert agent_for("Change-point detection with Bayesian online updates") == "anomaly-detector"
    assert agent_for("Learned sparse retrieval beats BM25") == "relevance-scorer"
    assert agent_for("Speculative decoding for faster LLM inference") is None


ITEM = ItemIn(
    kind="paper",
    source="arxiv",
    source_id="2612.04242",
    title="Personalised filtering of new preprints from feedback",
    abstract="A reader approves or rejects suggested articles; we learn which abstracts match their stated "
    "interests and reorder the queue accordingly.",
    url="https://arxiv.org/abs/2612.04242",
)
PLAN = {
    "what_to_try": "Weigh interest terms by what people approved and rejected, then reorder the queue.",
    "steps": ["Fit term weights on past approvals", "Score the labelled examples", "Compare accuracy"],
    "metric": "accuracy on the labelled examples",
    "baseline": "the shipped scorer on the same examples",
    "success_criterion": "accuracy up 2 points on the decision part",
    "risks": [],
    "agent": None,  # the LLM names none: the plan's match with the agents' purposes does
}


def patch_prompt(server: OpenAIServer) -> str | None:
    """The prompt of the first patch request the LLM server received, if one came."""
    for request in list(server.requests):
        messages = request.body.get("messages", [])
        if messages and messages[0]["content"].startswith(PATCH_SYSTEM[:40]):
            return messages[-1]["content"]
    return None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_an_approved_experiment_starts_an_evolution_whose_llm_reads_the_plan_and_source(
    client: Client, tmp_path: Path
) -> None:
    """Issue 30's done-when: the real experiment, plan, start and self-modification workflows and their
    activities, the LLM a local server speaking OpenAI's wire format."""
    with OpenAIServer() as server:
        server.script(Reply(body=openai_completion(json.dumps(PLAN))))  # then schema examples: no patch
        suffix = uuid.uuid4().hex[:8]
        settings = AutarkySettings(
            data_dir=tmp_path,
            task_queue=f"main-{suffix}",
            research_task_queue=f"research-{suffix}",
            llm=LlmSettings(
                provider="openai", openai_base_url=server.base_url, request_timeout=timedelta(seconds=10)
            ),
        )
        kb = KnowledgeBase(settings.knowledge_db_url)
        kb.migrate()
        item = kb.upsert_item(ITEM)
        acts = research_activities(settings, {"OPENAI_API_KEY": "sk-test-not-real"})
        workers = [
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[ExperimentWorkflow, SelfModificationWorkflow],
                activities=[],
            ),
            Worker(client, task_queue=settings.research_task_queue, activities=acts),
            Worker(client, task_queue=selfmod_host_queue(settings), activities=acts),
        ]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            experiment = experiment_id(ITEM.source, f"{ITEM.source_id}-{suffix}")
            handle = await client.start_workflow(
                ExperimentWorkflow.run,
                ExperimentInput(
                    item_id=item.item_id,
                    score=0.9,
                    cycle_id="research-test",
                    activity_task_queue=settings.research_task_queue,
                ),
                id=experiment,
                task_queue=settings.task_queue,
            )
            pending: list[ApprovalRequest] = []
            for _ in range(1200):  # up to a minute: a busy machine may take its time
                pending = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
                if pending:
                    break
                await asyncio.sleep(0.05)
            stored = kb.experiment(experiment)
            assert stored is not None and stored["plan"]["agent"] == RELEVANCE_SCORER.name, stored
            assert stored["plan"]["agent_match"]["score"] >= MIN_SCORE
            await handle.execute_update(
                "approve", ApprovalDecision(approval_id=pending[0].approval_id, approver="ada", reason="go")
            )
            outcome: ExperimentOutcome = await handle.result()
            assert outcome.state == "approved"
            final = kb.experiment(experiment)
            assert final is not None and final["outcome"]["agent"] == RELEVANCE_SCORER.name, final
            evolution = client.get_workflow_handle(final["outcome"]["evolution"])
            try:
                prompt = None
                for _ in range(2400):  # its baseline is measured in the sandbox first
                    prompt = patch_prompt(server)
                    if prompt is not None:
                        break
                    await asyncio.sleep(0.05)
                assert prompt is not None, "the evolution never asked the LLM for a patch"
            finally:
                await evolution.terminate("test over: its first patch request is what is tested")

    described = await evolution.describe()
    assert described.id.startswith(f"evolve/{RELEVANCE_SCORER.name}/")
    assert f"Research experiment {experiment}" in prompt
    assert f"Source: {ITEM.title}" in prompt and f"Link: {ITEM.url}" in prompt
    assert f"Abstract: {ITEM.abstract}" in prompt
    assert f"What to try: {PLAN['what_to_try']}" in prompt
    assert "Step 1: Fit term weights on past approvals" in prompt
    assert f"Success criterion: {PLAN['success_criterion']}" in prompt
