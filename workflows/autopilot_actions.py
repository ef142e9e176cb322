"""How AutopilotWorkflow's Execute stage runs one action: as the activity or child workflow its catalogue
entry names (autarky/autopilot/actions.py), on the queue that reaches the host of its finding.

Since release 25 each action runs in its own `AutopilotActionWorkflow`, which reports the outcome to the
autopilot by signal: the autopilot can continue-as-new while actions run, so a long action never holds a
critical one back. What an outcome teaches stays in the autopilot.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout
from temporalio.workflow import ActivityConfig

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.actions import ACTIONS, ActionSpec, QueueRole, Runner
    from autarky.autopilot.details import on_host
    from autarky.autopilot.fleet import ACTION_FINISHED, ActionOutcome, ActionRunInput
    from autarky.autopilot.types import ActionRecord, ActionStatus
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


async def carry_out(
    record: ActionRecord, heartbeat_timeout: timedelta, control_queue: str, owner_id: str
) -> ActionResult:
    """Run the action; `owner_id` (the autopilot's workflow id) names a child workflow action's id."""
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
            options["heartbeat_timeout"] = heartbeat_timeout
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
        id=f"{owner_id}-{record.action_id}",
        execution_timeout=spec.timeout,
        static_summary=f"{candidate.action_type}{on_host(candidate.host)} for the autopilot "
        f"({record.action_id})",
    )


async def run_to_outcome(
    record: ActionRecord, heartbeat_timeout: timedelta, control_queue: str, owner_id: str
) -> tuple[ActionOutcome, ActionResult | None]:
    """Carry the action out and say what happened; a failed activity or child is an outcome, not an error
    (any other exception is a bug and fails the workflow task)."""
    host = record.decision.candidate.host
    result: ActionResult | None = None
    try:
        result = await carry_out(record, heartbeat_timeout, control_queue, owner_id)
    except (ActivityError, ChildWorkflowError) as error:
        outcome = ActionOutcome(
            action_id=record.action_id,
            status=ActionStatus.FAILED,
            improvement=0.0,
            error=str(error.cause or error),
            finished_at=workflow.now(),
        )
        cause = error.cause
        if isinstance(cause, TemporalTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
            # Nobody on the host took it (the host went away): not run, so it says nothing of the action.
            outcome.status = ActionStatus.NOT_DELIVERED
            outcome.error = f"no worker{on_host(host)} took it in time; not run"
        return outcome, None
    status = ActionStatus.SUCCEEDED if result.success else ActionStatus.FAILED
    if result.nothing_to_do:
        status = ActionStatus.NOTHING_TO_DO
    outcome = ActionOutcome(
        action_id=record.action_id,
        status=status,
        improvement=result.improvement,
        detail=result.detail,
        improvement_measured=result.improvement_measured,
        finished_at=workflow.now(),
    )
    return outcome, result


@workflow.defn(name="AutopilotActionWorkflow")
class AutopilotActionWorkflow:
    """One autopilot action; its outcome goes to the autopilot's current run by signal."""

    @workflow.run
    async def run(self, input: ActionRunInput) -> ActionOutcome:
        candidate = input.record.decision.candidate
        workflow.upsert_memo(
            {"action": candidate.action_type, "host": candidate.host or "", "reason": candidate.reason}
        )
        outcome, _ = await run_to_outcome(
            input.record, input.heartbeat_timeout, input.control_task_queue, input.autopilot_id
        )
        outcome.record = input.record
        try:
            await workflow.get_external_workflow_handle(input.autopilot_id).signal(ACTION_FINISHED, outcome)
        except FailureError as error:  # the autopilot is gone: the outcome stays this workflow's result
            workflow.logger.warning("could not report %s to the autopilot: %s", input.record.action_id, error)
        return outcome
