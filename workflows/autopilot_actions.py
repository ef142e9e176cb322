"""How AutopilotWorkflow's Execute stage runs one action: as the activity or child workflow its catalogue
entry names (autarky/autopilot/actions.py), on the queue that reaches the host of its finding.

A helper of the workflow (none is defined here: one workflow file per process); what an outcome
teaches stays in the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.actions import ACTIONS, ActionSpec, QueueRole, Runner
    from autarky.autopilot.details import on_host
    from autarky.autopilot.settings import AutopilotSettings
    from autarky.autopilot.types import ActionRecord
    from autarky.core.actions import ActionRequest, ActionResult
    from autarky.core.hosts import host_queue
    from workflows.autopilot_reads import HOST_PICKUP_TIMEOUT

ACTION_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))


def task_queue_for(spec: ActionSpec, host: str | None, control_queue: str) -> str:
    own = workflow.info().task_queue
    if host is None:  # not a host's (a shared finding): the plain queues
        return control_queue if spec.queue == QueueRole.CONTROL else own
    if spec.queue == QueueRole.HOST:
        return host_queue(own, host)
    if spec.queue == QueueRole.CONTROL:
        return host_queue(control_queue, host)
    return own


async def carry_out(record: ActionRecord, settings: AutopilotSettings, control_queue: str) -> ActionResult:
    candidate = record.decision.candidate
    spec = ACTIONS[candidate.action_type]
    request = ActionRequest(
        action_id=record.action_id,
        action_type=candidate.action_type,
        params=candidate.params,
        reason=candidate.reason,
        host=candidate.host,
    )
    task_queue = task_queue_for(spec, candidate.host, control_queue)
    if spec.runner == Runner.ACTIVITY:
        options = ActivityConfig()
        if spec.heartbeats:
            options["heartbeat_timeout"] = settings.action_heartbeat_timeout
        if task_queue != workflow.info().task_queue:
            options["schedule_to_start_timeout"] = HOST_PICKUP_TIMEOUT * 3  # the host may be gone
        return await workflow.execute_activity(
            spec.name,
            request,
            result_type=ActionResult,
            task_queue=task_queue,
            start_to_close_timeout=spec.timeout,
            # Bounded overall, so an action whose queue nobody serves cannot hold the loop forever.
            schedule_to_close_timeout=spec.timeout * (ACTION_RETRY.maximum_attempts + 1),
            retry_policy=ACTION_RETRY,
            summary=f"{record.action_id} {candidate.action_type}{on_host(candidate.host)}: "
            f"{candidate.reason}"[:200],
            **options,
        )
    return await workflow.execute_child_workflow(
        spec.name,
        spec.child_input(request) if spec.child_input else request,
        result_type=ActionResult,
        task_queue=task_queue,
        id=f"{workflow.info().workflow_id}-{record.action_id}",
        execution_timeout=spec.timeout,
        static_summary=f"{candidate.action_type}{on_host(candidate.host)} for the autopilot "
        f"({record.action_id})",
    )
