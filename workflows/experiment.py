"""ExperimentWorkflow: a research item worth trying becomes a plan, and a person decides.

record the experiment → ask the LLM (or the offline analyser, which says so) for an integration plan: what
to try and how to measure it → store the plan → wait for a decision through the approval gate → an
approved experiment is recorded as ready for self-modification, and when its plan names one of our evolvable
agents (selfmod/agents.py) that agent's self-modification starts; a rejected or expired one as rejected.

Started by a research cycle for each item above its threshold, with the id `experiment-<source>-<id>`, so
an item keeps one experiment however many cycles choose it. `autarky approvals` lists the waiting ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.research.items import ExperimentRef, ExperimentUpdate
    from autarky.research.types import (
        ExperimentInput,
        ExperimentOutcome,
        ExperimentStep,
        PlanSummary,
        open_experiment,
        plan_experiment,
        update_experiment,
    )
    from autarky.selfmod.types import StartEvolutionInput, start_evolution
    from workflows.approval import ApprovalGate

STORE_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1))
# A person's decision must not be lost to a database that is down for a while: retried until stored.
DECISION_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
PLAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=5)
READY_FOR = "self-modification"
APPROVAL_RISK = 0.3  # trying it costs a sandbox run and a person's attention, nothing in production yet
STORED_STATE = {ApprovalState.APPROVED: "approved", ApprovalState.EXPIRED: "expired"}


def experiment_id(source: str, source_id: str) -> str:
    """``experiment-arxiv-2401.00001``, ``experiment-github-owner/name``: readable, one per item."""
    return f"experiment-{source}-{source_id}"


@workflow.defn(name="ExperimentWorkflow")
class ExperimentWorkflow(ApprovalGate):
    def __init__(self) -> None:
        self._init_approval_gate([])
        self._state = "proposed"
        self._plan: PlanSummary | None = None

    @workflow.run
    async def run(self, input: ExperimentInput) -> ExperimentOutcome:
        self._input = input
        workflow_id = workflow.info().workflow_id
        workflow.upsert_search_attributes([sa.KIND.value_set("experiment")])
        workflow.upsert_memo({"item_id": input.item_id, "score": input.score, "cycle": input.cycle_id})
        step = ExperimentStep(workflow_id=workflow_id, item_id=input.item_id)
        ref = await self._store(open_experiment, step)
        if ref.state in ("approved", "rejected", "expired"):  # decided before (this id reset and re-run)
            return ExperimentOutcome(workflow_id=workflow_id, item_id=input.item_id, state=ref.state)

        self._set_state("planning")
        try:
            plan = await self._plan_with(step)
        except ActivityError as error:  # the LLM stayed unavailable: the offline template, saying why
            try:
                plan = await self._plan_with(
                    step.model_copy(update={"offline_because": f"it failed: {_why(error)}"})
                )
            except ActivityError as again:
                reason = _why(again)
                await self._store(
                    update_experiment,
                    ExperimentUpdate(workflow_id=workflow_id, state="failed", outcome={"error": reason}),
                    DECISION_RETRY,
                )
                self._set_state("failed")
                return ExperimentOutcome(
                    workflow_id=workflow_id, item_id=input.item_id, state="failed", reason=reason
                )
        self._plan = plan
        workflow.upsert_memo({"plan_by": "offline" if plan.offline else f"{plan.provider}:{plan.model}"})

        await self._store(
            update_experiment, ExperimentUpdate(workflow_id=workflow_id, state="awaiting_approval")
        )
        self._set_state("awaiting approval")
        by = "the offline analyser (no LLM asked)" if plan.offline else f"{plan.provider}:{plan.model}"
        approval_id = f"try-item-{input.item_id}"  # `autarky approve try-item-12 --reason …`
        self.request_approval(
            approval_id,
            subject=f"try item {input.item_id} (score {input.score:.2f}): {plan.what}",
            why=f"plan by {by}; measure: {plan.metric}",
            timeout=input.approval_timeout,
            risk=APPROVAL_RISK,
        )
        decision = await self.wait_for_decision(approval_id)
        approved = decision.state == ApprovalState.APPROVED
        state = STORED_STATE.get(decision.state, "rejected")
        outcome = {
            "decision": decision.state.value,
            "decided_by": decision.decided_by,
            "reason": decision.decision_reason,
        } | ({"ready_for": READY_FOR} if approved else {})
        if approved and plan.agent:
            outcome |= await self._evolve(plan.agent, decision.decided_by or "a person")
        await self._store(
            update_experiment,
            ExperimentUpdate(workflow_id=workflow_id, state=state, outcome=outcome),
            DECISION_RETRY,
        )
        self._set_state(f"ready for {READY_FOR}" if approved else state)
        return ExperimentOutcome(
            workflow_id=workflow_id,
            item_id=input.item_id,
            state=state,
            decided_by=decision.decided_by,
            reason=decision.decision_reason,
        )

    async def _evolve(self, agent: str, approver: str) -> dict[str, str]:
        """Start the named agent's self-modification (its own gates apply); what happened, for the record."""
        try:
            started = await workflow.execute_activity(
                start_evolution,
                StartEvolutionInput(
                    agent=agent,
                    requested_by=workflow.info().workflow_id,
                    reason=f"experiment on item {self._input.item_id}, approved by {approver}",
                    # Only the activity's input changes: a replay schedules the same command.
                    brief=self._plan.brief if self._plan else "",
                ),
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=STORE_RETRY,
                summary=f"start the self-modification of {agent}",
            )
        except ActivityError as error:
            return {"agent": agent, "evolution_not_started": _why(error)}
        if started.workflow_id is None:
            return {"agent": agent, "evolution_not_started": started.refused or "refused"}
        return {"agent": agent, "evolution": started.workflow_id}

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    @workflow.query(name="plan")
    def plan(self) -> PlanSummary | None:
        return self._plan

    def on_approvals_changed(self) -> None:
        pending = self.pending()
        if pending:
            workflow.set_current_details(f"**waiting for a decision**: {pending[0].subject}")

    async def _plan_with(self, step: ExperimentStep) -> PlanSummary:
        return await workflow.execute_activity(
            plan_experiment,
            step,
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=PLAN_RETRY,
            summary=f"plan an experiment for item {step.item_id}"
            + (" (offline template)" if step.offline_because else ""),
        )

    async def _store(
        self, fn: Callable[..., Awaitable[ExperimentRef]], arg: object, retry: RetryPolicy = STORE_RETRY
    ) -> ExperimentRef:
        return await workflow.execute_activity(
            fn,
            arg,
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=retry,
            summary=f"{fn.__name__.replace('_', ' ')} {self._input.item_id}",
        )

    def _set_state(self, state: str) -> None:
        self._state = state
        workflow.upsert_memo({"state": state})
        workflow.set_current_details(
            f"**{state}** · item {self._input.item_id} · score {self._input.score:.2f}"
        )


def _why(error: ActivityError) -> str:
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
