"""Which resources have a scaler, the input each `ScalerWorkflow` starts with, and how to reach it.

One function (`request_scale`) sends a request to a resource's scaler, starting the scaler first when it
does not run yet (update-with-start), so the CLI, the Python client (autarky.scaling.client) and the
autopilot's action (activities/infra/scaling_requests.py) all take the same path.
"""

from __future__ import annotations

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from autarky.core import search_attributes as sa
from autarky.core.hosts import host_queue
from autarky.core.settings import AutarkySettings
from autarky.scaling.policy_types import ResourceKind, ResourceRef, ScalingPolicy
from autarky.scaling.types import ScaleOperation, ScaleRequest, ScalerInput

SCALER_WORKFLOW = "ScalerWorkflow"


class UnknownResource(LookupError):
    """No scaler is configured for this resource."""


def local_pool(settings: AutarkySettings, host_id: str | None = None) -> ResourceRef:
    return ResourceRef(kind=ResourceKind.LOCAL_POOL, name=host_id or settings.host_id)


def configured(settings: AutarkySettings) -> dict[str, ScalingPolicy]:
    """Every resource with a scaler, by id: this host's local pool and the configured AWS resources."""
    resources = {local_pool(settings).id: settings.autopilot.pool_policy}
    for entry in settings.scaling.resources:
        resources[ResourceRef.parse(entry.resource).id] = entry.policy
    return resources


def resolve(settings: AutarkySettings, text: str) -> tuple[ResourceRef, ScalingPolicy]:
    """The resource a person named (`local-pool` is this host's pool), with its policy."""
    try:
        resource = ResourceRef.parse(text, local_host=settings.host_id)
    except ValueError as error:
        raise UnknownResource(str(error)) from None
    policies = configured(settings)
    if resource.kind == ResourceKind.LOCAL_POOL:
        return resource, settings.autopilot.pool_policy  # every host's pool follows the same policy
    if resource.id not in policies:
        known = ", ".join(sorted(policies))
        raise UnknownResource(
            f"no scaler is configured for {resource.id} (configured: {known}); add it to "
            "[[scaling.resources]] in autarky.toml"
        )
    return resource, policies[resource.id]


def scaler_input(settings: AutarkySettings, resource: ResourceRef, policy: ScalingPolicy) -> ScalerInput:
    # The local pool is resized by the process owning it (its host's control queue); AWS from anywhere.
    if resource.kind == ResourceKind.LOCAL_POOL:
        queue = host_queue(settings.control_task_queue, resource.name)
    else:
        queue = settings.task_queue
    scaling = settings.scaling
    return ScalerInput(
        resource=resource,
        policy=policy,
        provider_task_queue=queue,
        health_timeout=scaling.health_timeout,
        health_poll_interval=scaling.health_poll_interval,
        reconcile_interval=scaling.reconcile_interval,
        approval_timeout=scaling.approval_timeout,
    )


async def request_scale(
    client: Client,
    settings: AutarkySettings,
    resource: ResourceRef,
    policy: ScalingPolicy,
    request: ScaleRequest,
) -> ScaleOperation:
    """Send `request` to the resource's scaler (started if needed) and wait for the operation's end.

    A refused request (out of bounds, cooling down, busy) raises `WorkflowUpdateFailedError` whose
    cause carries the scaler's reason."""
    start = WithStartWorkflowOperation(
        SCALER_WORKFLOW,
        scaler_input(settings, resource, policy),
        id=resource.workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, "scaler")]),
        static_summary=f"scaler of {resource.id}: cooldown, history, sagas",
    )
    return await client.execute_update_with_start_workflow(
        "scale", request, start_workflow_operation=start, result_type=ScaleOperation
    )


async def push_policies(client: Client, settings: AutarkySettings) -> list[str]:
    """Send the configured policy to every configured resource's running scaler (a scaler keeps the
    policy it started with otherwise); returns the ids of the scalers that took it."""
    updated = []
    for resource_id, policy in configured(settings).items():
        handle = client.get_workflow_handle(ResourceRef.parse(resource_id).workflow_id)
        try:
            await handle.execute_update("set_policy", policy, result_type=ScalingPolicy)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # not running yet: it starts with the policy
                raise
        else:
            updated.append(resource_id)
    return updated
