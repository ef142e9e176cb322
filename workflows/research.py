"""ResearchCycleWorkflow: what is new on arXiv and GitHub, judged and remembered.

open the cycle (analyser, budgets, watermarks, the one-at-a-time lease) → gather both sources in parallel
(each stores what it found; a source that stays down is recorded and skipped; the sample source when none
answers) → analyse the items waiting, a few at a time, until done, the budget is spent, or the provider
fails as a whole → an experiment for each item above the threshold → a Markdown digest of the final
status → close the cycle. Started hourly by its Schedule (`schedules/`) or by `autarky research run`.

Round 2 (since release 26, patch `research-round-2`, deleted in 28): a failure that is the provider's (a bad
key, a quota, an outage, a spent budget) stops analysis at once and counts against no item; a cycle finding
another one running is skipped; the work stops short of the run's own timeout, and whatever fails, the memo
and the autopilot hear the final status.

Items travel as ids; documents stay in the knowledge base. The memo holds the cycle's summary, the search
attributes its item count and top score, so the UI can filter on them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutType,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.llm.errors import BUDGET_FAILURES, counts_against_item
    from autarky.research.budget import ResearchBudget
    from autarky.research.types import (
        SAMPLE,
        SOURCES,
        AnalyseInput,
        AnalysisFailure,
        CandidatesInput,
        CycleInput,
        CycleOutcome,
        CyclePlan,
        DigestInput,
        ExperimentInput,
        GatherInput,
        ItemScore,
        OpenCycleInput,
        PendingInput,
        ResearchReport,
        SourceName,
        SourceOutcome,
        analyse_item,
        close_research_cycle,
        count_unanalysed_items,
        experiment_candidates,
        gather_source,
        open_research_cycle,
        record_analysis_failure,
        unanalysed_items,
        write_research_digest,
    )
    from workflows.experiment import ExperimentWorkflow, experiment_id

R = TypeVar("R")

STORE_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1))
# An analyser that is not configured fails every item alike: stop at once. Any other failure may be the
# item's own (a refusal, an answer that does not validate), so analysis stops after a few in a row.
STOP_ANALYSIS_TYPES = frozenset({"LlmNotConfigured"})
STOP_AFTER_FAILURES = 3
# A source that stays down (or rate-limited for long) must not hold the cycle past this.
GATHER_DEADLINE = timedelta(minutes=15)
MAX_ERROR_CHARS = 300
# A cycle without a run or execution timeout holds the lease this long at most (a crashed one frees it).
MAX_LEASE = timedelta(hours=3)
# The cycle's work stops this long before its own timeout (a fifth of it at most), so that it can still
# write its digest, close and report.
REPORT_MARGIN = timedelta(minutes=5)


def _cause(error: ActivityError) -> str:
    """The activity's own message (written for a person), bounded; its Python causes (the library's
    exception, e.g. the whole URL) are left to the worker's log."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        text = cause.message
    elif cause is not None:
        text = str(cause) or type(cause).__name__  # a timeout, a cancellation
    else:
        text = str(error)
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


