"""ModelABTestWorkflow: does a challenger model beat the one in service, with error rates it can state?

Round 2 (since release 27, patch `abtest-round-2`; round 1's path deleted in 28, the patch in 29):
describe the slot (the incumbent is its active variant) → plan the design (group-sequential: O'Brien-Fleming
α-spending with binding futility and a maximum sample; or the always-valid mixture) → ramp the challenger's
share step by step, each split a lease salted with this test's id → every evaluation period renew the lease
and read the arms (aggregates, never rows; a failed call counts as the worst outcome): the guardrails test
the challenger against the incumbent over a recent window, the sample ratio is checked on the units each
arm got; a breach or a mismatch routes all traffic back at once → after `min_duration`, the design decides:
better → promote (a person approves when asked or when the variant's risk is above `approval_risk`, while
the guardrails are still checked); not better → keep the incumbent; the deadlines (time, samples) are
checked in every phase. An offline slot is tested paired instead: both variants score every labelled
example and McNemar's test decides. Whatever else ends the test (a failure, a cancel) restores the
incumbent first; a test that stops without doing so (terminated, timed out) leaves a lease that runs out.

Signals: pause, resume, abort (restores the incumbent's full traffic). Query: status. Id
`abtest/<slot>/<challenger>`; search attributes AutarkySlot and AutarkyDecision; the current details show
the design, the running estimate and its interval, the guardrails and the sample ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

from workflows.compat import ab_test as compat

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalRequest, ApprovalState
    from autarky.models.ab_convert import (
        arm_summary,
        arm_view,
        challenger_refusal,
        current_details,
        deadline_reason,
        finite,
        new_status,
        paused_so_far,
        show_result,
        window_arm,
    )
    from autarky.models.ab_plan import PlanRequest, plan_model_abtest
    from autarky.models.ab_types import ABDecision, ABTestInput, ABTestResult, ABTestState, ABTestStatus
    from autarky.models.group_sequential import GroupSequentialPlan, GroupSequentialResult, evaluate_look
    from autarky.models.guardrails import guardrail_breach, guardrail_headroom
    from autarky.models.paired import paired_decision
    from autarky.models.promotion_risk import promotion_risk
    from autarky.models.sequential import SequentialDesign, SequentialResult, evaluate
    from autarky.models.srm import sample_ratio_mismatch
    from autarky.models.types import (
        ArmsInput,
        ArmStats,
        PairedBatch,
        Promote,
        RenewSplit,
        RestoreIncumbent,
        SetSplit,
        SlotInfo,
        SlotRef,
        WindowInput,
        WindowStats,
        describe_model_slot,
        evaluate_offline_paired,
        model_arm_stats,
        model_window_stats,
        promote_model_variant,
        renew_model_split,
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
        self._status = new_status(input, state, workflow.info().workflow_id)
        workflow.upsert_search_attributes(
            [sa.KIND.value_set("abtest"), sa.SLOT.value_set(input.slot), sa.DECISION.value_set("running")]
        )
        if state.incumbent is None:
            state.round = 2  # kept in the state's payload; every test takes round 2
            slot = await self._describe()
            self._check_challenger(slot)
            state.incumbent, state.started_at = slot.active, workflow.now()
            state.providers = {v.name: v.provider for v in slot.variants}
            self._status.incumbent = slot.active
        assert state.started_at is not None
        self._status.share = input.steps[min(state.step, len(input.steps) - 1)]
        return await self._fail_safe(input)

    async def _fail_safe(self, input: ABTestInput) -> ABTestResult:
        """Round 2: whatever ends the test other than a promotion — a failure, a cancel — routes all
        traffic back to the incumbent first (with unlimited retries: a registry that is down is waited
        for). A timeout or a termination cannot run this: the split's lease runs out instead."""
        try:
            return await self._run_round_2(input)
        except asyncio.CancelledError:
            await self._restore("aborted", "cancelled")
            raise
        except Exception as error:
            if is_cancelled_exception(error):  # cancelled while an activity ran
                await self._restore("aborted", "cancelled")
                raise
            await self._restore("failed", f"failed: {_root_cause(error)}")
            if isinstance(error, FailureError):
                raise
            # A bug (not a Temporal failure) would fail the task and retry it for ever: the test is over.
            raise ApplicationError(f"the A/B test failed: {error!r}", non_retryable=True) from error

    # ------------------------------------------------------------------------------------ round 2

    async def _run_round_2(self, input: ABTestInput) -> ABTestResult:
        """Every period: renew the split's lease, read both arms (the test since the final share, the
        guardrails over the recent window), stop on a guardrail breach or a sample-ratio mismatch, check the
        deadlines in every phase, ramp, and after `min_duration` ask the design for a decision."""
        state = self._state
        assert state.started_at is not None
        if self._drives_offline:
            return await self._run_paired(input)
        if state.plan is None and input.design == "group_sequential":
            state.plan = await self._plan()
        self._status_design()
        if not state.opened:
            state.opened = True
            await self._set_share(input.steps[0])
            if len(input.steps) == 1:  # no ramp: the comparison starts once the share took effect
                state.test_since = workflow.now() + input.propagation_delay
        for _ in range(input.evaluations_per_run):
            await self._wait_period()
            if state.abort is not None:
                return await self._restore("aborted", f"aborted: {state.abort}")
            stats, stop = await self._watch()
            if stop is not None:
                return stop
            if state.abort is not None:  # arrived while the arms were read
                return await self._restore("aborted", f"aborted: {state.abort}")
            deadline = self._deadline(stats)
            if deadline is not None:
                return await self._restore("kept", deadline)
            if state.paused or state.test_since is None:  # paused or still ramping: guardrails only
                self._show_arms(stats)
                if not state.paused:
                    await self._maybe_ramp(stats[1].calls)
                continue
            result = self._decide(stats)
            self._show(stats, result)
            if result.decision == "better":
                return await self._promote(stats, result.text())
            if result.decision in ("not_better", "worse"):
                return await self._restore("kept", f"the challenger is not better: {result.text()}")
        workflow.continue_as_new(input.model_copy(update={"state": state}))

    def _deadline(self, stats: list[ArmStats]) -> str | None:
        samples = min(stats[0].metric.n, stats[1].metric.n)
        return deadline_reason(self._input, self._state, samples, workflow.now())

    async def _watch(self) -> tuple[list[ArmStats], ABTestResult | None]:
        """Renew the lease and read both arms; a result when the test must stop (the split was changed by
        someone else, a guardrail breached, the sample ratio is off)."""
        input, state = self._input, self._state
        assert state.incumbent is not None and self._status is not None
        share = input.steps[min(state.step, len(input.steps) - 1)]
        renewed, stats, window = await asyncio.gather(
            workflow.execute_activity(
                renew_model_split,
                RenewSplit(
                    slot=input.slot,
                    split=self._split(share),
                    expires_at=workflow.now() + input.lease,
                ),
                task_queue=input.activity_task_queue,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=READ_RETRY,
                summary="renew the challenger's share",
            ),
            self._stats(),
            self._window_stats(workflow.now() - input.guardrails.window * input.evaluation_interval),
        )
        if not renewed:
            slot = await self._describe()
            if slot.split != self._split(share):  # a person (or another test) changed it: theirs now
                return stats, self._finish(
                    "aborted", f"the slot's split was changed outside the test ({slot.split}); left as it is"
                )
            # Our split, but its lease ran out (the test could not renew it in time): the routers have sent
            # everything to the incumbent since, so the comparison is broken; the registry says so too.
            return stats, await self._restore(
                "aborted", f"the challenger's share lapsed (not renewed within {input.lease})"
            )
        checks = math.ceil(
            (input.max_duration + input.max_pause + input.approval_timeout) / input.evaluation_interval
        )
        breach = guardrail_breach(window_arm(window[0]), window_arm(window[1]), input.guardrails, checks)
        self._status.guardrails = breach or f"held over the last {input.guardrails.window} periods"
        if breach is not None:
            return stats, await self._restore("rolled_back", f"guardrail breached: {breach}")
        if state.step_since is not None and not state.paused:  # at the share of the current step
            srm = sample_ratio_mismatch(stats[0].units, stats[1].units, share)
            self._status.sample_ratio = srm.text
            if srm.mismatch:
                return stats, await self._restore("rolled_back", f"sample ratio mismatch: {srm.text}")
        return stats, None

    async def _window_stats(self, since: datetime) -> list[WindowStats]:
        input, state = self._input, self._state
        assert state.incumbent is not None
        return await workflow.execute_activity(
            model_window_stats,
            WindowInput(
                slot=input.slot,
                incumbent=state.incumbent,
                challenger=input.challenger,
                since=since,
                latency_limit_ms=input.guardrails.max_p95_latency_ms,
            ),
            task_queue=input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=READ_RETRY,
            summary="read both arms' guardrail statistics",
        )

    def _decide(self, stats: list[ArmStats]) -> SequentialResult | GroupSequentialResult:
        input, state = self._input, self._state
        control, treatment = arm_summary(stats[0]), arm_summary(stats[1])
        assert state.test_since is not None
        early = workflow.now() - state.test_since - self._paused_so_far() < input.min_duration
        if state.plan is not None:
            result = evaluate_look(state.plan, control, treatment, state.looks_done)
            if not early and result.look is not None:
                state.looks_done = result.look  # too early, the look is not taken: a later read takes it
        else:
            result = evaluate(control, treatment, self._design())
        if early and result.decision != "continue":
            return dataclasses.replace(
                result, decision="continue", reason=f"no decision before {input.min_duration} of testing"
            )
        return result

    async def _plan(self) -> GroupSequentialPlan:
        return await workflow.execute_activity(
            plan_model_abtest,
            PlanRequest(
                alpha=self._input.alpha,
                min_improvement=self._input.min_improvement,
                direction=self._input.better_direction,
                looks=self._input.looks,
            ),
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=READ_RETRY,
            summary=f"plan the group-sequential test ({self._input.looks} looks)",
        )

    async def _run_paired(self, input: ABTestInput) -> ABTestResult:
        """An offline slot: both variants score every labelled example, once; McNemar's test settles it."""
        state = self._state
        assert state.incumbent is not None and self._status is not None
        counts = await workflow.execute_activity(
            evaluate_offline_paired,
            PairedBatch(
                slot=input.slot, incumbent=state.incumbent, challenger=input.challenger, run=self._prefix()
            ),
            task_queue=input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=READ_RETRY,
            summary="score every labelled example with both variants",
        )
        pairs = counts.both_right, counts.only_incumbent, counts.only_challenger, counts.both_wrong
        result = paired_decision(*pairs, alpha=input.alpha, min_improvement=input.min_improvement)
        self._status.design = f"paired (McNemar) on {counts.examples} labelled examples"
        self._status.statistic = result.text
        self._status.estimate = finite(result.relative_effect)
        self._refresh()
        if result.decision == "better":
            return await self._promote([], result.text, watch=False)
        return self._finish("kept", f"the challenger is not better: {result.text}")

    async def _promote(self, stats: list[ArmStats], why: str, watch: bool = True) -> ABTestResult:
        """Promote, through a person when asked or when the variant's risk is above `approval_risk`; the
        guardrails and the sample ratio are still checked every period while the approval waits."""
        input, state = self._input, self._state
        assert state.incumbent is not None and self._status is not None
        margin = None
        if watch:  # how close the challenger came to a guardrail over the whole test (not one noisy window)
            whole = await self._window_stats(state.test_since or state.started_at or workflow.now())
            arms = window_arm(whole[0]), window_arm(whole[1])
            margin = guardrail_headroom(*arms, input.guardrails, compat.headroom_z())
        risk = promotion_risk(
            state.providers.get(state.incumbent, ""),
            state.providers.get(input.challenger, ""),
            stats[0].cost_per_call if stats else 0.0,
            stats[1].cost_per_call if stats else 0.0,
            guardrail_margin=margin,
        )
        self._status.risk = risk.score
        if input.require_approval or risk.score > input.approval_risk:
            approval_id = f"promote-{input.slot}-{input.challenger}"
            reasons = "; ".join(risk.reasons) or "approval required by the test"
            request = self.request_approval(
                approval_id,
                subject=f"promote {input.challenger} in {input.slot}",
                why=f"{why} · risk {risk.score:.2f}: {reasons}",
                timeout=input.approval_timeout,
                risk=risk.score,
            )
            while request.state == ApprovalState.PENDING and workflow.now() < request.expires_at:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: request.state != ApprovalState.PENDING or state.abort is not None,
                        timeout=min(input.evaluation_interval, request.expires_at - workflow.now()),
                    )
                if state.abort is not None:
                    self._withdraw(request, f"aborted: {state.abort}")
                    return await self._restore("aborted", f"aborted while awaiting approval: {state.abort}")
                if request.state != ApprovalState.PENDING or not watch:
                    continue
                _, stop = await self._watch()
                if stop is not None:
                    self._withdraw(request, stop.reason)
                    return stop
            decision = await self.wait_for_decision(approval_id)
            if decision.state != ApprovalState.APPROVED:
                return await self._restore(
                    "kept", f"promotion {decision.state.value}: {decision.decision_reason}"
                )
        if state.abort is not None:  # arrived while the last statistics were read
            return await self._restore("aborted", f"aborted before the promotion: {state.abort}")
        await self._change(
            promote_model_variant,
            Promote(slot=input.slot, variant=input.challenger, key=f"{self._prefix()}/promote"),
            f"promote {input.challenger}",
        )
        self._status.share = 1.0
        return self._finish("promoted", f"promoted: {why}")

    def _withdraw(self, request: ApprovalRequest, reason: str) -> None:
        if request.state == ApprovalState.PENDING:
            self._record_decision(request, ApprovalState.REJECTED, "autarky:abtest", reason)

    def _split(self, share: float) -> dict[str, float]:
        assert self._state.incumbent is not None
        return {self._state.incumbent: 1 - share, self._input.challenger: share}

    def _status_design(self) -> None:
        assert self._status is not None
        plan = self._state.plan
        if plan is not None:
            self._status.design = plan.text()
        else:
            self._status.design = f"always valid (mixture sequential test, α = {self._input.alpha})"

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
        refusal = challenger_refusal(slot, self._input.challenger)
        if refusal is not None:
            raise ApplicationError(refusal, type="ABTestRefused", non_retryable=True)

    async def _wait_period(self) -> None:
        """One evaluation period of real traffic. Paused, the period only waits (the guardrails are still
        read after it); an abort ends the wait at once."""
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
                since=state.test_since or state.step_since or state.started_at,
                metric=self._input.metric,
                # A failed call is the worst outcome, not a missing one.
                errors_count=True,
                error_latency_ms=self._input.error_latency_ms,
            ),
            task_queue=self._input.activity_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=READ_RETRY,
            summary="read both arms' aggregated outcomes",
        )

    async def _maybe_ramp(self, challenger_calls: int) -> None:
        """The next ramp step once the current one has seen its calls (and its guardrails held)."""
        state, steps = self._state, self._input.steps
        if state.step + 1 >= len(steps):
            return
        # The ramp's arms are read since the current step took effect: these are the step's own calls.
        if challenger_calls < self._input.calls_per_step:
            return
        state.step += 1
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
                key=f"{self._prefix()}/share-{state.step}",
                # This test's own randomisation, and a lease the routers honour.
                salt=self._prefix(),
                expires_at=workflow.now() + self._input.lease,
            ),
            f"route {share:.0%} to {self._input.challenger}",
        )
        # The sample ratio is checked on the units routed since the step took effect.
        state.step_since = workflow.now() + self._input.propagation_delay
        assert self._status is not None
        self._status.share = share
        self._refresh()

    async def _restore(self, decision: ABDecision, reason: str) -> ABTestResult:
        state = self._state
        if state.incumbent is not None:
            await self._change(
                restore_model_incumbent,
                RestoreIncumbent(
                    slot=self._input.slot,
                    incumbent=state.incumbent,
                    key=f"{self._prefix()}/restore",
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
        return paused_so_far(self._state, workflow.now())

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
        self._status.arms = [arm_view(a) for a in stats]
        self._status.statistic = (
            "paused: guardrails only"
            if self._state.paused
            else "ramping: guardrails only until the final share"
        )
        self._refresh()

    def on_approvals_changed(self) -> None:
        self._refresh()

    def _show(self, stats: list[ArmStats], result: SequentialResult | GroupSequentialResult) -> None:
        assert self._status is not None
        show_result(self._status, stats, result)
        self._refresh()

    def _refresh(self) -> None:
        if self._status is not None:
            self._status.paused, self._status.periods = self._state.paused, self._state.evaluations
            workflow.set_current_details(current_details(self._status))

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

    def _prefix(self) -> str:
        return _change_prefix()


def _root_cause(error: BaseException) -> str:
    """The innermost message (an activity's own error, not "Activity task failed")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error)


def _change_prefix() -> str:
    """Keys of this test's routing changes: the same in every run of one test (continue-as-new keeps the
    first run id), new for a later test of the same slot and challenger (same workflow id); hashed, so
    long slot names still fit the registry's 255 characters."""
    info = workflow.info()
    digest = hashlib.sha256(f"{info.workflow_id}/{info.first_execution_run_id}".encode()).hexdigest()
    return f"abtest-{digest[:24]}"
