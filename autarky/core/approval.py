"""The approval gate's payloads: what waits for a person, and their decision (update or signal)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

# ---------------------------------------------------------------------------------------- approvals


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalRequest(BaseModel):
    approval_id: str
    subject: str  # what is waiting, e.g. "restart_worker_pool (risk 0.60)"
    why: str  # why it needs a person
    risk: float = 0.0
    requested_at: datetime
    expires_at: datetime
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    host: str | None = None  # the host the action would run on
    snooze: timedelta | None = None  # asked for with a rejection


class ApprovalDecision(BaseModel):
    """The update argument for approve/reject."""

    approval_id: str
    approver: str
    reason: str = ""
    # Reject only: how long the same remedy for the same host is not proposed again (None: the
    # workflow's default, `rejection_snooze`).
    snooze: timedelta | None = None


class ApprovalSignal(BaseModel):
    """The signal form, for the UI's signal button and `temporal workflow signal`."""

    approval_id: str
    approve: bool
    approver: str
    reason: str = ""
