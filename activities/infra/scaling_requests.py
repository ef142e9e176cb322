"""The autopilot's scaling action: hand a planned change to the resource's `ScalerWorkflow`.

The autopilot decides *that* a resource should change (autarky.scaling.policy, through the decision
engine); the scaler decides *whether it may now* (bounds, cooldown, blast radius) and carries it out as a
saga. A refusal for cooldown or a busy scaler is "nothing to do" (it teaches nothing); a compensated or
rejected change is a failure.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, FailureError

from activities.infra.worker_pool import heartbeating
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.scaling.pool_policy import DESIRED, RESOURCE
from autarky.scaling.scalers import UnknownResource, request_scale, resolve
from autarky.scaling.types import OperationStatus, ScaleRequest


class ScalingRequestActivities:
    def __init__(self, settings: AutarkySettings) -> None:
        self.settings = settings

    @activity.defn(name="request_scaling")
    async def request_scaling(self, request: ActionRequest) -> ActionResult:
        try:
            resource, policy = resolve(self.settings, request.params[RESOURCE])
            desired = int(request.params[DESIRED])
        except (KeyError, ValueError, UnknownResource) as error:
            raise ApplicationError(
                f"a scaling action needs params {RESOURCE!r} (a configured resource) and {DESIRED!r} "
                f"(an integer): {error}",
                non_retryable=True,
            ) from error
        scale = ScaleRequest(
            desired=desired,
            reason=request.reason or "planned by the autopilot",
            requested_by=f"autopilot ({request.action_id})",
            request_id=request.action_id,  # a retried activity gets the same operation back
        )
        async with heartbeating():
            try:
                operation = await request_scale(activity.client(), self.settings, resource, policy, scale)
            except WorkflowUpdateFailedError as error:
                cause = error.cause
                why = cause.message if isinstance(cause, FailureError) and cause.message else str(error)
                return ActionResult(success=True, nothing_to_do=True, detail=f"scaler refused: {why}")
        detail = f"{operation.operation_id}: {operation.status.value}: {operation.detail}"
        if operation.status in (OperationStatus.UNCHANGED, OperationStatus.REFUSED):
            # Nothing changed: no evidence about what scaling does (a refusal is the provider's answer).
            return ActionResult(success=True, nothing_to_do=True, detail=detail)
        # The effect on load is measured by the next rounds' findings, not here.
        return ActionResult(
            success=operation.status == OperationStatus.SUCCEEDED, improvement_measured=False, detail=detail
        )
