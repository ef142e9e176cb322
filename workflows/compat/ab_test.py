"""ModelABTestWorkflow's patches: what it keeps only so that tests begun under older releases replay.

See docs/patches.md for the lifecycle. `abtest-round-2` (release 27) chooses round 2's path when a test
begins: guardrails tested against the incumbent on a recent window, the sample-ratio check, errors counted
in the metric, the group-sequential design, the split as a lease, a restore whatever ends the test. A test
begun on the old path (round 1, below) keeps it across continue-as-new until it ends (`ABTestState.round`),
so the old path can be deleted once every test begun before release 27 has ended.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from statistics import NormalDist
from typing import Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from autarky.core.approval import ApprovalRequest, ApprovalState
    from autarky.models.ab_convert import arm_summary
    from autarky.models.ab_types import ABDecision, ABTestInput, ABTestResult, ABTestState, ABTestStatus
    from autarky.models.sequential import ArmSummary, SequentialResult
    from autarky.models.types import (
        ArmStats,
        EvaluateBatch,
        Promote,
        SlotInfo,
        evaluate_offline_batch,
        promote_model_variant,
    )


class ModelABTestWorkflow(Protocol):
    """What round 1 uses of the workflow (workflows/ab_test.py), which imports this module."""

    _state: ABTestState
    _status: ABTestStatus | None

    @property
    def _drives_offline(self) -> bool: ...
    def _prefix(self) -> str: ...
    def _paused_so_far(self) -> timedelta: ...
    def _show_arms(self, stats: list[ArmStats]) -> None: ...
    def _show(self, stats: list[ArmStats], result: SequentialResult) -> None: ...
    def _finish(self, decision: ABDecision, reason: str) -> ABTestResult: ...
    def pending(self) -> list[ApprovalRequest]: ...
    def request_approval(
        self, approval_id: str, subject: str, why: str, timeout: timedelta, risk: float = 0.0
    ) -> ApprovalRequest: ...
    async def wait_for_decision(self, approval_id: str) -> ApprovalRequest: ...
    async def _wait_period(self) -> None: ...
    async def _stats(self) -> list[ArmStats]: ...
    async def _maybe_ramp(self, challenger_calls: int) -> None: ...
    async def _restore(self, decision: ABDecision, reason: str) -> ABTestResult: ...
    async def _change(
        self, change: Callable[..., Awaitable[SlotInfo]], arg: object, summary: str
    ) -> SlotInfo: ...


ROUND_2 = "abtest-round-2"
READ_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))


def round_2() -> bool:
    """When a test begins, before its first command: does it take round 2's path?"""
    return workflow.patched(ROUND_2)


async def run_round_1(wf: ModelABTestWorkflow, input: ABTestInput) -> ABTestResult:
    """Release 26's loop, for tests begun before release 27 (delete in release 29, see docs/patches.md)."""
    state = wf._state
    assert state.started_at is not None
    for _ in range(input.evaluations_per_run):
        if not state.paused and state.abort is None and wf._drives_offline:
            await _evaluate_batch(wf, input)
        await wf._wait_period()
        if state.abort is not None:
            return await wf._restore("aborted", f"aborted: {state.abort}")
        stats = await wf._stats()
        breach = _guardrail_breach(input, stats[1])
        if breach is not None:
            return await wf._restore("rolled_back", f"guardrail breached: {breach}")
        if state.paused or state.test_since is None:  # paused or still ramping: guardrails only
            wf._show_arms(stats)
            if not state.paused:
                await wf._maybe_ramp(stats[1].calls)
            continue
        result = _evaluate(input, arm_summary(stats[0]), arm_summary(stats[1]))
        wf._show(stats, result)
        if state.abort is not None:  # arrived while the statistics were read
            return await wf._restore("aborted", f"aborted: {state.abort}")
        if result.decision == "better":
            return await _promote(wf, input, result.text())
        if result.decision in ("not_better", "worse"):
            return await wf._restore("kept", f"the challenger is not better: {result.text()}")
        if min(stats[0].metric.n, stats[1].metric.n) >= input.max_samples:
            return await wf._restore("kept", f"no decision within {input.max_samples} samples per arm")
        if workflow.now() - state.started_at - wf._paused_so_far() >= input.max_duration:
            return await wf._restore("kept", f"no improvement within {input.max_duration}")
    if state.abort is not None:
        return await wf._restore("aborted", f"aborted: {state.abort}")
    workflow.continue_as_new(input.model_copy(update={"state": state}))


