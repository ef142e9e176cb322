"""`ScalerWorkflow`: one long-lived workflow per scalable resource (ID `scaler/<kind>/<name>`).

It owns the resource's cooldown clock and its history of changes. Scale requests arrive by the update
`scale` (validated: out of bounds, or inside the cooldown with `if_cooling="reject"`, is refused with the
reason; `if_cooling="queue"` waits for the cooldown to end, and the update's result says so when it runs).

Each change is a saga: record the current capacity → (approval beyond the blast radius) → apply the new
one → wait until healthy → verify it holds; on failure or cancellation, compensate back to the recorded
capacity (retried until done) and record why. Provider activities are idempotent by a key derived from
the workflow id and the operation, so a worker killed mid-saga resumes it without doing anything twice.

Between operations the scaler reconciles: it reads the resource every `reconcile_interval` and, for the
local pool, replaces members that died (a pool member killed by hand is noticed and restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.approval import ApprovalGate
from workflows.compat import scaling as compat

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.scaling.policy import approval_needed, cooldown_remaining
    from autarky.scaling.policy_round1 import approval_needed as approval_needed_round1
    from autarky.scaling.policy_types import ResourceKind, ScalingPolicy
    from autarky.scaling.types import (
        CapacityReading,
        OperationStatus,
        ReadCapacityInput,
        SagaStep,
        ScaleOperation,
        ScaleRequest,
        ScalerInput,
        ScalerState,
        ScalerStatus,
        SetCapacityInput,
        read_capacity_aws,
        read_capacity_local_pool,
        set_capacity_aws,
        set_capacity_local_pool,
    )

KEPT_OPERATIONS = 30
# Each kind's provider: how to read its capacity and how to set it.
PROVIDER_ACTIVITIES = {
    ResourceKind.LOCAL_POOL: (read_capacity_local_pool, set_capacity_local_pool),
    ResourceKind.AWS_ASG: (read_capacity_aws, set_capacity_aws),
    ResourceKind.AWS_ECS: (read_capacity_aws, set_capacity_aws),
    ResourceKind.AWS_EC2: (read_capacity_aws, set_capacity_aws),
}
# Forward steps give up after a few attempts (the saga then compensates); compensation never gives up.
FORWARD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=0
)
SET_CAPACITY_TIMEOUT = timedelta(minutes=10)  # stopping pool members lets each drain for up to 30 s
PROVIDER_PICKUP = timedelta(minutes=1)
AWS_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
MAX_COMPENSATION_BACKOFF = timedelta(minutes=10)
WITHDRAWN = "autarky:withdrawn"


class HealthTimeout(Exception):
    """The new capacity did not become healthy in time."""


@workflow.defn(name="ScalerWorkflow")
class ScalerWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, input: ScalerInput) -> None:
        self._input = input
        self._state = input.state or ScalerState()
        self._init_approval_gate(list(input.approvals))
        self._current: ScaleOperation | None = None
        self._forward: asyncio.Task[None] | None = None
        self._cancel_reason: str | None = None
        self._iterations = 0
        self._wake = False

    @workflow.run
    async def run(self, input: ScalerInput) -> None:
        workflow.upsert_search_attributes([sa.KIND.value_set("scaler")])
        workflow.upsert_memo({"resource": input.resource.id})
        if self._state.capacity is None:
            await self._reconcile()
        self._refresh_details()
        while True:
            self._iterations += 1
            operation = self._next_runnable()
            if operation is not None:
                await self._run_operation(operation)
            elif self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    self._input.model_copy(update={"state": self._state, "approvals": self._approvals})
                )
            else:
                self._wake = False
                try:  # a new request wakes the loop, so its timer is recomputed (e.g. the cooldown's end)
                    await workflow.wait_condition(
                        lambda: self._wake or self._next_runnable() is not None,
                        timeout=self._wake_in(),
                    )
                except TimeoutError:
                    await self._reconcile()
            self._refresh_details()

    # ------------------------------------------------------------------ handlers

    @workflow.update(name="scale")
    async def scale(self, request: ScaleRequest) -> ScaleOperation:
        """Run (or queue) a change of capacity and return how it ended."""
        operation = self._existing(request.request_id)
        if operation is None:
            self._state.sequence += 1
            operation = ScaleOperation(
                operation_id=f"{workflow.info().workflow_id}/{self._state.sequence}",
                request=request,
                target=request.desired,
                queued_at=workflow.now(),
            )
            remaining = self._cooldown_remaining()
            if remaining > timedelta(0):
                operation.detail = f"queued until the cooldown ends in {remaining.total_seconds():.0f} s"
            self._keep(operation)
            self._wake = True
            self._refresh_details()
        await workflow.wait_condition(lambda: operation.finished)
        return operation

    @scale.validator
    def _validate_scale(self, request: ScaleRequest) -> None:
        if self._existing(request.request_id) is not None:
            return  # a retry of a request already taken: its result is returned
        policy = self._input.policy
        resource = self._input.resource.id
        if not policy.min_capacity <= request.desired <= policy.max_capacity:
            raise ValueError(
                f"{request.desired} is outside the bounds of {resource}: "
                f"{policy.min_capacity}–{policy.max_capacity}"
            )
        if request.if_cooling == "queue":
            return
        remaining = self._cooldown_remaining()
        if remaining > timedelta(0):
            raise ValueError(
                f"{resource} is cooling down: the last change was at "
                f"{self._state.last_event_at:%H:%M:%S} UTC and the cooldown is {policy.cooldown}, "
                f"so {remaining.total_seconds():.0f} s remain; ask again then, or queue the request "
                f"(--queue / if_cooling='queue')"
            )
        busy = self._current or next(iter(self._queued()), None)
        if busy is not None:
            raise ValueError(
                f"{resource} is busy with {busy.operation_id} (→ {busy.target}, {busy.status.value}); "
                "ask again when it is done, or queue the request"
            )

    @workflow.update(name="set_policy")
    def set_policy(self, policy: ScalingPolicy) -> ScalingPolicy:
        """New bounds, cooldown or thresholds (`autarky up` sends the configured policy); what runs keeps
        going, the next request is judged by the new policy."""
        self._input = self._input.model_copy(update={"policy": policy})
        self._refresh_details()
        return policy

    @workflow.signal(name="cancel_operation")
    def cancel_operation(self, reason: str) -> None:
        """Cancel the running operation: it compensates back to the capacity it started from."""
        if self._forward is not None and not self._forward.done():
            self._cancel_reason = reason or "cancelled by signal"
            self._forward.cancel()

    @workflow.query(name="status")
    def status(self) -> ScalerStatus:
        finished = [o for o in self._state.operations if o.finished]
        return ScalerStatus(
            resource=self._input.resource,
            capacity=self._state.capacity,
            healthy=self._state.healthy,
            min_capacity=self._input.policy.min_capacity,
            max_capacity=self._input.policy.max_capacity,
            cooldown_remaining_seconds=self._cooldown_remaining().total_seconds(),
            current=self._current,
            last=finished[-1] if finished else None,
            queued=len(self._queued()),
            pending_approvals=len(self.pending()),
            problem=self._state.last_problem,
        )

    @workflow.query(name="operations")
    def operations(self) -> list[ScaleOperation]:
        return list(self._state.operations)

    # ------------------------------------------------------------------ the saga

    async def _run_operation(self, operation: ScaleOperation) -> None:
        self._current = operation
        operation.status = OperationStatus.RUNNING
        operation.started_at = workflow.now()
        operation.detail = ""
        self._forward = asyncio.create_task(self._forward_steps(operation))
        try:
            await asyncio.shield(self._forward)
        except (ActivityError, HealthTimeout, asyncio.CancelledError) as error:
            workflow_cancelled = isinstance(error, asyncio.CancelledError) and self._cancel_reason is None
            if workflow_cancelled:
                # The whole workflow is being cancelled: stop the forward steps first, then compensate.
                self._forward.cancel()
                with contextlib.suppress(ActivityError, HealthTimeout, asyncio.CancelledError):
                    await self._forward
            why = self._why(error)
            if operation.finished:
                pass  # the forward steps ended (e.g. succeeded) in the same moment: nothing to undo
            elif operation.previous is None or operation.step == SagaStep.WAITING_APPROVAL:
                self._withdraw_approval(operation, why)
                self._finish(operation, OperationStatus.COMPENSATED, f"nothing changed: {why}")
            else:
                await self._compensate(operation, why)
            if workflow_cancelled:
                raise
        finally:
            self._forward = None
            self._cancel_reason = None
            self._current = None

    async def _forward_steps(self, operation: ScaleOperation) -> None:
        self._step(operation, SagaStep.RECORDING)
        before = await self._read_and_record()
        operation.previous = before.desired
        if operation.target == before.desired:
            self._finish(operation, OperationStatus.UNCHANGED, f"already at {before.desired}")
            return
        # A growth: round 1's rule, which no patch changed (it differs from round 2's from zero alone).
        why = approval_needed_round1(self._input.policy, before.desired, operation.target)
        if why is None and operation.target < before.desired:
            why = approval_needed(self._input.policy, before.desired, operation.target)
            if why is not None:
                compat.approve_scale_down()
        if why is not None and not await self._approved(operation, why):
            return
        self._step(operation, SagaStep.APPLYING)
        try:
            await self._set_capacity(operation.target, self._key(operation, "apply"), FORWARD_RETRY)
        except ActivityError as error:
            if not is_cancelled_exception(error):
                reading = await self._read_and_record()
                if reading.desired == operation.previous:  # refused before anything changed: no undo
                    self._finish(
                        operation, OperationStatus.REFUSED, f"refused, nothing changed: {self._why(error)}"
                    )
                    return
            raise
        if self._cancel_reason is not None:
            # The cancel arrived while the apply ran; the call finished (it had nothing to heartbeat) and
            # its result came back instead of the cancellation: undo it now.
            raise asyncio.CancelledError
        self._state.last_event_at = workflow.now()  # the cooldown runs from the change itself
        self._step(operation, SagaStep.WAITING_HEALTHY)
        await self._wait_healthy(operation.target, self._input.health_timeout)
        # Verify it holds: a member that dies right after start shows in a second reading.
        self._step(operation, SagaStep.VERIFYING)
        await workflow.sleep(self._input.health_poll_interval)
        after = await self._read_and_record()
        if after.healthy < operation.target:
            raise HealthTimeout(
                f"capacity did not hold: {after.healthy} of {operation.target} healthy after "
                f"{self._input.health_poll_interval} ({after.detail})"
            )
        self._finish(
            operation, OperationStatus.SUCCEEDED, f"{operation.previous} → {operation.target}, healthy"
        )

    async def _approved(self, operation: ScaleOperation, why: str) -> bool:
        self._step(operation, SagaStep.WAITING_APPROVAL)
        approval_id = f"scale-{_number(operation)}"
        self.request_approval(
            approval_id,
            subject=f"scale {self._input.resource.id} {operation.previous} → {operation.target}",
            why=f"{why}; requested by {operation.request.requested_by}: {operation.request.reason}",
            timeout=self._input.approval_timeout,
            risk=min(1.0, 0.5 + 0.1 * (operation.target - (operation.previous or 0))),
        )
        decision = await self.wait_for_decision(approval_id)
        if decision.state == ApprovalState.APPROVED:
            return True
        self._finish(
            operation,
            OperationStatus.REJECTED,
            f"{decision.state.value} by {decision.decided_by}: {decision.decision_reason}",
        )
        return False

    async def _compensate(self, operation: ScaleOperation, why: str) -> None:
        """Undo to the recorded capacity. A cancellation of the workflow meanwhile waits for the undo:
        a scaler never ends with its resource half changed."""
        self._step(operation, SagaStep.COMPENSATING)
        undo = asyncio.create_task(self._undo(operation, why))
        cancelled = False
        while not undo.done():
            try:
                await asyncio.shield(undo)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _undo(self, operation: ScaleOperation, why: str) -> None:
        previous = operation.previous
        assert previous is not None
        backoff = self._input.compensation_backoff
        attempt = 0
        while True:  # until done: each round retries what may pass; a refusal waits and tries again
            operation.detail = f"compensating to {previous}: {why}"
            self._refresh_details()
            try:
                await self._set_capacity(previous, self._key(operation, "compensate"), COMPENSATION_RETRY)
                break
            except ActivityError as error:
                attempt += 1
                workflow.logger.warning("compensation of %s failed: %s", operation.operation_id, error)
                operation.detail = (
                    f"compensating to {previous} ({why}): attempt {attempt} failed: {self._why(error)}; "
                    f"trying again in {backoff}"
                )
                self._refresh_details()
                await workflow.sleep(backoff)
                backoff = min(backoff * 2, MAX_COMPENSATION_BACKOFF)
        self._state.last_event_at = workflow.now()
        reached = previous
        with contextlib.suppress(ActivityError):  # the undo is done; a reading is only for the record
            reached = (await self._read_and_record()).desired  # what the resource says, not what was asked
        operation.reached = reached
        self._finish(operation, OperationStatus.COMPENSATED, f"back to {previous}: {why}")

    def _withdraw_approval(self, operation: ScaleOperation, why: str) -> None:
        """A request that ends while waiting for a person no longer needs their answer."""
        approval_id = f"scale-{_number(operation)}"
        for request in self.pending():
            if request.approval_id == approval_id:
                self._record_decision(request, ApprovalState.REJECTED, WITHDRAWN, f"withdrawn: {why}")

    async def _wait_healthy(self, target: int, timeout: timedelta) -> None:
        deadline = workflow.now() + timeout
        while True:
            reading = await self._read_and_record()
            if reading.desired == target and reading.running == target and reading.healthy >= target:
                return
            if workflow.now() >= deadline:
                raise HealthTimeout(
                    f"not healthy within {timeout}: {reading.healthy} of {target} healthy, "
                    f"{reading.running} running ({reading.detail})"
                )
            await workflow.sleep(self._input.health_poll_interval)

    async def _reconcile(self) -> None:
        """Read the resource; replace dead pool members. A failure here only waits for the next round."""
        try:
            await self._repair_if_needed()
        except ActivityError as error:  # e.g. the pool's host is gone, or AWS refuses: the scaler lives on
            self._state.last_problem = f"{workflow.now():%H:%M:%S} UTC: {self._why(error)}"
            workflow.logger.warning("reading %s failed: %s", self._input.resource.id, self._why(error))
        else:
            self._state.last_problem = None

    async def _repair_if_needed(self) -> None:
        reading = await self._read_and_record()
        if self._input.resource.kind == ResourceKind.LOCAL_POOL and reading.running < reading.desired:
            # A member died (killed, crashed): start its replacement; this is no change of capacity.
            self._state.repairs += 1
            key = self._digest(f"repair-{self._state.repairs}")
            workflow.logger.info(
                "replacing dead pool members: %s of %s running", reading.running, reading.desired
            )
            await self._set_capacity(reading.desired, key, FORWARD_RETRY)
            await self._read_and_record()

    # ------------------------------------------------------------------ activities

    async def _read_and_record(self) -> CapacityReading:
        read, _ = PROVIDER_ACTIVITIES[self._input.resource.kind]
        reading = await workflow.execute_activity(
            read,
            ReadCapacityInput(resource=self._input.resource),
            task_queue=self._input.provider_task_queue,
            start_to_close_timeout=self._input.read_timeout,
            # Bounded even when nobody serves the queue (the pool's host went away).
            schedule_to_close_timeout=self._input.read_timeout * FORWARD_RETRY.maximum_attempts,
            retry_policy=FORWARD_RETRY,
            summary=f"read the capacity of {self._input.resource.id}",
        )
        self._state.capacity = reading.desired
        self._state.healthy = reading.healthy
        return reading

    async def _set_capacity(self, desired: int, key: str, retry: RetryPolicy) -> CapacityReading:
        _, apply = PROVIDER_ACTIVITIES[self._input.resource.kind]
        return await workflow.execute_activity(
            apply,
            SetCapacityInput(resource=self._input.resource, desired=desired, idempotency_key=key),
            task_queue=self._input.provider_task_queue,
            start_to_close_timeout=SET_CAPACITY_TIMEOUT,
            retry_policy=retry,
            # A cancelled change finishes its call before the undo starts (no two resizes at once).
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"set {self._input.resource.id} to {desired}",
            **self._provider_options(),  # type: ignore[arg-type]
        )

    def _provider_options(self) -> dict[str, object]:
        if self._input.resource.kind != ResourceKind.LOCAL_POOL:
            # The AWS provider heartbeats every 5 s (activities/infra/aws_scaling.py): a lost worker is
            # noticed within 30 s instead of the call's 10-minute bound.
            return {"heartbeat_timeout": AWS_HEARTBEAT_TIMEOUT}
        # The pool's own host serves these: if it is gone, say so within a minute instead of waiting.
        return {"heartbeat_timeout": timedelta(minutes=1), "schedule_to_start_timeout": PROVIDER_PICKUP}

    # ------------------------------------------------------------------ bookkeeping

    def _next_runnable(self) -> ScaleOperation | None:
        queued = self._queued()
        if not queued or self._current is not None or self._cooldown_remaining() > timedelta(0):
            return None
        return queued[0]

    def _queued(self) -> list[ScaleOperation]:
        return [o for o in self._state.operations if o.status == OperationStatus.QUEUED]

    def _existing(self, request_id: str | None) -> ScaleOperation | None:
        if request_id is None:
            return None
        return next((o for o in self._state.operations if o.request.request_id == request_id), None)

    def _keep(self, operation: ScaleOperation) -> None:
        self._state.operations.append(operation)
        finished = [o for o in self._state.operations if o.finished]
        if len(finished) > KEPT_OPERATIONS:
            drop = {o.operation_id for o in finished[: len(finished) - KEPT_OPERATIONS]}
            self._state.operations = [o for o in self._state.operations if o.operation_id not in drop]

    def _cooldown_remaining(self) -> timedelta:
        return cooldown_remaining(self._input.policy, self._state.last_event_at, workflow.now())

    def _wake_in(self) -> timedelta:
        """The next reconcile, or the end of the cooldown when something waits for it."""
        remaining = self._cooldown_remaining()
        if self._queued() and timedelta(0) < remaining < self._input.reconcile_interval:
            return remaining
        return self._input.reconcile_interval

    def _should_continue_as_new(self) -> bool:
        idle = self._current is None and not self._queued()
        long = self._iterations >= self._input.iterations_per_run or (
            workflow.info().is_continue_as_new_suggested()
        )
        return idle and long

    def _key(self, operation: ScaleOperation, step: str) -> str:
        return self._digest(f"{_number(operation)}-{step}")

    def _digest(self, text: str) -> str:
        # Within the 64 characters providers allow (EC2's ClientToken), unique per step and per scaler
        # execution (the first run id stays across continue-as-new; a new scaler restarts its numbering).
        info = workflow.info()
        chain = f"{info.workflow_id}/{info.first_execution_run_id}"
        workflow_hash = hashlib.sha256(chain.encode()).hexdigest()[:24]
        return f"{workflow_hash}-{text}"

    def _step(self, operation: ScaleOperation, step: SagaStep) -> None:
        operation.step = step
        self._refresh_details()

    def _finish(self, operation: ScaleOperation, status: OperationStatus, detail: str) -> None:
        operation.status = status
        operation.step = SagaStep.DONE
        operation.detail = detail
        operation.finished_at = workflow.now()
        if operation.reached is None:
            operation.reached = self._state.capacity
        workflow.logger.info("%s %s: %s", operation.operation_id, status.value, detail)
        self._refresh_details()

    def _why(self, error: BaseException) -> str:
        # A cancelled step may surface as the activity's own cancellation ("Activity cancelled") when the
        # cancel reaches it first: the person's reason is the cause either way.
        if isinstance(error, asyncio.CancelledError) or is_cancelled_exception(error):
            return self._cancel_reason or "the scaler was cancelled"
        if isinstance(error, ActivityError) and isinstance(error.cause, ApplicationError):
            return error.cause.message
        return str(error) or type(error).__name__

    def on_approvals_changed(self) -> None:
        self._refresh_details()

    def _refresh_details(self) -> None:
        workflow.set_current_details(render_details(self.status()))


def render_details(status: ScalerStatus) -> str:
    """The UI's current details: capacity, cooldown, the saga's step, the last event."""
    lines = [
        f"**{status.resource.id}**: capacity {_n(status.capacity)} "
        f"({_n(status.healthy)} healthy), bounds {status.min_capacity}–{status.max_capacity}",
        f"cooldown remaining: {status.cooldown_remaining_seconds:.0f} s; queued: {status.queued}; "
        f"approvals pending: {status.pending_approvals}",
    ]
    if status.current is not None:
        op = status.current
        step = op.step.value if op.step else "starting"
        lines.append(f"now: {op.operation_id} {_n(op.previous)} → {op.target}: {step}")
    if status.last is not None:
        op = status.last
        lines.append(f"last: {op.operation_id} {op.status.value}: {op.detail}")
    if status.problem:
        lines.append(f"problem: {status.problem}")
    return "\n\n".join(lines)


def _number(operation: ScaleOperation) -> str:
    return operation.operation_id.rsplit("/", 1)[-1]


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)
