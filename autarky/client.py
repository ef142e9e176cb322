"""A typed Python client for Autarky, used by the CLI and by people's own scripts.

from autarky.client import AutarkyClient
autarky = await AutarkyClient.connect()
print(await autarky.status())
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from autarky import search_attributes as sa
from autarky.config import AutarkySettings, load_settings
from autarky.temporal import AUTOPILOT_WORKFLOW_ID, connect
from autarky.types import (
    ActionRecord,
    ApprovalDecision,
    ApprovalRequest,
    AutopilotInput,
    AutopilotStatus,
    Finding,
    Goal,
    RecentActionsQuery,
)


class ApprovalNotFound(LookupError):
    pass


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
        settings = settings or load_settings()
        return cls(await connect(settings), settings)

    # ------------------------------------------------------------------ the autopilot

    def autopilot(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> WorkflowHandle:
        return self.client.get_workflow_handle(workflow_id)

    async def start_autopilot(self, workflow_id: str = AUTOPILOT_WORKFLOW_ID) -> WorkflowHandle:
        """Start the singleton autopilot unless it already runs (then its handle is returned)."""
        return await self.client.start_workflow(
            "AutopilotWorkflow",
            AutopilotInput(
                settings=self.settings.autopilot, control_task_queue=self.settings.control_task_queue
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
        await self.autopilot(workflow_id).execute_update("reconfigure", self.settings.autopilot)

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
        return await self._decide("approve", approval_id, approver, reason, workflow_id)

    async def reject(
        self, approval_id: str, approver: str, reason: str = "", workflow_id: str | None = None
    ) -> ApprovalRequest:
        return await self._decide("reject", approval_id, approver, reason, workflow_id)

    async def _decide(
        self, update: str, approval_id: str, approver: str, reason: str, workflow_id: str | None
    ) -> ApprovalRequest:
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
        decision = ApprovalDecision(approval_id=approval_id, approver=approver, reason=reason)
        return await self.client.get_workflow_handle(workflow_id).execute_update(
            update, decision, result_type=ApprovalRequest
        )
