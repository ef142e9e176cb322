"""AutopilotWorkflow's approvals against a real Temporal server: a risky remedy waits for a person, runs once
approved, never runs when rejected or expired, refuses bad decisions, and a pending approval survives
continue-as-new. (Approval by signal and rejection snoozes: tests/test_autopilot_outcomes.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from autarky.autopilot.types import ActionStatus
from autarky.core import search_attributes as sa
from autarky.core.approval import ApprovalDecision, ApprovalRequest, ApprovalSignal, ApprovalState
from tests import test_autopilot
from tests.fakes import FakeHost
from tests.test_autopilot import (
    Harness,
    _first,
    actions,
    decide,
    eventually,
    fast_settings,
    of_type,
    pending,
    status,
)

host = test_autopilot.host


async def test_risky_action_waits_for_approval_then_runs(
    client: Client, tmp_path: Path, host: FakeHost
) -> None:
    host.memory = 90.0  # memory_high → restart_worker_pool, risk 0.6 > 0.5: needs a person
    harness = Harness(client, tmp_path, host)
    # Memory stays high after the restart: without a cooldown the next cycle asks again, and on a slow
    # machine that new request is pending before the last assertion looks.
    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        waiting = await eventually(lambda: pending(handle))
        assert waiting[0].subject.startswith("restart_worker_pool")
        description = await handle.describe()
        assert description.typed_search_attributes.get(sa.APPROVAL) == "pending"
        assert description.typed_search_attributes.get(sa.RISK) == pytest.approx(0.6)
        assert not of_type(await actions(handle), "restart_worker_pool", ActionStatus.SUCCEEDED)

        decided = await decide(
            handle,
            "approve",
            ApprovalDecision(approval_id=waiting[0].approval_id, approver="ops-alice", reason="ok"),
        )
        assert decided.state == ApprovalState.APPROVED and decided.decided_by == "ops-alice"

        ran = await eventually(
            lambda: _first(
                actions(handle), lambda rs: of_type(rs, "restart_worker_pool", ActionStatus.NOTHING_TO_DO)
            )
        )
        assert ran[0].approval_id == waiting[0].approval_id
        # The test host's pool is empty: "nothing to do" is an outcome that teaches nothing.
        assert "the local worker pool has no members" in ran[0].detail
        s = await status(handle)
        assert "restart_worker_pool" not in s.knowledge and s.totals["nothing_to_do"] >= 1
        assert (await handle.describe()).typed_search_attributes.get(sa.APPROVAL) == "none"


async def test_rejected_and_expired_approvals_do_not_run(
    client: Client, tmp_path: Path, host: FakeHost
) -> None:
    host.memory = 90.0
    harness = Harness(client, tmp_path, host)
    # No snooze: a rejected remedy may be proposed again at once (snoozes have their own test).
    settings = fast_settings(approval_timeout=timedelta(seconds=2), rejection_snooze=timedelta(0))
    async with harness.running(settings) as handle:
        first = (await eventually(lambda: pending(handle)))[0]
        await handle.signal(
            "decide_approval",
            ApprovalSignal(
                approval_id=first.approval_id, approve=False, approver="ops-bob", reason="not now"
            ),
        )
        rejected = await eventually(
            lambda: _first(
                actions(handle), lambda rs: of_type(rs, "restart_worker_pool", ActionStatus.REJECTED)
            )
        )
        assert "rejected by ops-bob: not now" in rejected[0].detail

        # The next plan asks again; nobody answers; it expires to the safe default.
        second = await eventually(
            lambda: _first(pending(handle), lambda ps: [p for p in ps if p.approval_id != first.approval_id])
        )
        expired = await eventually(
            lambda: _first(
                handle.query("approvals", result_type=list[ApprovalRequest]),
                lambda all_: [
                    a
                    for a in all_
                    if a.approval_id == second[0].approval_id and a.state == ApprovalState.EXPIRED
                ],
            )
        )
        assert expired[0].decided_by == "autarky:timeout"
        s = await status(handle)
        assert not of_type(await actions(handle), "restart_worker_pool", ActionStatus.SUCCEEDED)
    assert s.totals.get("expired", 0) >= 1 and s.totals.get("rejected", 0) >= 1
    assert s.success_probabilities["restart_worker_pool"] == pytest.approx(0.8)  # never ran: prior unchanged


async def test_bad_approvals_are_refused_and_change_nothing(
    client: Client, tmp_path: Path, host: FakeHost
) -> None:
    host.memory = 90.0
    harness = Harness(client, tmp_path, host)
    async with harness.running(fast_settings()) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        bad = [
            (
                ApprovalDecision(approval_id="apr-does-not-exist", approver="ops-alice", reason="ok"),
                "no approval with id",
            ),
            (ApprovalDecision(approval_id=request.approval_id, approver="  "), "approver must name"),
            (
                ApprovalDecision(approval_id=request.approval_id, approver="ops-alice", reason=" "),
                "reason must say why",
            ),
        ]
        for decision, message in bad:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update("approve", decision, result_type=ApprovalRequest)
            assert message in str(refused.value.cause)
        still = await pending(handle)
        assert [p.approval_id for p in still][:1] == [request.approval_id]
        assert still[0].state == ApprovalState.PENDING

        await decide(
            handle, "reject", ApprovalDecision(approval_id=request.approval_id, approver="carol", reason="no")
        )
        with pytest.raises(WorkflowUpdateFailedError) as twice:
            await decide(
                handle,
                "approve",
                ApprovalDecision(approval_id=request.approval_id, approver="dave", reason="yes"),
            )
        assert "already rejected by carol" in str(twice.value.cause)
        # An invalid signal is ignored, not applied.
        await handle.signal(
            "decide_approval",
            ApprovalSignal(approval_id=request.approval_id, approve=True, approver="mallory"),
        )
        approvals = await handle.query("approvals", result_type=list[ApprovalRequest])
        decided = next(a for a in approvals if a.approval_id == request.approval_id)
        assert decided.state == ApprovalState.REJECTED and decided.decided_by == "carol"


async def test_a_pending_approval_survives_continue_as_new(
    client: Client, tmp_path: Path, host: FakeHost
) -> None:
    host.memory = 90.0
    harness = Harness(client, tmp_path, host)
    async with harness.running(fast_settings(iterations_per_run=5)) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        first_run = (await handle.describe()).run_id
        await eventually(lambda: _first(status(handle), lambda st: st.runs >= 1))
        assert (await handle.describe()).run_id != first_run
        assert request.approval_id in [p.approval_id for p in await pending(handle)]  # still waiting
        await decide(
            handle,
            "approve",
            ApprovalDecision(approval_id=request.approval_id, approver="frank", reason="ok"),
        )
        ran = await eventually(
            lambda: _first(
                actions(handle),
                lambda rs: [
                    r
                    for r in of_type(rs, "restart_worker_pool", ActionStatus.NOTHING_TO_DO)
                    if r.approval_id == request.approval_id
                ],
            )
        )
        assert ran[0].decision.needs_approval


async def test_an_expired_approval_cannot_be_granted(client: Client, tmp_path: Path, host: FakeHost) -> None:
    host.memory = 90.0
    harness = Harness(client, tmp_path, host)
    async with harness.running(fast_settings(approval_timeout=timedelta(milliseconds=500))) as handle:
        request = (await eventually(lambda: pending(handle)))[0]
        await asyncio.sleep(1.0)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await decide(
                handle,
                "approve",
                ApprovalDecision(approval_id=request.approval_id, approver="late-larry", reason="ok"),
            )
        assert "expired" in str(refused.value.cause)
        assert not of_type(await actions(handle), "restart_worker_pool", ActionStatus.SUCCEEDED)
