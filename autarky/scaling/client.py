"""Scalers from the client side (`AutarkyClient.scale`, `.scalers`, `.scale_operations`; `autarky scale`):
ask a resource's scaler for a capacity, show every scaler, read a scaler's recent operations."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ResourceRef, ScalingPolicy
from autarky.scaling.scalers import configured, request_scale, resolve
from autarky.scaling.types import ScaleOperation, ScaleRequest, ScalerStatus

# A scaler answers queries at once; one whose worker is gone must not hold `scalers()` for long.
SCALER_QUERY_TIMEOUT = timedelta(seconds=5)
RUNNING_SCALERS = f'{sa.KIND.name} = "scaler" AND ExecutionStatus = "Running"'


class ScaleRefused(Exception):
    """A resource's scaler refused a scale request (out of bounds, cooling down, busy…);
    str(error) is the scaler's reason, `resource` the resource's id (e.g. `aws-asg/web`)."""

    def __init__(self, message: str, *, resource: str) -> None:
        super().__init__(message)
        self.message = message
        self.resource = resource


@dataclass
class ScalerSummary:
    """One scaler as `scalers` sees it.

    `status` is None when no scaler runs for the resource yet (it starts on the first request; `policy`
    then tells its bounds) or when the running one did not answer (`problem` says why). `policy` is None
    for a running scaler of a resource this process's configuration does not name (e.g. another host's
    pool): its status carries its bounds."""

    resource: ResourceRef
    running: bool
    status: ScalerStatus | None = None
    policy: ScalingPolicy | None = None
    problem: str = ""

    @property
    def workflow_id(self) -> str:
        return self.resource.workflow_id


async def scale(
    client: Client,
    settings: AutarkySettings,
    resource: str,
    desired: int,
    *,
    reason: str,
    requested_by: str,
    queue: bool = False,
) -> ScaleOperation:
    """Ask `resource`'s scaler (started if it does not run yet) for `desired` capacity and wait for the
    operation's end; `AutarkyClient.scale` tells the rest."""
    ref, policy = resolve(settings, resource)
    request = ScaleRequest(
        desired=desired,
        reason=reason,
        requested_by=requested_by,
        if_cooling="queue" if queue else "reject",
    )
    try:
        return await request_scale(client, settings, ref, policy, request)
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        message = cause.message if isinstance(cause, FailureError) and cause.message else str(error)
        raise ScaleRefused(message, resource=ref.id) from error


async def scalers(client: Client, settings: AutarkySettings) -> list[ScalerSummary]:
    """Every configured resource's scaler (running or not started yet), then any other running one
    (found by AutarkyKind="scaler"), e.g. another host's pool."""
    policies = configured(settings)
    refs = [ResourceRef.parse(resource_id) for resource_id in policies]
    summaries = list(await asyncio.gather(*(_configured_scaler(client, r, policies[r.id]) for r in refs)))
    known = {r.workflow_id for r in refs}
    others: list[ResourceRef] = []
    async for execution in client.list_workflows(RUNNING_SCALERS):
        if execution.id in known:
            continue
        try:
            others.append(ResourceRef.parse(execution.id))
        except ValueError:
            continue  # not a scaler's id: not ours to show
        known.add(execution.id)
    for summary in await asyncio.gather(*(_running_scaler(client, r) for r in others)):
        if summary is not None:
            summaries.append(summary)
    return summaries


async def _configured_scaler(client: Client, resource: ResourceRef, policy: ScalingPolicy) -> ScalerSummary:
    handle = client.get_workflow_handle(resource.workflow_id)
    try:
        description = await handle.describe(rpc_timeout=SCALER_QUERY_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return ScalerSummary(resource, running=False, policy=policy)
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:  # ended: the next request starts one
        return ScalerSummary(resource, running=False, policy=policy)
    summary = await _running_scaler(client, resource)
    if summary is None:  # it ended between the two calls
        return ScalerSummary(resource, running=False, policy=policy)
    summary.policy = policy
    return summary


async def _running_scaler(client: Client, resource: ResourceRef) -> ScalerSummary | None:
    handle = client.get_workflow_handle(resource.workflow_id)
    try:
        status = await handle.query("status", result_type=ScalerStatus, rpc_timeout=SCALER_QUERY_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        if error.status == RPCStatusCode.UNAVAILABLE:  # no server: the caller says so, not this row
            raise
        return ScalerSummary(resource, running=True, problem=f"does not answer: {error.message}")
    except WorkflowQueryFailedError as error:
        return ScalerSummary(resource, running=True, problem=f"does not answer: {error.message}")
    return ScalerSummary(resource, running=True, status=status)


async def scale_operations(
    client: Client, settings: AutarkySettings, resource: str, count: int = 10
) -> list[ScaleOperation]:
    """The last `count` operations of `resource`'s scaler, oldest first (queued and running ones
    included); none when its scaler has not started. Raises `UnknownResource` like `scale`."""
    ref, _ = resolve(settings, resource)
    handle = client.get_workflow_handle(ref.workflow_id)
    try:
        operations = await handle.query("operations", result_type=list[ScaleOperation])
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return operations[-count:] if count > 0 else []
