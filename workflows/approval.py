"""The approval gate: one reusable piece for every workflow that must ask a person first.

A workflow inherits `ApprovalGate`, calls `request_approval(...)` and awaits `wait_for_decision(id)`.
The gate provides the handlers people use:
- updates `approve` / `reject` (validated: unknown ids, already decided or expired approvals, empty
  approver names and empty reasons are refused with a clear message and change nothing; a rejection
  may carry a snooze, how long the workflow should not ask again),
- signal `decide_approval` (for the UI's signal button and `temporal workflow signal`; a signal cannot
  be refused, so an invalid one is logged and ignored),
- query `pending_approvals`.
While anything is pending the search attribute `AutarkyApproval` is "pending" and `AutarkyRisk` holds the
highest pending risk. An approval nobody answers expires to the safe default: rejected.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalDecision, ApprovalRequest, ApprovalSignal, ApprovalState

TIMEOUT_DECIDER = "autarky:timeout"
MAX_DECIDED_KEPT = 50


class ApprovalGate:
    """Mixin: keeps approval requests in `self._approvals` (carry it across continue-as-new)."""

    _approvals: list[ApprovalRequest]

    def _init_approval_gate(self, existing: list[ApprovalRequest]) -> None:
        self._approvals = existing

    # ------------------------------------------------------------------ used by the workflow

    def request_approval(
        self, approval_id: str, subject: str, why: str, timeout: timedelta, risk: float = 0.0
    ) -> ApprovalRequest:
        now = workflow.now()
        request = ApprovalRequest(
            approval_id=approval_id,
            subject=subject,
            why=why,
            risk=risk,
            requested_at=now,
            expires_at=now + timeout,
        )
        self._approvals.append(request)
        self._approvals_changed()
        return request

    async def wait_for_decision(self, approval_id: str) -> ApprovalRequest:
        """Wait until a person decides or the request expires (then it is rejected by default)."""
        request = self._find_approval(approval_id)
        remaining = request.expires_at - workflow.now()
        if request.state == ApprovalState.PENDING and remaining > timedelta(0):
            with contextlib.suppress(TimeoutError):  # expiry is handled below
                await workflow.wait_condition(
                    lambda: request.state != ApprovalState.PENDING, timeout=remaining
                )
        if request.state == ApprovalState.PENDING:
            self._record_decision(
                request,
                ApprovalState.EXPIRED,
                TIMEOUT_DECIDER,
                f"nobody decided within {request.expires_at - request.requested_at}; safe default is reject",
            )
        return request

    def pending(self) -> list[ApprovalRequest]:
        return [a for a in self._approvals if a.state == ApprovalState.PENDING]

    def on_approvals_changed(self) -> None:
        """Hook for the workflow (e.g. refresh its current details)."""

    # ------------------------------------------------------------------ handlers for people

    @workflow.update(name="approve")
    async def approve(self, decision: ApprovalDecision) -> ApprovalRequest:
        return self._apply(decision, ApprovalState.APPROVED)

    @approve.validator
    def _validate_approve(self, decision: ApprovalDecision) -> None:
        self._check_decidable(decision.approval_id, decision.approver)
        _check_reason(decision)

    @workflow.update(name="reject")
    async def reject(self, decision: ApprovalDecision) -> ApprovalRequest:
        return self._apply(decision, ApprovalState.REJECTED)

    @reject.validator
    def _validate_reject(self, decision: ApprovalDecision) -> None:
        self._check_decidable(decision.approval_id, decision.approver)
        _check_reason(decision)
        if decision.snooze is not None and decision.snooze < timedelta(0):
            raise ValueError(f"snooze must not be negative (got {decision.snooze})")

    @workflow.signal(name="decide_approval")
    def decide_approval(self, signal: ApprovalSignal) -> None:
        try:
            self._check_decidable(signal.approval_id, signal.approver)
        except ValueError as error:
            workflow.logger.warning("ignored approval signal: %s", error)
            return
        decision = ApprovalDecision(
            approval_id=signal.approval_id,
            approver=signal.approver,
            reason=signal.reason or "(no reason given, by signal)",
        )
        self._apply(decision, ApprovalState.APPROVED if signal.approve else ApprovalState.REJECTED)

    @workflow.query(name="pending_approvals")
    def pending_approvals(self) -> list[ApprovalRequest]:
        return self.pending()

    @workflow.query(name="approvals")
    def all_approvals(self) -> list[ApprovalRequest]:
        return list(self._approvals)

    # ------------------------------------------------------------------ internals

    def _find_approval(self, approval_id: str) -> ApprovalRequest:
        for request in self._approvals:
            if request.approval_id == approval_id:
                return request
        pending = ", ".join(a.approval_id for a in self.pending()) or "none"
        raise ValueError(f"no approval with id {approval_id!r} in this workflow (pending: {pending})")

    def _check_decidable(self, approval_id: str, approver: str) -> None:
        if not approver.strip():
            raise ValueError("approver must name the person deciding (it is recorded)")
        request = self._find_approval(approval_id)
        if request.state == ApprovalState.PENDING and workflow.now() >= request.expires_at:
            raise ValueError(
                f"approval {approval_id!r} expired at {request.expires_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        if request.state != ApprovalState.PENDING:
            raise ValueError(
                f"approval {approval_id!r} was already {request.state.value} by {request.decided_by} "
                f"at {request.decided_at:%Y-%m-%d %H:%M:%S} UTC"
            )

    def _apply(self, decision: ApprovalDecision, state: ApprovalState) -> ApprovalRequest:
        request = self._find_approval(decision.approval_id)
        if state == ApprovalState.REJECTED:
            request.snooze = decision.snooze
        self._record_decision(request, state, decision.approver.strip(), decision.reason)
        return request

    def _record_decision(self, request: ApprovalRequest, state: ApprovalState, who: str, reason: str) -> None:
        request.state = state
        request.decided_by = who
        request.decided_at = workflow.now()
        request.decision_reason = reason
        workflow.logger.info("approval %s %s by %s: %s", request.approval_id, state.value, who, reason)
        decided = [a for a in self._approvals if a.state != ApprovalState.PENDING]
        if len(decided) > MAX_DECIDED_KEPT:  # keep the carried state compact
            drop = {a.approval_id for a in decided[: len(decided) - MAX_DECIDED_KEPT]}
            self._approvals[:] = [a for a in self._approvals if a.approval_id not in drop]
        self._approvals_changed()

    def _approvals_changed(self) -> None:
        pending = self.pending()
        risk = max((a.risk for a in pending), default=0.0)
        workflow.upsert_search_attributes(
            [sa.APPROVAL.value_set("pending" if pending else "none"), sa.RISK.value_set(risk)]
        )
        self.on_approvals_changed()


def _check_reason(decision: ApprovalDecision) -> None:
    if not decision.reason.strip():
        raise ValueError("reason must say why (it is recorded with the decision)")
