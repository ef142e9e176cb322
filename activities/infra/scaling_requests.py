"""The autopilot's scaling action: hand a planned change to the resource's `ScalerWorkflow`.

The autopilot decides *that* a resource should change (autarky.scaling.policy, through the decision
engine); the scaler decides *whether it may now* (bounds, cooldown, blast radius) and carries it out as a
saga. A refusal for cooldown or a busy scaler is "nothing to do" (it teaches nothing); a compensated or
rejected change is a failure.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

from activities.infra.task_queues import describe_activity_queue
from activities.infra.worker_pool import heartbeating
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.hosts import host_queue
from autarky.core.settings import AutarkySettings
from autarky.scaling.effect import BACKLOG, BACKLOG_AGE, Effect, QueueLoad, judge_effect
from autarky.scaling.policy_types import ResourceKind, ResourceRef, ScalingPolicy
from autarky.scaling.pool_policy import DESIRED, RESOURCE
from autarky.scaling.scalers import UnknownResource, request_scale, resolve
from autarky.scaling.types import OperationStatus, ScaleOperation, ScaleRequest

# Judging a change ends this long before the activity's timeout, so a slow judgement never fails a change
# that succeeded (a retry would get the same operation back and wait again).
JUDGE_MARGIN = timedelta(seconds=30)


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
        if operation.status == OperationStatus.SUCCEEDED and resource.kind == ResourceKind.LOCAL_POOL:
            async with heartbeating():
                effect = await self._effect(resource, policy, operation, request)
            if effect is not None:  # the decision engine learns what the change achieved
                return ActionResult(
                    success=effect.helped,
                    improvement=effect.improvement or 0.0,
                    improvement_measured=effect.improvement is not None,
                    detail=f"{detail}; {effect.detail}",
                )
        return ActionResult(
            success=operation.status == OperationStatus.SUCCEEDED, improvement_measured=False, detail=detail
        )

    async def _effect(
        self, resource: ResourceRef, policy: ScalingPolicy, operation: ScaleOperation, request: ActionRequest
    ) -> Effect | None:
        """The pool's queue a warm-up (and the backlog's age limit) after the change, against before it."""
        try:
            before = QueueLoad(
                backlog=int(request.params[BACKLOG]), backlog_age_seconds=float(request.params[BACKLOG_AGE])
            )
        except (KeyError, ValueError):
            return None  # planned without the pool's load (an older watcher): nothing to compare
        if operation.previous is None:
            return None
        settle = policy.warmup + policy.backlog_age_limit
        info = activity.info()
        if info.start_to_close_timeout is not None:  # the saga took long: judge only within this attempt
            left = info.started_time + info.start_to_close_timeout - datetime.now(UTC) - JUDGE_MARGIN
            if settle > left:
                activity.logger.info("no time left to judge the change (%s needed, %s left)", settle, left)
                return None
        await asyncio.sleep(settle.total_seconds())
        try:
            stats = await describe_activity_queue(
                activity.client(), host_queue(self.settings.pool_task_queue, resource.name)
            )
        except RPCError as error:
            activity.logger.warning("could not read the pool's queue to judge the change: %s", error)
            return None
        after = QueueLoad(backlog=stats.backlog, backlog_age_seconds=stats.backlog_age_seconds)
        return judge_effect(policy, operation.previous, operation.target, before, after)
