"""ResearchCycleWorkflow: what is new on arXiv and GitHub, judged and remembered.

open the cycle (analyser, budgets, watermarks) → gather both sources in parallel (each stores what it
found; a source that stays down is recorded and skipped) → analyse the items not analysed yet, a few at
a time, until done or the budget is spent → an experiment for each item above the threshold → a Markdown
digest → close the cycle. Started hourly by its Schedule (`schedules/`) or by `autarky research run`.

Items travel as ids; documents stay in the knowledge base. The memo holds the cycle's summary, the search
attributes its item count and top score, so the UI can filter on them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from autarky import search_attributes as sa
    from autarky.policy.research_budget import ResearchBudget
    from autarky.research_cycle_types import (
        SOURCES,
        AnalyseInput,
        AnalyseResult,
        CycleInput,
        CycleOutcome,
        CyclePlan,
        DigestInput,
        ExperimentInput,
        GatherInput,
        GatherResult,
        ItemScore,
        OpenCycleInput,
        PendingInput,
        ResearchReport,
        SourceName,
        SourceOutcome,
    )
    from autarky.research_types import OFFLINE_MODEL
    from workflows.experiment import ExperimentWorkflow, experiment_id

STORE_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1))
# Failures of the analyser that no other item would escape: stop analysing instead of failing every item.
STOP_ANALYSIS_TYPES = frozenset({"LlmRejected", "LlmNotConfigured", "KnowledgeBaseRefused"})
MAX_ERROR_CHARS = 300


def _cause(error: ActivityError) -> str:
    """The message of the failure behind an activity error (what a person needs), bounded."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause) or type(cause).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _spent_by_failure(error: ActivityError) -> float:
    """What a failed analysis still cost (the gateway puts its usage in the failure's details): refused
    and invalid answers are paid for too."""
    cause = error.cause
    if not isinstance(cause, ApplicationError) or not cause.details:
        return 0.0
    usage = cause.details[0]
    cost = usage.get("cost_usd") if isinstance(usage, dict) else None
    return float(cost) if isinstance(cost, int | float) and cost > 0 else 0.0


def _cause_type(error: ActivityError) -> str | None:
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None


