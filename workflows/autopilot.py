"""AutopilotWorkflow: the MAPE-K loop (Monitor, Analyze, Plan, Execute over shared Knowledge).

Each stage runs on its own interval inside one loop of timers. Decisions come from the pure decision
engine (autarky.autopilot.policy.decision); actions run as activities or child workflows named in the action
catalogue (autarky.autopilot.actions); every outcome updates the learned success probabilities. The loop
continues-as-new with compact state (knowledge, windows, queue, approvals) before its history grows large.

Many hosts: one decision loop for all (one concurrency limit, learning pooled over hosts). Hosts are
the workers polling the shared task queue (autarky.core.hosts); each remedy runs on the host whose
finding it answers (its host or control queue).

The per-host work is not done here (since release 25, patch `autopilot-hosts-apart`, deleted in 27): each
host has an AutopilotHostWorkflow (workflows/autopilot_host.py) that probes it, keeps its window and
detectors, and reports findings by signal; each action runs in an AutopilotActionWorkflow
(workflows/autopilot_actions.py) that reports its outcome by signal. So this loop's state grows by a small
summary per host, and it continues-as-new whenever due, carrying the running actions' records: nothing
waits for a long action, and a critical remedy is never held back.
Ids carry a lineage drawn once per autopilot, so a new autopilot (after a terminate) never reuses an old
one's idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.actions import (
        ACTIONS,
        EVOLVE_AGENT,
        PRIORS,
        SCALE_POOL,
        QueueRole,
    )
    from autarky.autopilot.details import build_status, on_host, render_details
    from autarky.autopilot.fleet import (
        WATCH_SCALED,
        WATCH_STOP,
        ActionOutcome,
    )
    from autarky.autopilot.policy import decision as engine
    from autarky.autopilot.policy import learning
    from autarky.autopilot.policy.goals import evaluate_goals
    from autarky.autopilot.policy.remediation import candidates_for
    from autarky.autopilot.settings import AutopilotSettings
    from autarky.autopilot.types import (
        ActionRecord,
        ActionStatus,
        AutopilotInput,
        AutopilotState,
        AutopilotStatus,
        Goal,
        HostState,
        Priority,
        RecentActionsQuery,
        Snooze,
    )
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.core.findings import Finding
    from autarky.research.budget import research_finding
    from autarky.research.types import ResearchReport
    from workflows import autopilot_reads as reads
    from workflows.approval import ApprovalGate
    from workflows.autopilot_fleet import Fleet, watcher_silent
    from workflows.autopilot_host import runs_a_pool
    from workflows.compat import autopilot as compat

RECENT_ACTIONS_KEPT = 50
STAGES = ("monitor", "analyze", "plan", "execute")
# A host that stopped polling keeps its windows this long (a worker restart must not lose its history).
HOST_FORGET_AFTER = timedelta(hours=1)


@workflow.defn(name="AutopilotWorkflow")
class AutopilotWorkflow(Fleet, ApprovalGate):
    @workflow.init
    def __init__(self, input: AutopilotInput) -> None:
        self._settings = input.settings
        self._control_queue = input.control_task_queue
        self._pool_queue = input.pool_task_queue
        self._research_queue = input.research_task_queue
        self._state = input.state or AutopilotState()
        self._running: dict[str, ActionRecord] = {}
        self._wake = False
        self._reconfigured = False
        self._starting = 0  # action runs and watchers being started (continue-as-new waits for them)
        self._plan_now = False
        self._crash: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._init_approval_gate(self._state.approvals)

    @workflow.run
    async def run(self, input: AutopilotInput) -> None:
        state = self._state
        if state.lineage is None:
            state.lineage = workflow.uuid4().hex[:8]
        self._running = {r.action_id: r for r in state.running}  # action runs carried from the last run
        state.running = []
        self._run_started_at_iteration = state.iterations
        if state.started_at is None:
            state.started_at = workflow.now()
        workflow.upsert_memo(
            {
                "description": "Autarky autopilot: monitor → analyze → plan → execute",
                "simulation": self._settings.simulation,
            }
        )
        workflow.upsert_search_attributes([sa.KIND.value_set("autopilot")])
        self._approvals_changed()
        for record in state.queued:  # approvals that were pending when the last run continued-as-new
            if record.status == ActionStatus.AWAITING_APPROVAL and record.approval_id:
                self._spawn(self._await_approval(record))

        due = dict.fromkeys(STAGES, workflow.now())
        while True:
            # Nothing to drain: running actions are carried into the next run.
            if self._new_run_due() and not self._starting and workflow.all_handlers_finished():
                break
            now = workflow.now()
            if self._reconfigured:  # shorter intervals apply now, not after the old ones run out
                self._reconfigured = False
                due = {stage: min(due[stage], now + self._intervals()[stage]) for stage in STAGES}
            if now >= due["monitor"]:
                await self._monitor()
            if now >= due["analyze"]:
                self._analyze()
            if now >= due["plan"] or self._plan_now:
                self._plan_now = False
                self._plan()
            if now >= due["execute"] or self._wake:
                self._execute()
            intervals = self._intervals()  # read each time: `reconfigure` may have changed them
            for stage in STAGES:
                if now >= due[stage]:
                    due[stage] = now + intervals[stage]
            state.iterations += 1
            self._refresh_details()
            self._wake = False
            # Idle, the executor has nothing to look at: approvals and finished actions wake the loop, so
            # its timer is only needed while something waits in the queue (fewer idle workflow tasks).
            waiting = STAGES if self._queued_ready() else STAGES[:3]
            delay = min(due[stage] for stage in waiting) - workflow.now()
            if delay > timedelta(0):
                with contextlib.suppress(TimeoutError):  # the timer firing is the normal way to wake
                    await workflow.wait_condition(lambda: self._wake, timeout=delay)
            self._raise_if_crashed()

        state.runs += 1
        state.approvals = self._approvals
        state.running = list(self._running.values())
        workflow.continue_as_new(
            AutopilotInput(
                settings=self._settings,
                state=state,
                control_task_queue=self._control_queue,
                pool_task_queue=self._pool_queue,
                research_task_queue=self._research_queue,
            )
        )

    def _queued_ready(self) -> bool:
        return any(r.status == ActionStatus.QUEUED for r in self._state.queued)

    def _new_run_due(self) -> bool:
        limit = self._run_started_at_iteration + self._settings.iterations_per_run
        return self._state.iterations >= limit or workflow.info().is_continue_as_new_suggested()

    def _raise_if_crashed(self) -> None:
        # A bug (not an activity or child workflow failure) fails the workflow task, as Temporal intends:
        # the task is retried until fixed code is deployed, and the loop then goes on where it was.
        if self._crash is not None:
            raise self._crash

    def _current_settings(self) -> AutopilotSettings:
        return self._settings

    def _intervals(self) -> dict[str, timedelta]:
        s = self._settings
        # The watchers sample and analyse; this loop only discovers hosts and reads other capabilities: it
        # need not wake on every sample; host findings wake it when they change.
        own = max(s.monitor_interval, s.host_discovery_interval)
        return {
            "monitor": own,
            "analyze": own,
            "plan": s.optimization_interval,
            "execute": s.executor_interval,
        }

    @workflow.update
    def reconfigure(self, settings: AutopilotSettings) -> AutopilotSettings:
        """New settings for the running loop (`autarky up` sends the current configuration)."""
        changed = settings != self._settings
        self._settings = settings
        if changed:
            workflow.upsert_memo({"simulation": settings.simulation})
            self._reconfigured = self._wake = True
        return self._settings

    # ------------------------------------------------------------------------------ Monitor

    async def _monitor(self) -> None:
        # Settings are read where they are used: `reconfigure` may replace them while a read waits.
        now = workflow.now()
        state = self._state
        discovered = state.hosts_discovered_at
        if discovered is None or now >= discovered + self._settings.host_discovery_interval:
            await self._discover_hosts()
        await self._watch_hosts()
        # The reads of other capabilities (workflows/autopilot_reads.py), each on its own interval.
        settings, queue = self._current_settings, self._research_queue
        if self._settings.abtest_new_variants:
            await reads.check_model_variants(state, settings, queue)
        else:
            state.model_findings = []  # switched off: nothing left to plan from
        if self._settings.evolved_agents:
            await reads.check_agent_versions(state, settings, queue)
            await reads.check_agent_goals(state, settings, queue)
        else:
            state.agent_findings = []  # switched off: nothing left to plan from
        forget = now - HOST_FORGET_AFTER
        for host in [h for h in state.hosts if h not in state.active_hosts]:
            last_seen = state.hosts[host].last_seen
            if last_seen is None or last_seen < forget:
                del state.hosts[host]
                if state.watchers.pop(host, None) is not None:
                    await self._signal_watchers([host], WATCH_STOP)

    async def _discover_hosts(self) -> None:
        try:
            found = await reads.discover_hosts()
        except ActivityError as error:  # the watchers of the hosts known so far go on
            workflow.logger.warning("host discovery failed: %s", error.cause or error)
            self._bump("discovery_failures")
            return
        self._state.active_hosts = found.hosts
        self._state.hosts_discovered_at = workflow.now()
        for host, polled in found.last_polled.items():
            self._state.hosts.setdefault(host, HostState()).last_polled = polled
        await self._resume_hosts_back()

    # ------------------------------------------------------------------------------ Analyze

    def _analyze(self) -> None:
        # Each active host's watcher analyses and reports its findings (`host_report`).
        for host, hs in self._state.hosts.items():
            if host not in self._state.active_hosts:
                hs.findings = []  # a departed host's window is kept a while, but describes the past

    # ------------------------------------------------------------------------------ Plan

    def _plan(self) -> None:
        now = workflow.now()
        busy = {_key(r) for r in self._state.queued} | {_key(r) for r in self._running.values()}
        cooling = now - self._settings.action_cooldown
        busy |= {
            _key(r)
            for r in self._state.recent_actions
            if r.finished_at and r.finished_at > cooling and not _own_cooldown(r)
        }
        self._state.snoozes = [z for z in self._state.snoozes if z.until > now]
        busy |= {(z.host, z.action_type) for z in self._state.snoozes}
        candidates = []
        watch = self._watch_config()  # once a round, not once a host
        for host, hs in self._state.hosts.items():
            if not (host in self._state.active_hosts and self._reachable(host)):
                continue  # its remedies would wait for a worker that is gone
            if watcher_silent(hs, self._state.watchers.get(host), now, watch):
                continue  # its findings are stale: no remedy without fresh evidence
            for candidate in candidates_for(hs.findings):
                candidate.host = host
                spec = ACTIONS.get(candidate.action_type)
                if spec is None:
                    continue
                if spec.queue == QueueRole.CONTROL and not _runs_a_pool(hs):
                    continue  # e.g. a container without a local pool: nobody serves its control queue
                if (candidate.host, candidate.action_type) not in busy:
                    candidates.append(candidate)
        shared = [*self._state.model_findings, *self._state.agent_findings]
        for candidate in candidates_for(shared):  # not a host's: the shared queue
            if (None, candidate.action_type) not in busy:
                candidates.append(candidate)
        for decision in engine.plan(candidates, self._state.knowledge, self._settings.decision, PRIORS, now):
            if not decision.execute:
                self._bump("refused")
                continue
            self._bump("planned")
            record = ActionRecord(
                action_id=self._next_id("act"),
                decision=decision,
                status=ActionStatus.QUEUED,
                planned_at=workflow.now(),
            )
            if self._settings.simulation:
                record.status = ActionStatus.SIMULATED
                record.finished_at = workflow.now()  # so the cooldown applies to simulated actions too
                record.detail = (
                    "simulation: would "
                    + ("ask for approval, then " if decision.needs_approval else "")
                    + f"run {decision.candidate.action_type}"
                    + on_host(decision.candidate.host)
                )
                self._bump("simulated")
                self._remember(record)
                continue
            self._state.queued.append(record)
            if decision.candidate.action_type == EVOLVE_AGENT:  # planned once: the evolution decides
                agent = decision.candidate.params.get("agent", "")
                self._state.agents_evolve_planned_at[agent] = workflow.now()
                self._state.agent_findings = [
                    f for f in self._state.agent_findings if f.params.get("agent") != agent
                ]
            if decision.needs_approval:
                c = decision.candidate
                record.status = ActionStatus.AWAITING_APPROVAL
                record.approval_id = self._next_id("apr")
                request = self.request_approval(
                    record.approval_id,
                    subject=f"{c.action_type}{on_host(c.host)} ({c.priority.value}, risk {c.risk:.2f}) "
                    f"for: {c.reason}",
                    why=decision.why,
                    timeout=self._settings.approval_timeout,
                    risk=c.risk,
                )
                request.host = c.host
                self._bump("approvals_requested")
                self._spawn(self._await_approval(record))

    async def _await_approval(self, record: ActionRecord) -> None:
        assert record.approval_id is not None
        try:
            approval = await self.wait_for_decision(record.approval_id)
        except ValueError:  # the request is gone (should not happen): the safe default is not to run
            self._state.queued.remove(record)
            record.status, record.finished_at = ActionStatus.REJECTED, workflow.now()
            record.detail = f"approval {record.approval_id} was lost; not run"
            self._remember(record)
            return
        if approval.state == ApprovalState.APPROVED:
            record.status = ActionStatus.QUEUED
            record.detail = f"approved by {approval.decided_by}: {approval.decision_reason}"
        else:
            self._state.queued.remove(record)
            record.status = ActionStatus.REJECTED
            record.finished_at = workflow.now()
            record.detail = f"{approval.state.value} by {approval.decided_by}: {approval.decision_reason}"
            self._bump(approval.state.value)
            self._remember(record)
            # A "no" holds for a while instead of coming back every cooldown.
            snooze = approval.snooze if approval.snooze is not None else self._settings.rejection_snooze
            c = record.decision.candidate
            self._state.snoozes.append(
                Snooze(
                    action_type=c.action_type, host=c.host, until=workflow.now() + snooze, why=record.detail
                )
            )
        self._wake = True

    # ------------------------------------------------------------------------------ Execute

    def _execute(self) -> None:
        # Engine order across plan rounds too: an approved critical action does not wait behind a low one.
        # The rest go first come, first served (engine order within a plan round): an action planned again
        # each round must not keep an older one waiting for ever.
        ready = sorted(
            (r for r in self._state.queued if r.status == ActionStatus.QUEUED),
            key=lambda r: (
                (r.decision.candidate.priority != Priority.CRITICAL, r.planned_at),
                engine.order_key(r.decision),
            ),
        )
        if self._settings.simulation:  # switched to simulation while these waited: record, do not run
            for record in ready:
                self._state.queued.remove(record)
                record.status, record.finished_at = ActionStatus.SIMULATED, workflow.now()
                record.detail = f"simulation: would run {record.decision.candidate.action_type}"
                self._bump("simulated")
                self._remember(record)
            return
        self._give_up_on_silent_runs()
        free = self._settings.max_concurrent_actions - len(self._running)
        for record in ready[: max(free, 0)]:
            self._state.queued.remove(record)
            record.status = ActionStatus.RUNNING
            record.started_at = workflow.now()
            self._running[record.action_id] = record
            self._starting += 1  # counted now: the task first runs after this workflow task may end
            self._spawn(self._start_action(record))

    def _settle(self, record: ActionRecord, outcome: ActionOutcome) -> None:
        """An action's outcome: recorded, and learnt from. Any exception here is a bug, not an outcome: it
        fails the workflow task (see _raise_if_crashed)."""
        candidate = record.decision.candidate
        self._running.pop(record.action_id, None)
        self._wake = True
        record.status, record.improvement = outcome.status, outcome.improvement
        if outcome.error is None:
            record.detail = outcome.detail  # a run that failed to run keeps the approval's words
        record.error = outcome.error
        record.finished_at = outcome.finished_at
        assert record.started_at is not None
        record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
        self._remember(record)
        if candidate.action_type == SCALE_POOL and candidate.host:
            compat.plan_on_new_size()
            self._plan_now = True  # the pool may need a further step: its finding is not new, its size is
            hs = self._state.hosts.get(candidate.host)
            # A compensated change moved capacity twice: the scaler's cooldown runs, and so does the policy's.
            if hs is not None and record.status in (ActionStatus.SUCCEEDED, ActionStatus.FAILED):
                hs.scaling.last_scaled_at = record.finished_at
                if candidate.host in self._state.watchers:
                    self._starting += 1  # continue-as-new waits for the signal to go out
                    self._spawn(self._tell_watcher(candidate.host, WATCH_SCALED, record.finished_at))
        if record.status in (ActionStatus.NOTHING_TO_DO, ActionStatus.NOT_DELIVERED):  # teaches nothing
            self._bump(record.status.value)
            return
        success = record.status == ActionStatus.SUCCEEDED
        self._state.knowledge[candidate.action_type] = learning.record(
            self._state.knowledge.get(candidate.action_type),
            workflow.now(),
            self._settings.decision.evidence_half_life,
            success,
            record.improvement if outcome.improvement_measured else None,
        )
        self._bump("succeeded" if success else "failed")

    # ------------------------------------------------------------------------------ queries

    @workflow.query
    def status(self) -> AutopilotStatus:
        return build_status(
            self._state,
            self._settings,
            pending=len(self.pending()),
            running=len(self._running),
            findings=self._all_findings(),
            now=workflow.now(),
        )

    @workflow.query
    def recent_actions(self, query: RecentActionsQuery) -> list[ActionRecord]:
        live = list(self._running.values()) + list(self._state.queued)
        return (live + list(reversed(self._state.recent_actions)))[: query.count]

    @workflow.query
    def goals(self) -> list[Goal]:
        """Each host's goals (its latest sample against the threshold rules)."""
        goals = []
        for host, hs in self._state.hosts.items():
            for goal in evaluate_goals(hs.window, self._settings.rules):
                goal.host = host
                goals.append(goal)
        return goals

    @workflow.signal(name="research_outcome")
    def research_outcome(self, report: ResearchReport) -> None:
        """A research cycle ended: one that failed or stopped for budget is a finding until one does not.
        (No action in the playbook: a person reads it in `autarky status` and the digest.)"""
        self._state.research_finding = research_finding(report, workflow.now())

    @workflow.query
    def findings(self) -> list[Finding]:
        return self._all_findings()

    # ------------------------------------------------------------------------------ helpers

    def _all_findings(self) -> list[Finding]:
        found = [f for hs in self._state.hosts.values() for f in hs.findings]
        research = self._state.research_finding
        found += self._state.model_findings + self._state.agent_findings
        return [*found, research] if research is not None else found

    def on_approvals_changed(self) -> None:
        self._wake = True
        self._refresh_details()

    def _spawn(self, coro: object) -> None:
        # Deterministic: tasks run on the workflow's own event loop. Keep a reference until done.
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crash = task.exception()  # raised by the main loop (see _raise_if_crashed)
            self._wake = True

    def _next_id(self, prefix: str) -> str:
        self._state.sequence += 1
        # Unique across autopilots: ids are idempotency keys of actions and approvals.
        return f"{prefix}-{self._state.lineage}-{self._state.sequence}"

    def _bump(self, counter: str, by: int = 1) -> None:
        self._state.totals[counter] = self._state.totals.get(counter, 0) + by

    def _remember(self, record: ActionRecord) -> None:
        self._state.recent_actions.append(record)
        del self._state.recent_actions[:-RECENT_ACTIONS_KEPT]

    def _refresh_details(self) -> None:
        workflow.set_current_details(
            render_details(
                self._state,
                simulation=self._settings.simulation,
                running=list(self._running.values()),
                pending=self.pending(),
                now=workflow.now(),
            )
        )


def _key(record: ActionRecord) -> tuple[str | None, str]:
    """What must not be planned twice at once: an action type on a host."""
    c = record.decision.candidate
    return (c.host, c.action_type)


def _own_cooldown(record: ActionRecord) -> bool:
    spec = ACTIONS.get(record.decision.candidate.action_type)
    return spec is not None and spec.own_cooldown


def _runs_a_pool(hs: HostState) -> bool:
    """Whether the host's last sample saw members of a local worker pool (its watcher says so)."""
    return hs.runs_pool if hs.runs_pool is not None else runs_a_pool(hs)
