"""The autopilot's A/B test action: start the test of a model variant nobody has tested yet.

The planner proposes it for a `new_model_variant` finding; the test itself protects the traffic (a small
ramp, guardrails, the sequential test), so the action is low-risk. A test that already exists, or a slot
that refuses it, is "nothing to do".

Its metric is one the slot records, so the test can decide: "quality" when the slot's outcomes carry one,
else "valid" (the LLM slot's quality signal, its validation pass rate: activities/models/routed.py); a slot
with neither (no outcomes yet) is not tested yet.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.models import abtest_start as abtests
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput, Metric

AUTOPILOT_METRICS: tuple[Metric, ...] = ("quality", "valid")  # in order of preference


class ABTestRequestActivities:
    def __init__(self, settings: AutarkySettings) -> None:
        self.settings = settings

    @activity.defn(name="start_model_abtest")
    async def start_model_abtest(self, request: ActionRequest) -> ActionResult:
        try:
            ab = self.settings.abtest  # how the autopilot's tests run (`[abtest]`)
            input = ABTestInput(
                slot=request.params["slot"],
                challenger=request.params["variant"],
                share=ab.share,
                ramp=[step for step in ab.ramp if step < ab.share],
                calls_per_step=ab.calls_per_step,
                design=ab.design,  # type: ignore[arg-type]
                min_improvement=ab.min_improvement,
                evaluation_interval=ab.evaluation_interval,
                min_duration=ab.min_duration,
                max_duration=ab.max_duration,
                approval_risk=ab.approval_risk,
            )
        except (KeyError, ValueError) as error:
            raise ApplicationError(
                f"an A/B test action needs params 'slot' and 'variant': {error}", non_retryable=True
            ) from error
        try:
            recorded = await asyncio.to_thread(abtests.recorded_metrics, self.settings, input.slot)
            metric = next((m for m in AUTOPILOT_METRICS if m in recorded), None)
            if metric is None:
                raise abtests.ABTestRefused(
                    f"slot {input.slot!r} records {', '.join(recorded) or 'no outcomes yet'}: "
                    f"none of {', '.join(AUTOPILOT_METRICS)} to test on"
                )
            input = input.model_copy(update={"metric": metric})
            handle = await abtests.start(activity.client(), self.settings, input, rerun=False)
        except WorkflowAlreadyStartedError:
            return ActionResult(success=True, nothing_to_do=True, detail=f"{input.workflow_id()} is running")
        except abtests.ABTestRefused as error:
            return ActionResult(success=True, nothing_to_do=True, detail=f"not started: {error}")
        # What the test decides is its own outcome, not this action's.
        return ActionResult(success=True, improvement_measured=False, detail=f"started {handle.id}")
