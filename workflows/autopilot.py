"""AutopilotWorkflow: the MAPE-K loop (Monitor, Analyze, Plan, Execute over shared Knowledge).

Each stage runs on its own interval inside one loop of timers. Decisions come from the pure decision
engine (autarky.policy.decision); actions run as activities or child workflows named in the action
catalogue (autarky.actions); every outcome updates the learned success probabilities. The loop
continues-as-new with compact state (knowledge, window, queue, approvals) before its history grows large.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from autarky import search_attributes as sa
    from autarky.actions import ACTIONS, PRIORS, QueueRole, Runner
    from autarky.config import AnalysisSettings, AutopilotSettings
    from autarky.policy import decision as engine
    from autarky.policy.detection import detector_findings, observe
    from autarky.policy.goals import evaluate_goals
    from autarky.policy.remediation import candidates_for
    from autarky.policy.rules import analyze, default_analyzers
    from autarky.types import (
        ActionRecord,
        ActionRequest,
        ActionResult,
        ActionStatus,
        ApprovalState,
        AutopilotInput,
        AutopilotState,
        AutopilotStatus,
        Finding,
        Goal,
        HostProbeInput,
        HostSample,
        MetricPoint,
        NetworkProbeInput,
        NetworkSample,
        RecentActionsQuery,
        Temperature,
    )
    from workflows.approval import ApprovalGate

WINDOW_KEPT = 60
RECENT_ACTIONS_KEPT = 50
PROBE_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
ACTION_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))
STAGES = ("monitor", "analyze", "plan", "execute")
DETECTORS_PATCH = "statistical-detectors"
DEFAULT_CRITICAL_CELSIUS = 100.0  # for sensors that do not report their critical temperature


@workflow.defn(name="AutopilotWorkflow")
class AutopilotWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, input: AutopilotInput) -> None:
        self._settings = input.settings
        self._control_queue = input.control_task_queue
        self._state = input.state or AutopilotState()
        self._running: dict[str, ActionRecord] = {}
        self._wake = False
        self._reconfigured = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._init_approval_gate(self._state.approvals)

    @workflow.run
    async def run(self, input: AutopilotInput) -> None:
        state = self._state
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
        while state.iterations < self._run_started_at_iteration + self._settings.iterations_per_run:
            now = workflow.now()
            if self._reconfigured:  # shorter intervals apply now, not after the old ones run out
                self._reconfigured = False
                due = {stage: min(due[stage], now + self._intervals()[stage]) for stage in STAGES}
            if now >= due["monitor"]:
                await self._monitor()
            if now >= due["analyze"]:
                self._analyze()
            if now >= due["plan"]:
                self._plan()
            if now >= due["execute"] or self._wake:
                self._execute()
            intervals = self._intervals()  # read each time: `reconfigure` may have changed them
            for stage in STAGES:
                if now >= due[stage]:
                    due[stage] = now + intervals[stage]
            state.iterations += 1
            self._refresh_details()
            if workflow.info().is_continue_as_new_suggested():
                break
            self._wake = False
            delay = min(due.values()) - workflow.now()
            if delay <= timedelta(0):
                continue  # a slow stage already used up the wait
            with contextlib.suppress(TimeoutError):  # the timer firing is the normal way to wake
                await workflow.wait_condition(lambda: self._wake, timeout=delay)

        # Continue-as-new with compact state: let running actions and handlers finish first.
        await workflow.wait_condition(lambda: not self._running and workflow.all_handlers_finished())
        state.runs += 1
        state.approvals = self._approvals
        workflow.continue_as_new(
            AutopilotInput(settings=self._settings, state=state, control_task_queue=self._control_queue)
        )

    def _intervals(self) -> dict[str, timedelta]:
        s = self._settings
        return {
            "monitor": s.monitor_interval,
            "analyze": s.analysis_interval,
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
        targets = self._settings.network_targets
        host, network = await asyncio.gather(
            workflow.execute_activity(
                "probe_host",
                HostProbeInput(),
                result_type=HostSample,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PROBE_RETRY,
                summary="probe host CPU, memory, disk, network",
            ),
            workflow.execute_activity(
                "probe_network",
                NetworkProbeInput(targets=targets),
                result_type=NetworkSample,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=PROBE_RETRY,
                summary="probe TCP latency to " + (", ".join(targets) or "no targets"),
            ),
            return_exceptions=True,  # one failed probe must not throw the other's sample away
        )
        for name, outcome in (("host", host), ("network", network)):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, ActivityError):
                    raise outcome
                # A missed sample is not worth stopping the loop for; the next round tries again.
                workflow.logger.warning("%s probe failed: %s", name, outcome.cause or outcome)
                self._bump(f"{name}_probe_failures")
        if isinstance(host, HostSample):
            point = to_metric_point(host, network if isinstance(network, NetworkSample) else None)
            self._state.window.append(point)
            del self._state.window[:-WINDOW_KEPT]
            if self._detectors_enabled():
                observe(self._state.detection, point, self._analysis_settings())

    # ------------------------------------------------------------------------------ Analyze

    def _analyze(self) -> None:
        findings = analyze(self._state.window, default_analyzers(self._settings.rules))
        if self._detectors_enabled():
            findings += detector_findings(
                self._state.detection, self._state.window, self._analysis_settings(), workflow.now()
            )
        self._state.findings = findings

    def _analysis_settings(self) -> AnalysisSettings:
        # An anomaly finding must outlast the gap between plan rounds, or no plan would see it.
        s = self._settings
        hold = max(s.analysis.anomaly_hold, s.optimization_interval)
        return s.analysis.model_copy(update={"anomaly_hold": hold})

    def _detectors_enabled(self) -> bool:
        # Histories recorded before the detectors existed replay without them (same commands).
        return workflow.patched(DETECTORS_PATCH)

    # ------------------------------------------------------------------------------ Plan

    def _plan(self) -> None:
        in_flight = {r.decision.candidate.action_type for r in self._state.queued}
        in_flight |= {r.decision.candidate.action_type for r in self._running.values()}
        cooling = workflow.now() - self._settings.action_cooldown
        in_flight |= {
            r.decision.candidate.action_type
            for r in self._state.recent_actions
            if r.finished_at and r.finished_at > cooling
        }
        candidates = [
            c
            for c in candidates_for(self._state.findings)
            if c.action_type in ACTIONS and c.action_type not in in_flight
        ]
        for decision in engine.plan(candidates, self._state.knowledge, self._settings.decision, PRIORS):
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
                )
                self._bump("simulated")
                self._remember(record)
                continue
            self._state.queued.append(record)
            if decision.needs_approval:
                c = decision.candidate
                record.status = ActionStatus.AWAITING_APPROVAL
                record.approval_id = self._next_id("apr")
                self.request_approval(
                    record.approval_id,
                    subject=f"{c.action_type} ({c.priority.value}, risk {c.risk:.2f}) for: {c.reason}",
                    why=decision.why,
                    timeout=self._settings.approval_timeout,
                    risk=c.risk,
                )
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
        self._wake = True

    # ------------------------------------------------------------------------------ Execute

    def _execute(self) -> None:
        # Engine order across plan rounds too: an approved critical action does not wait behind a low one.
        ready = sorted(
            (r for r in self._state.queued if r.status == ActionStatus.QUEUED),
            key=lambda r: engine.order_key(r.decision),
        )
        if self._settings.simulation:  # switched to simulation while these waited: record, do not run
            for record in ready:
                self._state.queued.remove(record)
                record.status, record.finished_at = ActionStatus.SIMULATED, workflow.now()
                record.detail = f"simulation: would run {record.decision.candidate.action_type}"
                self._bump("simulated")
                self._remember(record)
            return
        free = self._settings.max_concurrent_actions - len(self._running)
        for record in ready[: max(free, 0)]:
            self._state.queued.remove(record)
            record.status = ActionStatus.RUNNING
            record.started_at = workflow.now()
            self._running[record.action_id] = record
            self._spawn(self._run_action(record))

    async def _run_action(self, record: ActionRecord) -> None:
        candidate = record.decision.candidate
        try:
            record.status, record.improvement, record.detail = await self._carry_out(record)
        except (ActivityError, ChildWorkflowError) as error:
            record.status, record.improvement, record.error = (
                ActionStatus.FAILED,
                0.0,
                str(error.cause or error),
            )
        except Exception as error:  # a bug in one action must not stall the loop
            workflow.logger.exception("action %s failed unexpectedly", record.action_id)
            record.status, record.improvement = ActionStatus.FAILED, 0.0
            record.error = f"{type(error).__name__}: {error}"
        finally:
            self._running.pop(record.action_id, None)
            self._wake = True
        record.finished_at = workflow.now()
        assert record.started_at is not None
        record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
        success = record.status == ActionStatus.SUCCEEDED
        self._state.knowledge[candidate.action_type] = engine.record_outcome(
            self._state.knowledge.get(candidate.action_type), success, record.improvement or 0.0
        )
        self._bump("succeeded" if success else "failed")
        self._remember(record)

    async def _carry_out(self, record: ActionRecord) -> tuple[ActionStatus, float, str]:
        candidate = record.decision.candidate
        spec = ACTIONS[candidate.action_type]
        request = ActionRequest(
            action_id=record.action_id,
            action_type=candidate.action_type,
            params=candidate.params,
            reason=candidate.reason,
        )
        task_queue = self._control_queue if spec.queue == QueueRole.CONTROL else workflow.info().task_queue
        if spec.runner == Runner.ACTIVITY:
            result = await workflow.execute_activity(
                spec.name,
                request,
                result_type=ActionResult,
                task_queue=task_queue,
                start_to_close_timeout=spec.timeout,
                # Bounded overall, so an action whose queue nobody serves cannot hold the loop forever.
                schedule_to_close_timeout=spec.timeout * (ACTION_RETRY.maximum_attempts + 1),
                retry_policy=ACTION_RETRY,
                summary=f"{record.action_id} {candidate.action_type}: {candidate.reason}"[:200],
            )
        else:
            result = await workflow.execute_child_workflow(
                spec.name,
                request,
                result_type=ActionResult,
                task_queue=task_queue,
                id=f"{workflow.info().workflow_id}-{record.action_id}",
                execution_timeout=spec.timeout,
            )
        return (
            (ActionStatus.SUCCEEDED if result.success else ActionStatus.FAILED),
            result.improvement,
            result.detail,
        )

    # ------------------------------------------------------------------------------ queries

    @workflow.query
    def status(self) -> AutopilotStatus:
        state = self._state
        pending = len(self.pending())
        started = state.started_at or workflow.now()
        if self._settings.simulation:
            label = "simulating"
        else:
            label = "waiting for approval" if pending else "running"
        return AutopilotStatus(
            state=label,
            simulation=self._settings.simulation,
            started_at=state.started_at,
            uptime_seconds=(workflow.now() - started).total_seconds(),
            iterations=state.iterations,
            runs=state.runs,
            pending_approvals=pending,
            queued_actions=sum(1 for r in state.queued if r.status == ActionStatus.QUEUED),
            active_actions=len(self._running),
            completed_actions=state.totals.get("succeeded", 0) + state.totals.get("failed", 0),
            totals=dict(state.totals),
            success_probabilities={
                t: round(
                    engine.success_probability(
                        state.knowledge.get(t), p, self._settings.decision.prior_strength
                    ),
                    4,
                )
                for t, p in PRIORS.items()
            },
            knowledge=dict(state.knowledge),
            findings=state.findings,
            last_sample=state.window[-1] if state.window else None,
        )

    @workflow.query
    def recent_actions(self, query: RecentActionsQuery) -> list[ActionRecord]:
        live = list(self._running.values()) + list(self._state.queued)
        return (live + list(reversed(self._state.recent_actions)))[: query.count]

    @workflow.query
    def goals(self) -> list[Goal]:
        return evaluate_goals(self._state.window, self._settings.rules)

    @workflow.query
    def findings(self) -> list[Finding]:
        return self._state.findings

    # ------------------------------------------------------------------------------ helpers

    def on_approvals_changed(self) -> None:
        self._wake = True
        self._refresh_details()

    def _spawn(self, coro: object) -> None:
        # Deterministic: tasks run on the workflow's own event loop. Keep a reference until done.
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_id(self, prefix: str) -> str:
        self._state.sequence += 1
        return f"{prefix}-{self._state.sequence}"

    def _bump(self, counter: str) -> None:
        self._state.totals[counter] = self._state.totals.get(counter, 0) + 1

    def _remember(self, record: ActionRecord) -> None:
        self._state.recent_actions.append(record)
        del self._state.recent_actions[:-RECENT_ACTIONS_KEPT]

    def _refresh_details(self) -> None:
        workflow.set_current_details(render_details(self))


def to_metric_point(host: HostSample, network: NetworkSample | None) -> MetricPoint:
    targets = network.targets if network else []
    latencies = [t.latency_ms_avg for t in targets if t.latency_ms_avg is not None]

    def critical(t: Temperature) -> float:
        return t.critical_celsius or DEFAULT_CRITICAL_CELSIUS

    hottest = max(host.temperatures, key=lambda t: t.current_celsius / critical(t), default=None)
    return MetricPoint(
        at=host.taken_at,
        cpu_percent=host.cpu.percent,
        memory_percent=host.memory.used_percent,
        disk_percent=host.disk.used_percent,
        network_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        network_loss_ratio=max((t.loss_ratio for t in targets), default=None),
        memory_total_bytes=host.memory.total_bytes,
        temperature_celsius=hottest.current_celsius if hottest else None,
        temperature_critical_celsius=critical(hottest) if hottest else None,
        process_rss_bytes={f"{p.role} {p.pid}": p.rss_bytes for p in host.own_processes},
    )


def render_details(wf: AutopilotWorkflow) -> str:
    """Markdown for the UI's "current details": what it is doing and what waits for a person."""
    state = wf._state
    mode = "SIMULATION (executes nothing)" if wf._settings.simulation else "running"
    lines = [f"**Autopilot** {mode} · iteration {state.iterations} · run {state.runs + 1}"]
    if state.window:
        p = state.window[-1]
        latency = f"{p.network_latency_ms:.1f} ms" if p.network_latency_ms is not None else "n/a"
        lines.append(
            f"Last sample: CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, "
            f"disk {p.disk_percent:.0f} %, latency {latency}"
        )
    if state.findings:
        lines.append("Findings: " + "; ".join(f.message for f in state.findings))
    pending = wf.pending()
    if pending:
        lines.append("**Waiting for your approval:**")
        lines += [
            f"- `{a.approval_id}` {a.subject}. Why: {a.why}. Expires {a.expires_at:%H:%M:%S} UTC. "
            f"`autarky approve {a.approval_id} --reason …` or `autarky reject …`"
            for a in pending
        ]
    if wf._running:
        lines.append(
            "Running: "
            + ", ".join(f"{r.action_id} {r.decision.candidate.action_type}" for r in wf._running.values())
        )
    t = state.totals
    lines.append(
        f"Totals: {t.get('succeeded', 0)} succeeded, {t.get('failed', 0)} failed, "
        f"{t.get('rejected', 0) + t.get('expired', 0)} rejected/expired, {t.get('simulated', 0)} simulated"
    )
    return "\n".join(lines)
