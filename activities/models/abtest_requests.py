"""The autopilot's A/B test action: start the test of a model variant nobody has tested yet.

The planner proposes it for a `new_model_variant` finding; the test itself protects the traffic (a small
ramp, guardrails, the sequential test), so the action is low-risk. A test that already exists, or a slot
that refuses it, is "nothing to do".
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.models import abtest_start as abtests
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput


class ABTestRequestActivities:
    def __init__(self, settings: AutarkySettings) -> None:
        self.settings = settings

    @activity.defn(name="start_model_abtest")
    async def start_model_abtest(self, request: ActionRequest) -> ActionResult:
        try:
            input = ABTestInput(slot=request.params["slot"], challenger=request.params["variant"])
        except (KeyError, ValueError) as error:
            raise ApplicationError(
                f"an A/B test action needs params 'slot' and 'variant': {error}", non_retryable=True
            ) from error
        try:
            handle = await abtests.start(activity.client(), self.settings, input, rerun=False)
        except WorkflowAlreadyStartedError:
            return ActionResult(success=True, nothing_to_do=True, detail=f"{input.workflow_id()} is running")
        except abtests.ABTestRefused as error:
            return ActionResult(success=True, nothing_to_do=True, detail=f"not started: {error}")
        # What the test decides is its own outcome, not this action's.
        return ActionResult(success=True, improvement_measured=False, detail=f"started {handle.id}")
