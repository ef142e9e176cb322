"""An approved research experiment that names one of our agents starts that agent's self-modification.

The experiment's knowledge-base activities and the start are recorders here: their real versions are
tested in tests/test_research_cycle.py and tests/test_cli_agents.py (which starts real evolutions).
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.research.items import ExperimentRef, ExperimentUpdate
from autarky.research.types import ExperimentInput, ExperimentOutcome, ExperimentStep, PlanSummary
from autarky.selfmod.agents import agent_for
from autarky.selfmod.types import StartedEvolution, StartEvolutionInput
from workflows.experiment import ExperimentWorkflow


class Recorder:
    def __init__(self, agent: str | None, refuse: str | None = None) -> None:
        self.agent, self.refuse = agent, refuse
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
    recorder = Recorder("anomaly-detector")
    outcome = await approve_and_finish(client, recorder)
    assert outcome.state == "approved"
    [started] = recorder.started
    assert started.agent == "anomaly-detector" and started.requested_by.startswith("experiment-test-")
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
