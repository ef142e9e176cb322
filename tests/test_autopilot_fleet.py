"""The autopilot across hosts and lifetimes (release 25): never dark while it continues-as-new, and ids
that a new autopilot never reuses (real test server)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowHandle

from activities.infra.notifications import recent_notifications
from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool, WorkerPoolActivities
from activities.storage.handle import KnowledgeBaseHandle
from autarky.autopilot.fleet import MAX_FINDINGS_REPORTED, HostReport, most_urgent, what_changed
from autarky.autopilot.types import ActionRecord, ActionStatus, Priority
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.approval import ApprovalDecision
from autarky.core.findings import Finding, Severity
from tests.fakes import FakeHost
from tests.pool_worker import MEMBER_SCRIPT
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
from tests.test_pool_restart import started


@dataclass
class OneSlowHost:
    """clear_cache takes `seconds` on `slow_host` (less when the test sets `release`) and no time
    elsewhere; notify is instant."""

    slow_host: str
    seconds: float
    started: dict[str, float] = field(default_factory=dict)  # host → loop time its clear_cache began
    finished: dict[str, float] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name="clear_cache")
    async def clear_cache(self, request: ActionRequest) -> ActionResult:
        host = request.host or ""
        self.started.setdefault(host, asyncio.get_running_loop().time())
        if host == self.slow_host:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.seconds)
        self.finished.setdefault(host, asyncio.get_running_loop().time())
        return ActionResult(success=True, improvement=0.2, detail=f"cleared on {host}")

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        return ActionResult(success=True, detail="noted", improvement_measured=False)


def started_clear_cache(records: list[ActionRecord]) -> list[ActionRecord]:
    return [r for r in records if r.decision.candidate.action_type == "clear_cache" and r.started_at]


def cleared_on(records: list[ActionRecord], host: str) -> ActionRecord | None:
    return next(
        (
            r
            for r in records
            if r.decision.candidate.action_type == "clear_cache"
            and r.decision.candidate.host == host
            and r.status == ActionStatus.SUCCEEDED
        ),
        None,
    )


async def test_a_critical_finding_is_acted_on_while_a_long_action_runs_through_continue_as_new(
    client: Client, tmp_path: Path
) -> None:
    a, b = FakeHost(disk=90.0), FakeHost(disk=40.0)
    # Host A's action lasts until host B's remedy and a continue-as-new came (or 100 s): however slow a busy
    # machine makes the loop, the long action is still running when they come, or they never come.
    fakes = OneSlowHost(slow_host="host-a", seconds=100.0)
    harness = Harness(client, tmp_path / "a", a, fakes, host_id="host-a")  # type: ignore[arg-type]
    await harness.add_host("host-b", b, tmp_path / "b")
    settings = fast_settings(iterations_per_run=6, action_cooldown=timedelta(hours=1))
    async with harness.running(settings) as handle:
        first_run = (await handle.describe()).run_id
        await eventually(lambda: asyncio.sleep(0, result="host-a" in fakes.started))
        b.disk = 97.0  # critical on host B while host A's clear_cache runs
        through = await eventually(
            lambda: _first(
                status(handle), lambda s: s if s.runs >= 1 and "host-b" in fakes.finished else None
            ),
            timeout=120,
        )
        still_running = "host-a" not in fakes.finished
        fakes.release.set()
        records = await eventually(
            lambda: _first(actions(handle), lambda rs: rs if cleared_on(rs, "host-a") else None)
        )
        final = await status(handle)
    assert still_running, "host A's action should outlast the first continue-as-new and host B's remedy"
    assert (await handle.describe()).run_id != first_run and through.runs >= 1
    remedy_b = cleared_on(records, "host-b")
    assert remedy_b is not None and remedy_b.decision.candidate.priority == Priority.CRITICAL
    assert fakes.started["host-b"] < fakes.finished["host-a"]  # not held back by the long action
    # The long action, started by the first run, was settled and learnt from by a later one.
    remedy_a = cleared_on(records, "host-a")
    assert remedy_a is not None and remedy_a.detail == "cleared on host-a"
    assert final.knowledge["clear_cache"].attempts >= 2


async def test_a_new_autopilot_after_a_terminated_one_reuses_no_id(client: Client, tmp_path: Path) -> None:
    """`autarky up` after a terminate starts a new autopilot under the same id: its first notify is
    delivered and its first pool restart restarts the members (action ids are their idempotency keys)."""
    starts = tmp_path / "starts.log"
    pool = LocalWorkerPool(tmp_path, command=[sys.executable, "-c", MEMBER_SCRIPT, str(starts), MEMBER_FLAG])
    pool.ensure(1)
    # disk_high → notify (no approval); memory_high held by the pool → restart_worker_pool (approval).
    harness = Harness(client, tmp_path, FakeHost(disk=90.0, memory=90.0))
    harness.pool_activities["test-host"] = [
        WorkerPoolActivities(pool, warmup=timedelta(milliseconds=200)).restart_worker_pool
    ]
    kb = KnowledgeBaseHandle(f"sqlite:///{tmp_path / 'knowledge.db'}")
    settings = fast_settings(action_cooldown=timedelta(hours=1))

    async def first_of_each(handle: WorkflowHandle) -> dict[str, ActionRecord]:
        waiting = (await eventually(lambda: pending(handle)))[0]
        await decide(
            handle, "approve", ApprovalDecision(approval_id=waiting.approval_id, approver="t", reason="go")
        )
        done = await eventually(
            lambda: _first(
                actions(handle),
                lambda rs: (
                    rs
                    if of_type(rs, "restart_worker_pool", ActionStatus.SUCCEEDED)
                    and of_type(rs, "notify", ActionStatus.SUCCEEDED)
                    else None
                ),
            )
        )
        return {t: of_type(done, t, ActionStatus.SUCCEEDED)[0] for t in ("notify", "restart_worker_pool")}

    try:
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) == 1))
        async with harness.serving():
            first = await harness.start(settings)
            old = await first_of_each(first)
            await first.terminate("a person stopped it")
        # A fresh member logs its start once its interpreter is up (on a busy machine, after the result).
        await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) >= 2))
        async with harness.running(settings) as second:
            new = await first_of_each(second)
            await eventually(lambda: asyncio.sleep(0, result=len(started(starts)) >= 3))
    finally:
        pool.set_size(0)
    for kind in ("notify", "restart_worker_pool"):
        assert new[kind].action_id != old[kind].action_id  # the idempotency key of its side effect
    assert new["notify"].status == ActionStatus.SUCCEEDED and new["notify"].detail.startswith("notified")
    keys = {n.key for n in await asyncio.to_thread(recent_notifications, kb.get(), 10)}
    assert {old["notify"].action_id, new["notify"].action_id} <= keys  # the new first notify was delivered
    assert len(started(starts)) == 3  # each autopilot's restart started one member, no more


async def test_an_action_left_running_by_a_terminated_autopilot_is_recorded_by_the_next(
    client: Client, tmp_path: Path
) -> None:
    fakes = OneSlowHost(slow_host="test-host", seconds=6.0)
    harness = Harness(client, tmp_path, FakeHost(disk=90.0), fakes)  # type: ignore[arg-type]
    settings = fast_settings(action_cooldown=timedelta(hours=1))
    async with harness.serving():
        first = await harness.start(settings)
        running = await eventually(
            lambda: _first(
                actions(first),
                lambda rs: [
                    r for r in rs if r.decision.candidate.action_type == "clear_cache" and r.started_at
                ],
            )
        )
        await first.terminate("a person stopped it")
        second = await harness.start(settings)
        left = running[0].action_id
        settled = await eventually(
            lambda: _first(
                actions(second, count=100),
                lambda rs: [r for r in rs if r.action_id == left and r.status == ActionStatus.SUCCEEDED],
            ),
            timeout=90,
        )
        learnt = await status(second)
        await second.terminate("test finished")
    assert settled[0].detail == "cleared on test-host"  # the outcome of the run the first one started
    assert learnt.knowledge["clear_cache"].attempts >= 1


def _finding(kind: str, value: float, severity: Severity = Severity.WARNING) -> Finding:
    return Finding(
        kind=kind,
        metric=kind,
        value=value,
        threshold=1.0,
        severity=severity,
        message=f"{kind} {value}",
        observed_at=datetime(2026, 12, 6, tzinfo=UTC),
    )


def test_a_report_is_news_when_findings_come_or_go_not_when_values_move() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    before = HostReport(host="h", sequence=1, reported_at=at, findings=[_finding("cpu_high", 91.0)])
    moved = before.model_copy(update={"sequence": 2, "findings": [_finding("cpu_high", 92.0)]})
    more = moved.model_copy(update={"findings": [*moved.findings, _finding("disk_high", 90.0)]})
    gone = moved.model_copy(update={"findings": []})
    assert what_changed(None, before)
    assert not what_changed(before, moved)
    assert what_changed(before, more) and what_changed(before, gone)
    assert what_changed(before, moved.model_copy(update={"unreachable_since": at}))


def test_a_pool_finding_that_asks_for_another_size_is_news() -> None:
    # The pool at 4 asked for 1; at 1 it asks for 0: the same kind, another size. An autopilot that did
    # not hear it asked the scaler for 1 again and again (found on `autarky up`).
    at = datetime(2026, 12, 6, tzinfo=UTC)
    to_one = _finding("pool_underused", 0.0).model_copy(update={"params": {"desired": "1", "backlog": "0"}})
    to_zero = to_one.model_copy(update={"params": {"desired": "0", "backlog": "0"}})
    before = HostReport(host="h", sequence=1, reported_at=at, findings=[to_one])
    after = before.model_copy(update={"sequence": 2, "findings": [to_zero]})
    assert what_changed(before, after, ("desired",))
    assert not what_changed(before, after)  # no params named (pool scaling off): only kinds are news
    waits = to_one.model_copy(update={"params": {"desired": "1", "backlog": "7"}})
    assert not what_changed(before, after.model_copy(update={"findings": [waits]}), ("desired",))


def test_a_report_carries_the_most_urgent_findings_first_and_a_bounded_number() -> None:
    many = [_finding(f"anomaly_{i}", i) for i in range(MAX_FINDINGS_REPORTED + 5)]
    critical = _finding("disk_high", 97.0, Severity.CRITICAL)
    reported = most_urgent([*many, critical])
    assert len(reported) == MAX_FINDINGS_REPORTED
    assert reported[0] is critical and reported[1:] == many[: MAX_FINDINGS_REPORTED - 1]