async def _evaluate_batch(wf: ModelABTestWorkflow, input: ABTestInput) -> None:
    """Round 1 drives an offline slot with a batch of labelled examples through the split each period."""
    wf._state.batch += 1
    await workflow.execute_activity(
        evaluate_offline_batch,
        EvaluateBatch(slot=input.slot, size=input.batch_size, batch=wf._state.batch, run=wf._prefix()),
        task_queue=input.activity_task_queue,
        start_to_close_timeout=timedelta(minutes=2),
        retry_policy=READ_RETRY,
        summary=f"evaluate batch {wf._state.batch} of labelled examples",
    )


def _guardrail_breach(input: ABTestInput, challenger: ArmStats) -> str | None:
    """Round 1: the challenger's cumulative rates against absolute limits, no margin."""
    rails = input.guardrails
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


async def _promote(wf: ModelABTestWorkflow, input: ABTestInput, why: str) -> ABTestResult:
    """Round 1: approval only when `require_approval`; nothing is checked while it waits."""
    if input.require_approval:
        approval_id = f"promote-{input.slot}-{input.challenger}"
        wf.request_approval(
            approval_id,
            subject=f"promote {input.challenger} in {input.slot}",
            why=why,
            timeout=input.approval_timeout,
            risk=0.5,
        )
        request = wf.pending()[-1]
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: request.state != ApprovalState.PENDING or wf._state.abort is not None,
                timeout=max(request.expires_at - workflow.now(), timedelta(0)),
            )
        if wf._state.abort is not None:
            return await wf._restore("aborted", f"aborted while awaiting approval: {wf._state.abort}")
        decision = await wf.wait_for_decision(approval_id)
        if decision.state != ApprovalState.APPROVED:
            return await wf._restore("kept", f"promotion {decision.state.value}: {decision.decision_reason}")
    await wf._change(
        promote_model_variant,
        Promote(slot=input.slot, variant=input.challenger, key=f"{wf._prefix()}/promote"),
        f"promote {input.challenger}",
    )
    assert wf._status is not None
    wf._status.share = 1.0
    return wf._finish("promoted", f"promoted: {why}")


def _evaluate(input: ABTestInput, control: ArmSummary, treatment: ArmSummary) -> SequentialResult:
    """Release 26's always-valid test, frozen: the relative difference with the delta method's variance,
    "better" only once the estimate reaches the minimum (release 27's `evaluate` tests the log ratio and
    decides otherwise, which would change a replayed round-1 test's commands)."""
    alpha, minimum, samples = input.alpha, input.min_improvement, control.n + treatment.n
    unknown = SequentialResult(math.nan, -math.inf, math.inf, "continue", samples)
    if control.n < 2 or treatment.n < 2 or control.mean == 0:
        return unknown
    sign = 1.0 if input.better_direction == "higher" else -1.0
    base = abs(control.mean)
    effect = sign * (treatment.mean - control.mean) / base
    ratio = treatment.mean / control.mean
    variance = (treatment.variance / treatment.n + ratio * ratio * control.variance / control.n) / base / base
    if not (math.isfinite(effect) and math.isfinite(variance)):
        return unknown
    w = _half_width(variance, alpha, minimum)
    lower, upper = effect - w, effect + w
    if min(control.n, treatment.n) < 100:
        decision = "continue"
    elif upper < 0:
        decision = "worse"
    elif lower > 0 and effect >= minimum:
        decision = "better"
    elif upper < minimum:
        decision = "not_better"
    else:
        decision = "continue"
    return SequentialResult(effect, lower, upper, decision, samples)  # type: ignore[arg-type]


def _half_width(variance: float, alpha: float, minimum: float) -> float:
    if variance <= 0:
        return 0.0
    normal = NormalDist()
    a = 2 * math.log(1 / alpha)
    x = a
    for _ in range(50):
        x = a + math.log1p(x)
    s_fix = minimum / (normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(0.8))
    tau2 = x * s_fix * s_fix
    if math.isinf(tau2 / variance):
        return 0.0
    return math.sqrt(
        variance * (variance + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log1p(tau2 / variance))
    )