@workflow.defn(name="ResearchCycleWorkflow")
class ResearchCycleWorkflow:
    def __init__(self) -> None:
        self._outcome: CycleOutcome | None = None

    @workflow.run
    async def run(self, input: CycleInput) -> CycleOutcome:
        info = workflow.info()
        self._input = input
        outcome = self._outcome = CycleOutcome(
            cycle_id=info.workflow_id, status="running", analyser="?", started_at=workflow.now()
        )
        workflow.upsert_search_attributes([sa.KIND.value_set("research")])
        self._details("opening the cycle")
        plan = await self._activity(
            "open_research_cycle",
            OpenCycleInput(cycle_id=info.workflow_id, trigger=input.trigger, started_at=workflow.now()),
            CyclePlan,
            "read budgets and watermarks",
        )
        outcome.analyser = plan.analyser
        concurrency = input.concurrency or plan.concurrency
        max_items = plan.max_items if input.max_items is None else input.max_items
        threshold = (
            plan.experiment_threshold if input.experiment_threshold is None else input.experiment_threshold
        )

        self._details("gathering arXiv and GitHub")
        outcome.sources = list(await asyncio.gather(*(self._gather(s, plan) for s in SOURCES)))
        outcome.new_items = sum(s.new_items for s in outcome.sources)

        item_ids = await self._activity(
            "unanalysed_items", PendingInput(limit=max_items), list[int], "items not analysed yet"
        )
        budget = ResearchBudget(
            per_cycle_usd=plan.budget_per_cycle_usd,
            per_day_usd=plan.budget_per_day_usd,
            spent_today_before_usd=plan.spent_today_usd,
            paid=plan.analyser != OFFLINE_MODEL,
        )
        scores = await self._analyse(item_ids, concurrency, budget)
        outcome.top_score = max((s.score for s in scores), default=None)
        outcome.pending = await self._activity(
            "count_unanalysed_items", None, int, "items left for the next cycle"
        )
        await self._start_experiments(
            [s for s in scores if s.score > threshold], plan.approval_timeout, input.approval_timeout
        )
        if outcome.status == "running":
            outcome.status = "completed"
        self._details("writing the digest")
        outcome.digest = await self._digest(scores)
        outcome.finished_at = workflow.now()
        await self._activity("close_research_cycle", outcome, None, "record the outcome")
        self._publish()
        await self._report(input.report_to)
        return outcome

    @workflow.query(name="outcome")
    def current_outcome(self) -> CycleOutcome | None:
        return self._outcome

    # ------------------------------------------------------------------------------------------ stages

    async def _gather(self, source: SourceName, plan: CyclePlan) -> SourceOutcome:
        """One source; when it stays unavailable the cycle goes on without it and says why."""
        try:
            found = await workflow.execute_activity(
                "gather_source",
                GatherInput(
                    cycle_id=workflow.info().workflow_id, source=source, since=plan.watermarks.get(source)
                ),
                result_type=GatherResult,
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=self._input.source_retry_interval,
                    maximum_attempts=self._input.source_attempts,
                ),
                summary=f"fetch {source} since {plan.watermarks.get(source)}",
            )
        except ActivityError as error:
            reason = _cause(error).removesuffix("; retrying")  # it was retried: this is the last word
            workflow.logger.warning("research source %s unavailable: %s", source, reason)
            return SourceOutcome(source=source, status="unavailable", error=reason)
        return SourceOutcome(
            source=source,
            status="ok",
            fetched=found.fetched,
            new_items=found.new_items,
            updated_items=found.updated_items,
        )

    async def _analyse(
        self, item_ids: list[int], concurrency: int, budget: ResearchBudget
    ) -> list[ItemScore]:
        """Analyse with at most `concurrency` activities at once; stop starting new ones when the budget is
        spent or the analyser refuses every item alike (bad key, unknown model)."""
        outcome = self._outcome
        assert outcome is not None
        queue = deque(item_ids)
        scores: list[ItemScore] = []

        async def lane() -> None:
            while queue and outcome.stopped_reason is None:
                reason = budget.exhausted()
                if reason is not None:
                    outcome.status, outcome.stopped_reason = "stopped_for_budget", reason
                    return
                item_id = queue.popleft()
                try:
                    result = await workflow.execute_activity(
                        "analyse_item",
                        AnalyseInput(cycle_id=outcome.cycle_id, item_id=item_id),
                        result_type=AnalyseResult,
                        task_queue=self._input.activity_task_queue,
                        start_to_close_timeout=timedelta(minutes=3),
                        retry_policy=RetryPolicy(
                            initial_interval=self._input.analysis_retry_interval,
                            maximum_interval=timedelta(minutes=2),
                            maximum_attempts=self._input.analysis_attempts,
                        ),
                        summary=f"analyse item {item_id}",
                    )
                except ActivityError as error:
                    outcome.failed += 1
                    budget.spend(_spent_by_failure(error))
                    outcome.cost_usd = budget.spent_usd
                    if _cause_type(error) in STOP_ANALYSIS_TYPES:
                        outcome.status, outcome.stopped_reason = (
                            "failed",
                            f"analysis stopped: {_cause(error)}",
                        )
                    else:
                        workflow.logger.warning("analysis of item %s failed: %s", item_id, _cause(error))
                    continue
                budget.spend(result.cost)
                outcome.analysed += 1
                outcome.cost_usd = budget.spent_usd
                scores.append(
                    ItemScore(
                        item_id=result.item_id,
                        score=result.score,
                        source=result.source,
                        source_id=result.source_id,
                    )
                )
                self._details(f"analysed {outcome.analysed} of {len(item_ids)}")

        await asyncio.gather(*(lane() for _ in range(min(concurrency, max(len(item_ids), 1)))))
        return scores

    async def _start_experiments(
        self, chosen: list[ItemScore], plan_timeout: timedelta, override: timedelta | None
    ) -> None:
        """An ExperimentWorkflow per chosen item, left running after the cycle ends (it waits for a person).
        Its id is the item's (source and id), so an item chosen twice keeps its one experiment."""
        outcome = self._outcome
        assert outcome is not None
        for score in sorted(chosen, key=lambda s: (-s.score, s.item_id)):
            workflow_id = experiment_id(score.source, score.source_id)
            try:
                await workflow.start_child_workflow(
                    ExperimentWorkflow.run,
                    ExperimentInput(
                        item_id=score.item_id,
                        score=score.score,
                        cycle_id=outcome.cycle_id,
                        approval_timeout=override or plan_timeout,
                        activity_task_queue=self._input.activity_task_queue,
                    ),
                    id=workflow_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"experiment for item {score.item_id} (score {score.score:.2f})",
                )
            except WorkflowAlreadyStartedError:
                continue  # proposed by an earlier cycle
            outcome.experiments.append(workflow_id)

    async def _digest(self, scores: list[ItemScore]) -> str | None:
        outcome = self._outcome
        assert outcome is not None
        try:
            return await workflow.execute_activity(
                "write_research_digest",
                DigestInput(outcome=outcome, scores=scores),
                result_type=str,
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary="write the digest",
            )
        except ActivityError as error:  # the analyses are stored; a missing page is not worth failing for
            workflow.logger.warning("research digest not written: %s", _cause(error))
            return None

    async def _report(self, autopilot_id: str | None) -> None:
        """Tell the autopilot how the cycle ended; a stack without a running autopilot just goes on."""
        outcome = self._outcome
        if autopilot_id is None or outcome is None:
            return
        report = ResearchReport(
            cycle_id=outcome.cycle_id,
            status=outcome.status,
            reason=outcome.stopped_reason,
            unavailable_sources=[s.source for s in outcome.unavailable_sources],
        )
        try:
            await workflow.get_external_workflow_handle(autopilot_id).signal("research_outcome", report)
        except Exception as error:  # e.g. no such workflow: the outcome is stored and in the memo anyway
            workflow.logger.info("could not tell the autopilot %s: %s", autopilot_id, error)

    # ------------------------------------------------------------------------------------------ helpers

    async def _activity(self, name: str, arg: object, result_type: type | None, summary: str) -> object:
        args = [] if arg is None else [arg]
        return await workflow.execute_activity(
            name,
            args=args,
            result_type=result_type,
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=STORE_RETRY,
            summary=summary,
        )

    def _details(self, step: str) -> None:
        outcome = self._outcome
        assert outcome is not None
        workflow.set_current_details(
            f"**{step}** · analyser {outcome.analyser} · {outcome.analysed} analysed, "
            f"{outcome.failed} failed · ${outcome.cost_usd:.4f}"
        )

    def _publish(self) -> None:
        """The summary in the memo and the search attributes (UI columns and filters)."""
        outcome = self._outcome
        assert outcome is not None
        workflow.upsert_memo(
            {
                "status": outcome.status,
                "analyser": outcome.analyser,
                "new_items": outcome.new_items,
                "analysed": outcome.analysed,
                "top_score": outcome.top_score,
                "cost_usd": round(outcome.cost_usd, 6),
                "unavailable_sources": {s.source: s.error for s in outcome.unavailable_sources},
                "stopped_reason": outcome.stopped_reason,
                "experiments": outcome.experiments,
                "digest": outcome.digest,
            }
        )
        workflow.upsert_search_attributes(
            [
                sa.RESEARCH_ITEMS.value_set(outcome.analysed),
                sa.RESEARCH_TOP_SCORE.value_set(outcome.top_score or 0.0),
            ]
        )
        unavailable = ", ".join(s.source for s in outcome.unavailable_sources)
        workflow.set_current_details(
            f"**{outcome.status.replace('_', ' ')}** · {outcome.new_items} new, {outcome.analysed} analysed "
            f"by {outcome.analyser}, top score {outcome.top_score or 0:.2f}, ${outcome.cost_usd:.4f}"
            + (f" · unavailable: {unavailable}" if unavailable else "")
            + (f" · {outcome.stopped_reason}" if outcome.stopped_reason else "")
        )
