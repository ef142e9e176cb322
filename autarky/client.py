"""A typed Python client for Autarky, used by the CLI and by people's own scripts.

from autarky.client import AutarkyClient
autarky = await AutarkyClient.connect()
print(await autarky.status())
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import FailureError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from autarky.autopilot.settings import AutopilotSettings
from autarky.autopilot.types import ActionRecord, AutopilotInput, AutopilotStatus, Goal, RecentActionsQuery
from autarky.core import search_attributes as sa
from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.findings import Finding
from autarky.core.settings import AutarkySettings, load_settings
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID, connect, external_profile
from autarky.research.types import CycleInput, CycleOutcome
from autarky.scaling import client as scaling
from autarky.scaling.client import ScalerSummary
from autarky.scaling.types import ScaleOperation


class ApprovalNotFound(LookupError):
    pass


class ApprovalRefused(Exception):
    """The workflow refused an approve/reject (unknown id, already decided, expired, empty approver…);
    str(error) is the workflow's reason."""

    def __init__(self, message: str, *, approval_id: str, workflow_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.approval_id = approval_id
        self.workflow_id = workflow_id


class ServerUnavailable(ConnectionError):
    """No Temporal server answers at `address`."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"no Temporal server at {address}: start it with `make run`, or set TEMPORAL_ADDRESS"
        )
        self.address = address


# How the SDK's bridge words a connection that reached no Temporal server: nothing listening or no
# such host ("Server connection error"), something that does not answer gRPC, or not Temporal at all.
_NO_SERVER = ("Server connection error", "Timeout expired", "code: Unavailable", "code: Unimplemented")


def server_address(settings: AutarkySettings) -> str:
    """The address `connect` tries: the configured cluster's, else the embedded server's."""
    profile = external_profile()
    return profile.address if profile and profile.address else f"{settings.server_ip}:{settings.server_port}"


def is_unreachable(error: BaseException) -> bool:
    """Whether `error` (from connecting or from a call) means no Temporal server answered."""
    if isinstance(error, RPCError):
        return error.status == RPCStatusCode.UNAVAILABLE
    message = str(error)
    return (
        isinstance(error, RuntimeError)
        and message.startswith("Failed client connect")
        and any(sign in message for sign in _NO_SERVER)
    )


async def connect_client(settings: AutarkySettings, runtime: Runtime | None = None) -> Client:
    """`autarky.core.temporal.connect`, raising `ServerUnavailable` when no server answers."""
    try:
        return await connect(settings, runtime=runtime)
    except (RuntimeError, RPCError) as error:
        if is_unreachable(error):
            raise ServerUnavailable(server_address(settings)) from None
        raise


RUNNING_RESEARCH = f'{sa.KIND.name} = "research" AND ExecutionStatus = "Running"'
# The research Schedule's id (schedules/__init__.py RESEARCH_SCHEDULE_ID; schedules sit above this layer).
RESEARCH_SCHEDULE_ID = "research"
TRIGGER_POLLS = 50
TRIGGER_POLL_SECONDS = 0.2


class ResearchBusy(RuntimeError):
    """A research cycle is running already."""


@dataclass
class ResearchCycleSummary:
    workflow_id: str
    status: WorkflowExecutionStatus | None
    started_at: datetime
    outcome: CycleOutcome | None


@dataclass
class PendingApproval:
    workflow_id: str
    request: ApprovalRequest


class AutarkyClient:
    def __init__(self, client: Client, settings: AutarkySettings) -> None:
        self.client = client
        self.settings = settings

    @classmethod
    async def connect(cls, settings: AutarkySettings | None = None) -> AutarkyClient:
        """Connect as the CLI does; raises `ServerUnavailable` when no Temporal server answers."""
        settings = settings or load_settings()
        return cls(await connect_client(settings), settings)

    # ------------------------------------------------------------------ the autopilot

    def autopilot(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> WorkflowHandle:
        return self.client.get_workflow_handle(workflow_id)

    async def start_autopilot(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> WorkflowHandle:
        """Start the singleton autopilot unless it already runs (then its handle is returned)."""
        return await self.client.start_workflow(
            "AutopilotWorkflow",
            AutopilotInput(
                settings=self.autopilot_settings(),
                control_task_queue=self.settings.control_task_queue,
                pool_task_queue=self.settings.pool_task_queue,
                research_task_queue=self.settings.research_task_queue,
            ),
            id=workflow_id,
            task_queue=self.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(sa.KIND, "autopilot"), SearchAttributePair(sa.APPROVAL, "none")]
            ),
            memo={"description": "Autarky autopilot: monitor → analyze → plan → execute"},
            static_summary="Autarky autopilot (MAPE-K loop)",
        )

    async def reconfigure(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> None:
        """Send this process's autopilot settings to the running autopilot."""
        await self.autopilot(workflow_id).execute_update("reconfigure", self.autopilot_settings())

    def autopilot_settings(self) -> AutopilotSettings:
        """The autopilot's settings, with the network probe aimed at the Temporal server this client
        uses when no targets are configured (a fixed 127.0.0.1:7233 would be 100 % loss on a cluster)."""
        autopilot = self.settings.autopilot
        if autopilot.network_targets is None:
            target = self.client.service_client.config.target_host
            autopilot = autopilot.model_copy(update={"network_targets": [target]})
        return autopilot

    async def status(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> AutopilotStatus:
        return await self.autopilot(workflow_id).query("status", result_type=AutopilotStatus)

    async def recent_actions(
        self, count: int = 20, workflow_id: str = AUTOPILOT_WORKFLOW_ID
    ) -> list[ActionRecord]:
        return await self.autopilot(workflow_id).query(
            "recent_actions", RecentActionsQuery(count=count), result_type=list[ActionRecord]
        )

    async def goals(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> list[Goal]:
        return await self.autopilot(workflow_id).query("goals", result_type=list[Goal])

    async def findings(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> list[Finding]:
        return await self.autopilot(workflow_id).query("findings", result_type=list[Finding])

    # ------------------------------------------------------------------ research

    async def run_research(self, wait: bool = True) -> tuple[str, CycleOutcome | None]:
        """Run a research cycle now: the research Schedule's, triggered with overlap SKIP when it exists
        (so it never runs beside a scheduled one), else started here; its id, and its outcome when `wait`.
        Either way the cycle takes the knowledge base's lease, and skips itself when another holds it."""
        cycle_id = await self._trigger_research_schedule()
        if cycle_id is not None:
            handle = self.client.get_workflow_handle(cycle_id, result_type=CycleOutcome)
            return cycle_id, (await handle.result() if wait else None)
        running = [e.id async for e in self.client.list_workflows(RUNNING_RESEARCH, limit=1)]
        if running:  # two cycles at once would analyse (and pay for) the same items twice
            raise ResearchBusy(
                f"research cycle {running[0]} is running; wait for it (`autarky status`) or cancel it "
                "in the UI"
            )
        cycle_id = f"research-{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        handle = await self.client.start_workflow(
            "ResearchCycleWorkflow",
            CycleInput(
                trigger="cli",
                activity_task_queue=self.settings.research_task_queue,
                report_to=AUTOPILOT_WORKFLOW_ID,
            ),
            id=cycle_id,
            task_queue=self.settings.task_queue,
            result_type=CycleOutcome,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, "research")]),
            run_timeout=2 * self.settings.research.interval,  # as the schedule's: the cycle stops in time
        )
        return cycle_id, (await handle.result() if wait else None)

    async def _trigger_research_schedule(self) -> str | None:
        """Trigger the research Schedule (overlap SKIP) and return the id of the run it started; None when
        there is no such schedule. Raises ResearchBusy when a cycle of it is running (or it skipped)."""
        schedule = self.client.get_schedule_handle(RESEARCH_SCHEDULE_ID)
        try:
            before = (await schedule.describe()).info
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        busy = "research cycle {} is running; wait for it (`autarky status`) or cancel it in the UI"
        if before.running_actions:
            raise ResearchBusy(busy.format(before.running_actions[0].workflow_id))
        known = {result.action.workflow_id for result in before.recent_actions}
        await schedule.trigger(overlap=ScheduleOverlapPolicy.SKIP)
        for _ in range(TRIGGER_POLLS):  # the schedule starts its run asynchronously
            info = (await schedule.describe()).info
            started = [a.workflow_id for a in info.running_actions if a.workflow_id not in known] + [
                r.action.workflow_id for r in info.recent_actions if r.action.workflow_id not in known
            ]
            if started:
                return started[0]
            if info.running_actions:  # another run got in first: the trigger was skipped
                raise ResearchBusy(busy.format(info.running_actions[0].workflow_id))
            await asyncio.sleep(TRIGGER_POLL_SECONDS)
        raise ResearchBusy(
            f"the research schedule {RESEARCH_SCHEDULE_ID!r} started no cycle when triggered: is it paused "
            "(`temporal schedule describe`)?"
        )

    async def last_research_cycle(self) -> ResearchCycleSummary | None:
        """The latest research cycle: running, or its outcome (None: no cycle has run yet)."""
        query = f'{sa.KIND.name} = "research"'
        latest = None
        async for execution in self.client.list_workflows(query, limit=20):
            if latest is None or execution.start_time > latest.start_time:
                latest = execution
        if latest is None:
            return None
        summary = ResearchCycleSummary(latest.id, latest.status, latest.start_time, None)
        if latest.status == WorkflowExecutionStatus.COMPLETED:
            handle = self.client.get_workflow_handle(latest.id, result_type=CycleOutcome)
            summary.outcome = await handle.result()
        return summary

    # ------------------------------------------------------------------ approvals (any workflow)

    async def pending_approvals(self) -> list[PendingApproval]:
        """Pending approvals of every running workflow, found through the AutarkyApproval search attribute."""
        pending = []
        query = f'{sa.APPROVAL.name} = "pending" AND ExecutionStatus = "Running"'
        async for execution in self.client.list_workflows(query):
            handle = self.client.get_workflow_handle(execution.id)
            try:
                requests = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
            except RPCError:
                continue  # it finished between the listing and the query
            pending += [PendingApproval(execution.id, r) for r in requests]
        return pending

    async def approve(
        self, approval_id: str, approver: str, reason: str = "", workflow_id: str | None = None
    ) -> ApprovalRequest:
        """Approve a pending approval; raises `ApprovalRefused` with the workflow's reason if it refuses.

        Repeating it (e.g. a retry after a lost answer) returns the first answer while the workflow run
        that recorded it goes on (update ids are de-duplicated per run)."""
        decision = ApprovalDecision(approval_id=approval_id, approver=approver, reason=reason)
        return await self._decide("approve", decision, workflow_id)

    async def reject(
        self,
        approval_id: str,
        approver: str,
        reason: str = "",
        workflow_id: str | None = None,
        *,
        snooze: timedelta | None = None,
    ) -> ApprovalRequest:
        """Reject a pending approval; `snooze`: how long the same remedy is not proposed again
        (None: the workflow's `rejection_snooze`). Raises `ApprovalRefused` like `approve`."""
        decision = ApprovalDecision(approval_id=approval_id, approver=approver, reason=reason, snooze=snooze)
        return await self._decide("reject", decision, workflow_id)

    async def _decide(
        self, update: str, decision: ApprovalDecision, workflow_id: str | None
    ) -> ApprovalRequest:
        approval_id = decision.approval_id
        if workflow_id is None:
            owners = [
                p.workflow_id for p in await self.pending_approvals() if p.request.approval_id == approval_id
            ]
            if not owners:
                try:  # not pending anywhere: let the autopilot's gate say why (decided, expired, unknown)
                    await self.autopilot().describe()
                except RPCError:
                    raise ApprovalNotFound(
                        f"no pending approval {approval_id!r} (see `autarky approvals`)"
                    ) from None
                owners = [AUTOPILOT_WORKFLOW_ID]
            if len(owners) > 1:
                raise ApprovalNotFound(
                    f"approval {approval_id!r} is pending in several workflows "
                    f"({', '.join(owners)}); name one with --workflow"
                )
            workflow_id = owners[0]
        try:
            # The update id makes a retried decision a duplicate: the server answers it with the first
            # one's result instead of running it again (and refusing it as already decided).
            return await self.client.get_workflow_handle(workflow_id).execute_update(
                update, decision, id=f"{update}:{approval_id}", result_type=ApprovalRequest
            )
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, FailureError) and cause.message else str(error)
            raise ApprovalRefused(message, approval_id=approval_id, workflow_id=workflow_id) from error

    # ------------------------------------------------------------------ scalers (autarky.scaling.client)

    async def scale(
        self, resource: str, desired: int, *, reason: str, requested_by: str, queue: bool = False
    ) -> ScaleOperation:
        """Ask `resource`'s scaler (started if it does not run yet) for `desired` capacity and wait for
        the operation's end; its `status` tells how it ended (succeeded, unchanged, compensated, rejected).

        `resource` is written as the CLI takes it: `local-pool` (this host's pool), `local-pool/<host>`,
        `aws-asg/<name>`, `aws-ecs/<cluster>/<service>`, `aws-ec2/<group>` or `scaler/…`. Raises
        `autarky.scaling.scalers.UnknownResource` for one without a scaler (nothing is started), and
        `autarky.scaling.client.ScaleRefused` with the scaler's reason when it refuses (out of bounds;
        cooling down or busy unless `queue`, which waits for the cooldown's end instead)."""
        return await scaling.scale(
            self.client,
            self.settings,
            resource,
            desired,
            reason=reason,
            requested_by=requested_by,
            queue=queue,
        )

    async def scalers(self) -> list[ScalerSummary]:
        """Every configured resource's scaler (running or not started yet), then any other running one
        (found by AutarkyKind="scaler"), e.g. another host's pool."""
        return await scaling.scalers(self.client, self.settings)

    async def scale_operations(self, resource: str, count: int = 10) -> list[ScaleOperation]:
        """The last `count` operations of `resource`'s scaler, oldest first (queued and running ones
        included); none when its scaler has not started. Raises `UnknownResource` like `scale`."""
        return await scaling.scale_operations(self.client, self.settings, resource, count)
