"""ModelABTestWorkflow: does a challenger model beat the one in service, with error rates it can state?

describe the slot (the incumbent is its active variant) → ramp the challenger's share step by step →
every evaluation period read the aggregated outcomes (an activity: statistics, never rows) → guardrails
(error rate, p95 latency, cost per call): a breach routes all traffic back at once → the sequential test
(always valid, so looking after every period does not inflate the error rate): better by the minimum
improvement → promote (through the approval gate when asked); clearly not → keep the incumbent; the
time or samples run out → keep the incumbent. Promotion, rollback and each split change are idempotent
activities keyed by this workflow and step.

Signals: pause, resume, abort (restores the incumbent's full traffic). Query: status. Id
`abtest/<slot>/<challenger>`; search attributes AutarkySlot and AutarkyDecision; the current details show
the running estimate and its interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.models.ab_types import (
        ABDecision,
        ABTestInput,
        ABTestResult,
        ABTestState,
        ABTestStatus,
        ArmView,
    )
    from autarky.models.sequential import ArmSummary, SequentialDesign, SequentialResult, evaluate
    from autarky.models.types import (
        ArmsInput,
        ArmStats,
        EvaluateBatch,
        Promote,
        RestoreIncumbent,
        SetSplit,
        SlotInfo,
        SlotRef,
        describe_model_slot,
        evaluate_offline_batch,
        model_arm_stats,
        promote_model_variant,
        restore_model_incumbent,
        set_model_split,
    )
    from workflows.approval import ApprovalGate

# Routing changes must happen: a rollback that gives up would leave the challenger in service.
CHANGE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
READ_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))


@workflow.defn(name="ModelABTestWorkflow")
class ModelABTestWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, input: ABTestInput) -> None:
        # Here, not in run: a signal (pause, abort) may be handled before run starts.
        self._init_approval_gate([])
        self._input = input
        self._state = input.state or ABTestState()
        self._status: ABTestStatus | None = None

    @workflow.run
    async def run(self, input: ABTestInput) -> ABTestResult:
        state = self._state
        wid = workflow.info().workflow_id
        self._status = ABTestStatus(
            workflow_id=wid,
            slot=input.slot,
            incumbent=state.incumbent,
            challenger=input.challenger,
            share=0.0,
            metric=input.metric,
            direction=input.better_direction,
            decision="running",
            paused=state.paused,
        )
        workflow.upsert_search_attributes(
            [sa.KIND.value_set("abtest"), sa.SLOT.value_set(input.slot), sa.DECISION.value_set("running")]
        )
        if state.incumbent is None:
            slot = await self._describe()
            self._check_challenger(slot)
            state.incumbent, state.started_at = slot.active, workflow.now()
            self._status.incumbent = slot.active
            await self._set_share(input.steps[0])
            if len(input.steps) == 1:  # no ramp: the comparison starts once the share took effect
                state.test_since = workflow.now() + input.propagation_delay
        assert state.started_at is not None
        self._status.share = input.steps[min(state.step, len(input.steps) - 1)]

        for _ in range(input.evaluations_per_run):
            await self._wait_period()
            if state.abort is not None:
                return await self._restore("aborted", f"aborted: {state.abort}")
            stats = await self._stats()
            breach = self._guardrail_breach(stats[1])
            if breach is not None:
                return await self._restore("rolled_back", f"guardrail breached: {breach}")
            if state.paused or state.test_since is None:  # paused or still ramping: guardrails only
                self._show_arms(stats)
                if not state.paused:
                    await self._maybe_ramp(stats[1].calls)
                continue
            result = evaluate(_summary(stats[0]), _summary(stats[1]), self._design())
            self._show(stats, result)
            if state.abort is not None:  # arrived while the statistics were read
                return await self._restore("aborted", f"aborted: {state.abort}")
            if result.decision == "better":
                return await self._promote(result.text())
            if result.decision in ("not_better", "worse"):
                return await self._restore("kept", f"the challenger is not better: {result.text()}")
            if min(stats[0].metric.n, stats[1].metric.n) >= input.max_samples:
                return await self._restore("kept", f"no decision within {input.max_samples} samples per arm")
            if workflow.now() - state.started_at - self._paused_so_far() >= input.max_duration:
                return await self._restore("kept", f"no improvement within {input.max_duration}")
        if state.abort is not None:
            return await self._restore("aborted", f"aborted: {state.abort}")
        workflow.continue_as_new(input.model_copy(update={"state": state}))

    # ------------------------------------------------------------------------------------ people

    @workflow.signal(name="pause")
    def pause(self) -> None:
        if not self._state.paused:
            self._state.paused, self._state.paused_at = True, workflow.now()
        self._refresh()

    @workflow.signal(name="resume")
    def resume(self) -> None:
        state = self._state
        if state.paused and state.paused_at is not None:
            state.paused_total += workflow.now() - state.paused_at
        state.paused, state.paused_at = False, None
        self._refresh()

    @workflow.signal(name="abort")
    def abort(self, reason: str) -> None:
        self._state.abort = reason.strip() or "no reason given"

    @workflow.query(name="status")
    def status(self) -> ABTestStatus | None:
        return self._status

    # ------------------------------------------------------------------------------------ stages

    def _check_challenger(self, slot: SlotInfo) -> None:
        names = [v.name for v in slot.variants]
        if self._input.challenger not in names:
            raise ApplicationError(
                f"slot {slot.name!r} has no variant {self._input.challenger!r} "
                f"(variants: {', '.join(names)})",
                type="ABTestRefused",
                non_retryable=True,
            )
        if self._input.challenger == slot.active:
            raise ApplicationError(
                f"{self._input.challenger!r} is already the active variant of {slot.name!r}",
                type="ABTestRefused",
                non_retryable=True,
            )

    async def _wait_period(self) -> None:
        """One evaluation period: drive an offline slot with a batch of labelled examples, or wait for real
        traffic. Paused, the period only waits (the guardrails are still read after it); an abort ends
        the wait at once."""
        if self._state.paused:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: not self._state.paused or self._state.abort is not None,
                    timeout=self._input.evaluation_interval,
                )
            return
        if self._state.abort is not None:
            return
        self._state.evaluations += 1
        if self._drives_offline:
            self._state.batch += 1
            await workflow.execute_activity(
                evaluate_offline_batch,
                EvaluateBatch(
                    slot=self._input.slot,
                    size=self._input.batch_size,
                    batch=self._state.batch,
                    run=_change_prefix(),
                ),
                task_queue=self._input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=READ_RETRY,
                summary=f"evaluate batch {self._state.batch} of labelled examples",
            )
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._state.abort is not None, timeout=self._input.evaluation_interval
            )

    async def _stats(self) -> list[ArmStats]:
        state = self._state
        assert state.incumbent is not None and state.started_at is not None
        return await workflow.execute_activity(
            model_arm_stats,
            ArmsInput(
                slot=self._input.slot,
                variants=[state.incumbent, self._input.challenger],
                since=state.test_since or state.started_at,
                metric=self._input.metric,
            ),
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=READ_RETRY,
            summary="read both arms' aggregated outcomes",
        )

    def _guardrail_breach(self, challenger: ArmStats) -> str | None:
        rails = self._input.guardrails
        if challenger.calls < rails.min_calls:
            return None
        if rails.max_error_rate is not None and challenger.error_rate > rails.max_error_rate:
            return f"error rate {challenger.error_rate:.1%} > {rails.max_error_rate:.1%}"
        p95 = challenger.latency_p95_ms
        if rails.max_p95_latency_ms is not None and p95 is not None and p95 > rails.max_p95_latency_ms:
            return f"p95 latency {p95:.0f} ms > {rails.max_p95_latency_ms:.0f} ms"
        if rails.max_cost_per_call is not None and challenger.cost_per_call > rails.max_cost_per_call:
            return f"cost per call ${challenger.cost_per_call:.5f} > ${rails.max_cost_per_call:.5f}"
        return None

    async def _maybe_ramp(self, challenger_calls: int) -> None:
        """The next ramp step once the current one has seen its calls (and its guardrails held)."""
        state, steps = self._state, self._input.steps
        if state.step + 1 >= len(steps):
            return
        if challenger_calls - state.step_started_calls < self._input.calls_per_step:
            return
        state.step += 1
        state.step_started_calls = challenger_calls
        await self._set_share(steps[state.step])
        if state.step + 1 == len(steps):  # the final share: the comparison starts once it took effect
            state.test_since = workflow.now() + self._input.propagation_delay

    async def _set_share(self, share: float) -> None:
        state = self._state
        assert state.incumbent is not None
        await self._change(
            set_model_split,
            SetSplit(
                slot=self._input.slot,
                split={state.incumbent: 1 - share, self._input.challenger: share},
                key=f"{_change_prefix()}/share-{state.step}",
            ),
            f"route {share:.0%} to {self._input.challenger}",
        )
        assert self._status is not None
        self._status.share = share
        self._refresh()

    async def _promote(self, why: str) -> ABTestResult:
        if self._input.require_approval:
            approval_id = f"promote-{self._input.slot}-{self._input.challenger}"
            self.request_approval(
                approval_id,
                subject=f"promote {self._input.challenger} in {self._input.slot}",
                why=why,
                timeout=self._input.approval_timeout,
                risk=0.5,
            )
            request = self.pending()[-1]
            # An abort ends the wait (the challenger keeps its share meanwhile).
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: request.state != ApprovalState.PENDING or self._state.abort is not None,
                    timeout=max(request.expires_at - workflow.now(), timedelta(0)),
                )
            if self._state.abort is not None:
                return await self._restore("aborted", f"aborted while awaiting approval: {self._state.abort}")
            decision = await self.wait_for_decision(approval_id)
            if decision.state != ApprovalState.APPROVED:
                return await self._restore(
                    "kept", f"promotion {decision.state.value}: {decision.decision_reason}"
                )
        await self._change(
            promote_model_variant,
            Promote(
                slot=self._input.slot,
                variant=self._input.challenger,
                key=f"{_change_prefix()}/promote",
            ),
            f"promote {self._input.challenger}",
        )
        assert self._status is not None
        self._status.share = 1.0
        return self._finish("promoted", f"promoted: {why}")

    async def _restore(self, decision: ABDecision, reason: str) -> ABTestResult:
        state = self._state
        if state.incumbent is not None:
            await self._change(
                restore_model_incumbent,
                RestoreIncumbent(
                    slot=self._input.slot,
                    incumbent=state.incumbent,
                    key=f"{_change_prefix()}/restore",
                ),
                f"route all traffic back to {state.incumbent}",
            )
        return self._finish(decision, reason)

    async def _change(
        self, change: Callable[..., Awaitable[SlotInfo]], arg: object, summary: str
    ) -> SlotInfo:
        return await workflow.execute_activity(
            change,
            arg,
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=CHANGE_RETRY,
            summary=summary,
        )

    async def _describe(self) -> SlotInfo:
        return await workflow.execute_activity(
            describe_model_slot,
            SlotRef(slot=self._input.slot),
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=READ_RETRY,
            summary=f"describe slot {self._input.slot}",
        )

    # ------------------------------------------------------------------------------------ helpers

    def _paused_so_far(self) -> timedelta:
        state = self._state
        ongoing = workflow.now() - state.paused_at if state.paused and state.paused_at else timedelta(0)
        return state.paused_total + ongoing

    @property
    def _drives_offline(self) -> bool:
        if self._input.drive_offline is not None:
            return self._input.drive_offline
        return self._input.slot.endswith("-offline")

    def _design(self) -> SequentialDesign:
        return SequentialDesign(
            alpha=self._input.alpha,
            min_relative_improvement=self._input.min_improvement,
            direction=self._input.better_direction,
        )

    def _show_arms(self, stats: list[ArmStats]) -> None:
        assert self._status is not None
        self._status.arms = [_view(a) for a in stats]
        self._status.statistic = (
            "paused: guardrails only"
            if self._state.paused
            else "ramping: guardrails only until the final share"
        )
        self._refresh()

    def on_approvals_changed(self) -> None:
        self._refresh()

    def _show(self, stats: list[ArmStats], result: SequentialResult) -> None:
        status = self._status
        assert status is not None
        status.arms = [_view(a) for a in stats]
        # NaN / infinite while an arm is too small or the control mean is 0: shown as unknown.
        status.estimate = _finite(result.relative_effect)
        status.lower, status.upper = _finite(result.lower), _finite(result.upper)
        status.statistic = result.text()
        self._refresh()

    def _refresh(self) -> None:
        status = self._status
        if status is None:
            return
        status.paused = self._state.paused
        arms = ", ".join(f"{a.variant} n={a.samples}" for a in status.arms) or "no samples yet"
        state = "paused" if status.paused else status.decision
        workflow.set_current_details(
            f"**{state}** · {status.challenger} vs {status.incumbent} on {status.metric} "
            f"({status.direction} is better) · share {status.share:.0%} · {arms}"
            + (f" · {status.statistic}" if status.statistic else "")
            + (f" · {status.reason}" if status.reason else "")
        )

    def _finish(self, decision: ABDecision, reason: str) -> ABTestResult:
        status = self._status
        assert status is not None
        status.decision, status.reason = decision, reason
        if decision != "promoted":
            status.share = 0.0
        workflow.upsert_search_attributes([sa.DECISION.value_set(decision)])
        workflow.upsert_memo({"decision": decision, "reason": reason, "estimate": status.estimate})
        self._refresh()
        return ABTestResult(workflow_id=status.workflow_id, decision=decision, reason=reason, status=status)


def _change_prefix() -> str:
    """Keys of this test's routing changes: the same in every run of one test (continue-as-new keeps the
    first run id), new for a later test of the same slot and challenger (same workflow id); hashed, so
    long slot names still fit the registry's 255 characters."""
    info = workflow.info()
    digest = hashlib.sha256(f"{info.workflow_id}/{info.first_execution_run_id}".encode()).hexdigest()
    return f"abtest-{digest[:24]}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summary(arm: ArmStats) -> ArmSummary:
    return ArmSummary(n=arm.metric.n, mean=arm.metric.mean, variance=arm.metric.variance)


def _view(arm: ArmStats) -> ArmView:
    return ArmView(
        variant=arm.variant,
        calls=arm.calls,
        samples=arm.metric.n,
        mean=arm.metric.mean if arm.metric.n else None,
        error_rate=arm.error_rate,
        latency_p95_ms=arm.latency_p95_ms,
        cost_per_call=arm.cost_per_call,
    )