def _no_worker(error: ActivityError) -> bool:
    """No worker took the activity from its task queue in time (its schedule-to-start timeout)."""
    cause = error.cause
    return isinstance(cause, ActivityTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START


def _cause_type(error: ActivityError) -> str | None:
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None


@workflow.defn(name="ResearchCycleWorkflow")
class ResearchCycleWorkflow:
    def __init__(self) -> None:
        self._outcome: CycleOutcome | None = None
        self._scores: list[ItemScore] = []

    @workflow.run
    async def run(self, input: CycleInput) -> CycleOutcome:
        info = workflow.info()
        self._input = input
        self._outcome = outcome = CycleOutcome(
            cycle_id=info.workflow_id, status="running", analyser="?", started_at=workflow.now()
        )
        workflow.upsert_search_attributes([sa.KIND.value_set("research")])
        # Whatever fails, the outcome says how the cycle ended, in the memo and to the autopilot.
        timeout = min((t for t in (info.run_timeout, info.execution_timeout) if t), default=None)
        started = info.workflow_start_time or workflow.now()
        self._details("opening the cycle")
        try:
            plan = await self._activity(
                open_research_cycle,
                OpenCycleInput(
                    cycle_id=info.workflow_id,
                    trigger=input.trigger,
                    started_at=workflow.now(),
                    lease_until=started + (timeout or MAX_LEASE),
                ),
                "open the cycle: budgets, watermarks, the one-at-a-time lease",
            )
        except ActivityError as error:  # never opened: nothing to close
            reason = f"the cycle could not open: {self._why(error)}"
            return await self._finish("failed", reason, close=False, digest=False)
        outcome.analyser = plan.analyser
        if plan.held_by is not None:
            return await self._finish(
                "skipped", f"research cycle {plan.held_by} is running (one cycle at a time)", digest=False
            )
        try:
            if timeout is None:
                await self._cycle(input, plan)
            else:
                # Stop the work in time to still write the digest, close and report.
                margin = min(REPORT_MARGIN, timeout / 5)
                left = started + timeout - margin - workflow.now()
                await asyncio.wait_for(self._cycle(input, plan), timeout=left.total_seconds())
        except TimeoutError:
            if outcome.status == "running":  # a cycle that runs out of time every hour is a finding
                reason = f"stopped short of the cycle's timeout ({timeout}); what is left waits for the next"
                return await self._finish("stopped_for_time", reason)
        except ActivityError as error:  # the knowledge base stayed down, or no worker took a step
            return await self._finish("failed", f"the cycle failed: {self._why(error)}")
        except asyncio.CancelledError:
            # Cancelled by a person (the UI, `temporal workflow cancel`): still give the lease back, record
            # and report, then end as cancelled.
            await self._finish("failed", "the cycle was cancelled")
            raise
        return await self._finish(outcome.status if outcome.status != "running" else "completed", None)

    async def _finish(
        self, status: str, reason: str | None, close: bool = True, digest: bool = True
    ) -> CycleOutcome:
        """The final status first, then the digest that states it, the record, the memo, the autopilot."""
        outcome = self._outcome
        assert outcome is not None
        outcome.status = status  # type: ignore[assignment]  # one of CycleStatus, by its callers
        outcome.stopped_reason = reason or outcome.stopped_reason
        outcome.finished_at = workflow.now()
        if digest:
            self._details("writing the digest")
            outcome.digest = await self._digest(self._scores)
        if close:
            try:
                await self._activity(close_research_cycle, outcome, "record the outcome")
            except ActivityError as error:
                lost = f"the outcome was not recorded: {self._why(error)}"
                outcome.status = "failed"
                outcome.stopped_reason = "; ".join(filter(None, [outcome.stopped_reason, lost]))
        self._publish()
        if outcome.status != "skipped":  # nothing happened; the cycle that holds the lease reports
            await self._report(self._input.report_to)
        return outcome

    async def _cycle(self, input: CycleInput, plan: CyclePlan) -> None:
        outcome = self._outcome
        assert outcome is not None
        concurrency = input.concurrency or plan.concurrency
        max_items = plan.max_items if input.max_items is None else input.max_items
        threshold = (
            plan.experiment_threshold if input.experiment_threshold is None else input.experiment_threshold
        )
        self._details("gathering arXiv and GitHub")
        outcome.sources = list(await asyncio.gather(*(self._gather(s, plan) for s in SOURCES)))
        # Auto: only when no real source answered and analysing costs nothing (offline, a local model):
        # synthetic items must never be paid for, nor sent to a person as experiments on a paid stack.
        sample = plan.sample_source == "always" or (
            plan.sample_source == "auto"
            and not plan.priced
            and all(s.status != "ok" for s in outcome.sources)
        )
        if sample:  # offline (or asked to): the shipped sample items show the loop
            outcome.sources.append(await self._gather(SAMPLE, plan))
        outcome.new_items = sum(s.new_items for s in outcome.sources)

        pending = PendingInput(
            limit=max_items, analyser=plan.analyser_key, reanalyse_since=plan.reanalyse_since
        )
        item_ids = await self._activity(unanalysed_items, pending, "items waiting for an analysis")
        budget = ResearchBudget(
            per_cycle_usd=plan.budget_per_cycle_usd,
            per_day_usd=plan.budget_per_day_usd,
            spent_today_before_usd=plan.spent_today_usd,
            paid=plan.priced,
        )
        scores = self._scores = await self._analyse(item_ids, concurrency, budget, plan)
        outcome.top_score = max((s.score for s in scores), default=None)
        outcome.pending = await self._activity(
            count_unanalysed_items, pending, "items left for the next cycle"
        )
        # From the knowledge base, not this cycle's scores: an item an earlier cycle could not start an
        # experiment for (it failed on the way) gets one now.
        chosen = await self._activity(
            experiment_candidates,
            CandidatesInput(min_score=threshold, limit=plan.max_experiments),
            "items worth an experiment",
        )
        await self._start_experiments(chosen, input.approval_timeout or plan.approval_timeout)

    @workflow.query(name="outcome")
    def current_outcome(self) -> CycleOutcome | None:
        return self._outcome

    # ------------------------------------------------------------------------------------------ stages

    async def _gather(self, source: SourceName, plan: CyclePlan) -> SourceOutcome:
        """One source; when it stays unavailable the cycle goes on without it and says why."""
        try:
            found = await workflow.execute_activity(
                gather_source,
                GatherInput(
                    cycle_id=workflow.info().workflow_id, source=source, since=plan.watermarks.get(source)
                ),
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=10),
                schedule_to_close_timeout=GATHER_DEADLINE,
                schedule_to_start_timeout=self._start_timeout(),
                retry_policy=RetryPolicy(
                    initial_interval=self._input.source_retry_interval,
                    maximum_attempts=self._input.source_attempts,
                ),
                summary=f"fetch {source} since {plan.watermarks.get(source)}",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise asyncio.CancelledError from error  # the cycle stops short of its timeout
            if _no_worker(error):  # the cycle's failure, not the source's
                raise
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
        self, item_ids: list[int], concurrency: int, budget: ResearchBudget, plan: CyclePlan
    ) -> list[ItemScore]:
        """Analyse with at most `concurrency` activities at once; stop starting new ones when the budget is
        spent, when the analyser is not configured, or after failures in a row (a provider that is down or
        refuses every call: no use paying or hammering it for the rest). Round 2: a failure of the
        provider as a whole stops at once and counts against no item."""
        outcome = self._outcome
        assert outcome is not None
        queue = deque(item_ids)
        scores: list[ItemScore] = []
        failures_in_a_row = 0

        async def lane() -> None:
            nonlocal failures_in_a_row
            while queue and outcome.stopped_reason is None:
                reason = budget.exhausted()
                if reason is not None:
                    outcome.status, outcome.stopped_reason = "stopped_for_budget", reason
                    return
                item_id = queue.popleft()
                try:
                    result = await workflow.execute_activity(
                        analyse_item,
                        AnalyseInput(cycle_id=outcome.cycle_id, item_id=item_id),
                        task_queue=self._input.activity_task_queue,
                        start_to_close_timeout=timedelta(minutes=3),
                        schedule_to_start_timeout=self._start_timeout(),
                        retry_policy=RetryPolicy(
                            initial_interval=self._input.analysis_retry_interval,
                            maximum_interval=timedelta(minutes=2),
                            maximum_attempts=self._input.analysis_attempts,
                        ),
                        summary=f"analyse item {item_id}",
                    )
                except ActivityError as error:
                    if isinstance(error.cause, CancelledError):
                        raise asyncio.CancelledError from error  # the cycle stops short of its timeout
                    if not counts_against_item(_cause_type(error)):
                        self._provider_failed(error, budget)
                        continue
                    failures_in_a_row += 1
                    await self._failed(item_id, error, budget, plan)
                    if _cause_type(error) in STOP_ANALYSIS_TYPES or failures_in_a_row >= STOP_AFTER_FAILURES:
                        outcome.status = "failed"
                        outcome.stopped_reason = (
                            f"analysis stopped after {failures_in_a_row} failure(s) in a row: {_cause(error)}"
                        )
                    continue
                failures_in_a_row = 0
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

    def _provider_failed(self, error: ActivityError, budget: ResearchBudget) -> None:
        """A failure every item would meet (a bad key, a quota, an outage past its retries, a spent
        budget, a timeout): stop analysing, count it on no item, and say what to fix (the gateway's
        message names it)."""
        outcome = self._outcome
        assert outcome is not None
        budget.spend(_spent_by_failure(error))  # the cycle's own tally; the ledger has the call
        outcome.cost_usd = budget.spent_usd
        workflow.logger.warning("analysis stopped: %s", _cause(error))
        if outcome.stopped_reason is None:
            budget_spent = _cause_type(error) in BUDGET_FAILURES
            outcome.status = "stopped_for_budget" if budget_spent else "failed"
            outcome.stopped_reason = f"analysis stopped: {self._why(error)}"

    async def _failed(
        self, item_id: int, error: ActivityError, budget: ResearchBudget, plan: CyclePlan
    ) -> None:
        """Count the failure on the item (set aside after a few) and what it still cost."""
        outcome = self._outcome
        assert outcome is not None
        outcome.failed += 1
        cost = _spent_by_failure(error)
        budget.spend(cost)
        outcome.cost_usd = budget.spent_usd
        workflow.logger.warning("analysis of item %s failed: %s", item_id, _cause(error))
        # Its cost is in the ledger already (the gateway's); counted under the analyser it failed under.
        key = plan.analyser_key
        failure = AnalysisFailure(
            cycle_id=outcome.cycle_id,
            item_id=item_id,
            error=_cause(error)[:1000],
            analyser=key.label if key else plan.analyser,
        )
        await self._activity(
            record_analysis_failure, failure, f"record the failed analysis of item {item_id}"
        )

    async def _start_experiments(self, chosen: list[ItemScore], approval_timeout: timedelta) -> None:
        """An ExperimentWorkflow per chosen item, left running after the cycle ends (it waits for a person).
        Its id is the item's (source and id), so an item chosen twice keeps its one experiment."""
        outcome = self._outcome
        assert outcome is not None
        for score in chosen:
            workflow_id = experiment_id(score.source, score.source_id)
            try:
                await workflow.start_child_workflow(
                    ExperimentWorkflow.run,
                    ExperimentInput(
                        item_id=score.item_id,
                        score=score.score,
                        cycle_id=outcome.cycle_id,
                        approval_timeout=approval_timeout,
                        activity_task_queue=self._input.activity_task_queue,
                    ),
                    id=workflow_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"experiment for item {score.item_id} (score {score.score:.2f})",
                )
            except WorkflowAlreadyStartedError:
                continue  # started by an earlier cycle, its record not written yet
            outcome.experiments.append(workflow_id)

    async def _digest(self, scores: list[ItemScore]) -> str | None:
        outcome = self._outcome
        assert outcome is not None
        try:
            return await workflow.execute_activity(
                write_research_digest,
                DigestInput(outcome=outcome, scores=scores),
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=2),
                schedule_to_start_timeout=self._start_timeout(),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary="write the digest",
            )
        except ActivityError as error:  # the analyses are stored; a missing page is not worth failing for
            workflow.logger.warning("research digest not written: %s", _cause(error))
            outcome.digest_error = self._why(error)
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
        except (ApplicationError, ActivityError) as error:  # no such workflow: the memo has it anyway
            workflow.logger.info("could not tell the autopilot %s: %s", autopilot_id, error)

    # ------------------------------------------------------------------------------------------ helpers

    async def _activity(self, fn: Callable[..., Awaitable[R]], arg: object, summary: str) -> R:
        args = [] if arg is None else [arg]
        try:
            return await workflow.execute_activity(
                fn,
                args=args,
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=2),
                schedule_to_start_timeout=self._start_timeout(),
                retry_policy=STORE_RETRY,
                summary=summary,
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise asyncio.CancelledError from error  # the cycle's own deadline, or a person's cancel
            raise

    def _start_timeout(self) -> timedelta | None:
        """How long an activity waits for a research worker (None: as long as the run lasts)."""
        return self._input.activity_start_timeout

    def _why(self, error: ActivityError) -> str:
        """`_cause`, saying which task queue has no worker when no worker took the activity."""
        if _no_worker(error):
            queue = self._input.activity_task_queue or workflow.info().task_queue
            return (
                f"no worker took {error.activity_type} from task queue {queue!r} within "
                f"{self._input.activity_start_timeout}: start a worker serving it (`autarky up` or "
                "`autarky worker`), or set research_task_queue to a queue that has one"
            )
        return _cause(error)

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
                "digest_error": outcome.digest_error,
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
