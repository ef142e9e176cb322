"""AutopilotWorkflow: the MAPE-K loop (Monitor, Analyze, Plan, Execute over shared Knowledge).

Each stage runs on its own interval inside one loop of timers. Decisions come from the pure decision
engine (autarky.autopilot.policy.decision); actions run as activities or child workflows named in the action
catalogue (autarky.autopilot.actions); every outcome updates the learned success probabilities. The loop
continues-as-new with compact state (knowledge, windows, queue, approvals) before its history grows large.

Many hosts: one loop fans out rather than one loop per host. The decision engine then weighs every
host's candidates together under one concurrency limit, and what an action type achieves is learned
from all hosts at once; a host costs two probe activities per Monitor round, and continue-as-new keeps
the history bounded. Hosts are the workers polling the shared task queue (their identities name them,
see autarky.core.hosts); each host's samples, windows and detector state are its own, and each remedy runs
on the host whose finding it answers (its host or control queue).

Continue-as-new drains rather than carrying running actions: when a new run is due the loop keeps
monitoring, analysing and planning (queued actions and pending approvals are carried), starts nothing
new, and continues-as-new once the running actions have finished. An action in flight is an activity
or child workflow of this run; carrying it would mean abandoning it or re-running it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.actions import (
        ACTIONS,
        EVOLVE_AGENT,
        PRIORS,
        SCALE_POOL,
        ActionSpec,
        QueueRole,
        Runner,
    )
    from autarky.autopilot.policy import decision as engine
    from autarky.autopilot.policy import learning
    from autarky.autopilot.policy.detection import POOL_MEMBER, detector_findings, observe, round1_detectors
    from autarky.autopilot.policy.goals import evaluate_goals
    from autarky.autopilot.policy.remediation import PLAYBOOK, candidates_for
    from autarky.autopilot.policy.rules import analyze, default_analyzers
    from autarky.autopilot.settings import AnalysisSettings, AutopilotSettings
    from autarky.autopilot.types import (
        ActionRecord,
        ActionStatus,
        AutopilotInput,
        AutopilotState,
        AutopilotStatus,
        Goal,
        HostProbeInput,
        HostSample,
        HostState,
        MetricPoint,
        NetworkProbeInput,
        NetworkSample,
        RecentActionsQuery,
        Snooze,
        Temperature,
    )
    from autarky.core import search_attributes as sa
    from autarky.core.actions import ActionRequest, ActionResult
    from autarky.core.approval import ApprovalState
    from autarky.core.findings import Finding
    from autarky.core.hosts import DiscoveredHosts, DiscoverHostsInput, host_queue
    from autarky.models.types import UntestedVariant, new_variant_finding
    from autarky.research.budget import research_finding
    from autarky.research.types import ResearchReport
    from autarky.scaling.pool_policy import pool_scaling_findings
    from autarky.selfmod.agents import ANOMALY_DETECTOR, anomaly_config
    from autarky.selfmod.types import (
        ActiveAgentInput,
        ActivePointer,
        AgentShortfall,
        ShortfallInput,
        shortfall_finding_message,
    )
    from workflows.approval import ApprovalGate

WINDOW_KEPT = 60
RECENT_ACTIONS_KEPT = 50
PROBE_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
ACTION_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))
STAGES = ("monitor", "analyze", "plan", "execute")
DETECTORS_PATCH = "statistical-detectors"
# Foundation round 2: per-host routing, draining before continue-as-new, learned improvement with
# decay, snoozed rejections, bugs fail the workflow task. Runs recorded before it replay without it.
ROUND2_PATCH = "per-host-routing"
# Scaling: the host probe reads the pool queue's backlog, and the pool's scaling policy plans `scale_pool`.
SCALING_PATCH = "pool-scaling"
# Looks for model variants never A/B tested and may start their tests.
MODEL_VARIANTS_PATCH = "model-variants"
EVOLVED_AGENTS_PATCH = "evolved-agents"
# Analyze round 2: detectors that forget, trend tests robust to steps and autocorrelated noise, latency's
# 1 ms resolution. Runs recorded before it replay with the round-1 detectors.
ANALYZE2_PATCH = "analyze-round-2"
ANOMALY_AGENT = ANOMALY_DETECTOR.name
MAX_VARIANT_FINDINGS = 5
# The Monitor stage waits for this read: no research worker must not hold it up for long.
REGISTRY_PICKUP_TIMEOUT = timedelta(seconds=10)
LEGACY_HOST = ""  # the one host of runs before per-host routing
# A probe or remedy for a host whose worker does not pick it up this soon finds the host gone.
HOST_PICKUP_TIMEOUT = timedelta(seconds=10)
# A host that stopped polling keeps its windows this long (a worker restart must not lose its history).
HOST_FORGET_AFTER = timedelta(hours=1)
DEFAULT_CRITICAL_CELSIUS = 100.0  # for sensors that do not report their critical temperature


@workflow.defn(name="AutopilotWorkflow")
class AutopilotWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, input: AutopilotInput) -> None:
        self._settings = input.settings
        self._control_queue = input.control_task_queue
        self._pool_queue = input.pool_task_queue
        self._research_queue = input.research_task_queue
        self._state = input.state or AutopilotState()
        _read_single_host_state(self._state)
        self._running: dict[str, ActionRecord] = {}
        self._wake = False
        self._reconfigured = False
        self._draining = False
        self._round2 = False  # decided at the start of `run` (workflow.patched)
        self._scaling = False  # likewise
        self._analyze2 = False  # likewise
        self._crash: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._init_approval_gate(self._state.approvals)

    @workflow.run
    async def run(self, input: AutopilotInput) -> None:
        self._round2 = workflow.patched(ROUND2_PATCH)
        self._scaling = self._round2 and workflow.patched(SCALING_PATCH)
        self._analyze2 = workflow.patched(ANALYZE2_PATCH)
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
        while True:
            if self._round2:
                self._draining = self._new_run_due()
                if self._draining and not self._running and workflow.all_handlers_finished():
                    break
            elif state.iterations >= self._run_started_at_iteration + self._settings.iterations_per_run:
                break
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
            if not self._round2 and workflow.info().is_continue_as_new_suggested():
                break
            self._wake = False
            # Idle, the executor has nothing to look at: approvals and finished actions wake the loop, so
            # its timer is only needed while something waits in the queue (fewer idle workflow tasks).
            waiting = STAGES if not self._round2 or self._queued_ready() else STAGES[:3]
            delay = min(due[stage] for stage in waiting) - workflow.now()
            if delay > timedelta(0):
                with contextlib.suppress(TimeoutError):  # the timer firing is the normal way to wake
                    await workflow.wait_condition(lambda: self._wake, timeout=delay)
            self._raise_if_crashed()

        if not self._round2:  # before round 2 the loop went dark here until running actions finished
            await workflow.wait_condition(lambda: not self._running and workflow.all_handlers_finished())
        state.runs += 1
        state.approvals = self._approvals
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
        if not self._round2:
            await self._probe(LEGACY_HOST)
            return
        now = workflow.now()
        state = self._state
        discovered = state.hosts_discovered_at
        if discovered is None or now >= discovered + self._settings.host_discovery_interval:
            await self._discover_hosts()
        await asyncio.gather(*(self._probe(host) for host in state.active_hosts if self._reachable(host)))
        if self._settings.abtest_new_variants and workflow.patched(MODEL_VARIANTS_PATCH):
            await self._check_model_variants()
        else:
            self._state.model_findings = []  # switched off: nothing left to plan from
        if self._settings.evolved_agents and workflow.patched(EVOLVED_AGENTS_PATCH):
            await self._check_agent_versions()
            await self._check_agent_goals()
        else:
            self._state.agent_findings = []  # switched off: nothing left to plan from
        forget = now - HOST_FORGET_AFTER
        for host in [h for h in state.hosts if h not in state.active_hosts]:
            last_seen = state.hosts[host].last_seen
            if host == LEGACY_HOST or last_seen is None or last_seen < forget:
                del state.hosts[host]

    async def _check_model_variants(self) -> None:
        """Every `model_variant_check_interval`: variants registered but never A/B tested, as findings."""
        state, now = self._state, workflow.now()
        if not self._due("variants_checked_at", self._settings.model_variant_check_interval):
            return
        try:
            found = await self._on_research_queue(
                "untested_model_variants",
                None,
                list[UntestedVariant],
                timedelta(minutes=1),
                "model variants never A/B tested",
            )
        except ActivityError as error:  # no research worker, or the registry is down: look again later
            workflow.logger.warning("could not read the model registry: %s", error.cause or error)
            state.model_findings = []  # stale findings would keep proposing tests
            return
        state.model_findings = [new_variant_finding(v, now) for v in found[:MAX_VARIANT_FINDINGS]]

    def _due(self, checked_field: str, interval: timedelta) -> bool:
        """True once every `interval`, the first time one interval after start (a fresh stack has
        nothing new to find); records the look in the state field."""
        now, checked = workflow.now(), getattr(self._state, checked_field)
        if checked is not None and now < checked + interval:
            return False
        setattr(self._state, checked_field, now)
        return checked is not None

    async def _on_research_queue(
        self, name: str, arg: object, result_type: object, timeout: timedelta, summary: str
    ) -> Any:
        """A read on the research queue (full workers): gives up soon if none picks it up."""
        return await workflow.execute_activity(
            name,
            *([] if arg is None else [arg]),
            result_type=result_type,  # type: ignore[arg-type]
            task_queue=self._research_queue,
            schedule_to_start_timeout=REGISTRY_PICKUP_TIMEOUT,
            start_to_close_timeout=timeout,
            retry_policy=PROBE_RETRY,
            summary=summary,
        )

    async def _check_agent_versions(self) -> None:
        """Every `agent_version_check_interval`: the anomaly detector's active version. A promotion or a
        rollback takes effect here; the detectors' learnt state carries on under the new parameters."""
        state, now = self._state, workflow.now()
        checked = state.agents_checked_at
        if checked is not None and now < checked + self._settings.agent_version_check_interval:
            return
        state.agents_checked_at = now
        try:
            pointer = await self._on_research_queue(
                "active_agent_parameters",
                ActiveAgentInput(agent=ANOMALY_AGENT),
                ActivePointer | None,
                timedelta(seconds=30),
                "the anomaly detector's active version",
            )
        except ActivityError as error:  # no research worker: keep the parameters we have
            workflow.logger.warning("could not read the agents' active versions: %s", error.cause or error)
            return
        if pointer is None and state.anomaly_version is not None and self._analyze2:
            # Never evolved (or only bootstrapped by an older release): this release's shipped defaults.
            workflow.logger.info("anomaly detector back on the shipped parameters")
            state.anomaly_version, state.anomaly_parameters = None, None
            return
        if pointer is not None and pointer.commit != state.anomaly_version:
            workflow.logger.info("anomaly detector now runs version %s", pointer.commit[:10])
            if pointer.code_changed:  # workflow code cannot change under a running history
                workflow.logger.warning(
                    "version %s changes the detector's code: this autopilot applies its parameters; "
                    "its code runs with workers built from it",
                    pointer.commit[:10],
                )
            state.anomaly_version, state.anomaly_parameters = pointer.commit, pointer.parameters

    async def _check_agent_goals(self) -> None:
        """Every `agent_goal_check_interval` (the first one interval after start): agents short of their
        goals, as findings the planner answers with `evolve_agent`."""
        state, now = self._state, workflow.now()
        if not self._due("goals_checked_at", self._settings.agent_goal_check_interval):
            return
        try:
            short = await self._on_research_queue(
                "agent_shortfalls",
                ShortfallInput(cooldown=self._settings.agent_evolve_cooldown),
                list[AgentShortfall],
                timedelta(minutes=10),
                "agents short of their goals",
            )
        except ActivityError as error:
            workflow.logger.warning("could not check the agents' goals: %s", error.cause or error)
            state.agent_findings = []
            return
        cooldown = self._settings.agent_evolve_cooldown
        planned = state.agents_evolve_planned_at
        state.agent_findings = [
            Finding(
                kind="agent_below_goal",
                metric=s.metric,
                value=s.figure,
                threshold=s.goal,
                message=shortfall_finding_message(s),
                observed_at=now,
                subject=s.agent,
                params={"agent": s.agent},
            )
            for s in short
            if s.agent not in planned or now >= planned[s.agent] + cooldown
        ]

    async def _discover_hosts(self) -> None:
        try:
            found = await workflow.execute_activity(
                "discover_hosts",
                DiscoverHostsInput(task_queue=workflow.info().task_queue),
                result_type=DiscoveredHosts,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PROBE_RETRY,
                summary="which hosts run a worker (pollers of the shared task queue)",
            )
        except ActivityError as error:  # keep probing the hosts known so far
            workflow.logger.warning("host discovery failed: %s", error.cause or error)
            self._bump("discovery_failures")
            return
        self._state.active_hosts = found.hosts
        self._state.hosts_discovered_at = workflow.now()
        for host, polled in found.last_polled.items():
            self._state.hosts.setdefault(host, HostState()).last_polled = polled

    def _reachable(self, host: str) -> bool:
        """False for a host whose worker let a probe wait unclaimed and has not polled since: probing it
        would hold every Monitor round up by HOST_PICKUP_TIMEOUT until discovery stops listing it."""
        hs = self._state.hosts.get(host)
        if hs is None or hs.unreachable_since is None:
            return True
        return hs.last_polled is not None and hs.last_polled > hs.unreachable_since

    async def _probe(self, host: str) -> None:
        """One Monitor sample of `host` (LEGACY_HOST: whichever worker of the workflow's queue)."""
        targets = self._settings.network_targets or []
        options: dict[str, object] = {}
        where = ""
        probe_input = HostProbeInput()
        if self._scaling and self._settings.pool_scaling and host != LEGACY_HOST:
            probe_input = HostProbeInput(pool_task_queue=host_queue(self._pool_queue, host))
        if host != LEGACY_HOST:
            options = {
                "task_queue": host_queue(workflow.info().task_queue, host),
                "schedule_to_start_timeout": HOST_PICKUP_TIMEOUT,
            }
            where = f"{host}: "
        sample, network = await asyncio.gather(
            workflow.execute_activity(
                "probe_host",
                probe_input,
                result_type=HostSample,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PROBE_RETRY,
                summary=f"{where}probe host CPU, memory, disk, network",
                **options,  # type: ignore[arg-type]
            ),
            workflow.execute_activity(
                "probe_network",
                NetworkProbeInput(targets=targets),
                result_type=NetworkSample,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=PROBE_RETRY,
                summary=f"{where}probe TCP latency to " + (", ".join(targets) or "no targets"),
                **options,  # type: ignore[arg-type]
            ),
            return_exceptions=True,  # one failed probe must not throw the other's sample away
        )
        hs = self._state.hosts.setdefault(host, HostState())
        for name, outcome in (("host", sample), ("network", network)):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, ActivityError):
                    raise outcome
                # A missed sample is not worth stopping the loop for; the next round tries again.
                workflow.logger.warning("%s%s probe failed: %s", where, name, outcome.cause or outcome)
                self._bump(f"{name}_probe_failures")
                cause = outcome.cause
                if isinstance(cause, TemporalTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
                    hs.unreachable_since = workflow.now()
        if isinstance(sample, HostSample):
            hs.last_seen, hs.probe_failures, hs.unreachable_since = workflow.now(), 0, None
            point = to_metric_point(sample, network if isinstance(network, NetworkSample) else None)
            hs.window.append(point)
            del hs.window[:-WINDOW_KEPT]
            if self._detectors_enabled():
                observe(hs.detection, point, self._analysis_settings())
        else:
            hs.probe_failures += 1

    # ------------------------------------------------------------------------------ Analyze

    def _analyze(self) -> None:
        for host, hs in self._state.hosts.items():
            if self._round2 and host not in self._state.active_hosts:
                hs.findings = []  # a departed host's window is kept a while, but describes the past
                continue
            findings = analyze(hs.window, default_analyzers(self._settings.rules))
            if self._detectors_enabled():
                findings += detector_findings(
                    hs.detection, hs.window, self._analysis_settings(), workflow.now()
                )
            if self._scaling and self._settings.pool_scaling and host != LEGACY_HOST:
                overload = next((f for f in findings if f.kind == "overload_warning"), None)
                findings += pool_scaling_findings(
                    host, hs.window, hs.scaling, self._settings.pool_policy, overload, workflow.now()
                )
            for finding in findings:
                finding.host = host or None
            hs.findings = findings

    def _analysis_settings(self) -> AnalysisSettings:
        # An anomaly finding must outlast the gap between plan rounds, or no plan would see it.
        s = self._settings
        hold = max(s.analysis.anomaly_hold, s.optimization_interval)
        update: dict[str, object] = {"anomaly_hold": hold}
        if self._state.anomaly_parameters:  # an evolved version is active (self-modification)
            update["anomaly"] = anomaly_config(self._state.anomaly_parameters, s.analysis.anomaly)
        settings = s.analysis.model_copy(update=update)
        return settings if self._analyze2 else round1_detectors(settings)

    def _detectors_enabled(self) -> bool:
        # Histories recorded before the detectors existed replay without them (same commands).
        return workflow.patched(DETECTORS_PATCH)

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
        for host, hs in self._state.hosts.items():
            if self._round2 and not (host in self._state.active_hosts and self._reachable(host)):
                continue  # its remedies would wait for a worker that is gone
            for candidate in candidates_for(hs.findings):
                candidate.host = host or None
                spec = ACTIONS.get(candidate.action_type)
                if spec is None or (spec.needs_host_routing and not self._round2):
                    continue
                if self._round2 and spec.queue == QueueRole.CONTROL and not _runs_a_pool(hs):
                    continue  # e.g. a container without a local pool: nobody serves its control queue
                if (candidate.host, candidate.action_type) not in busy:
                    candidates.append(candidate)
        shared = [*self._state.model_findings, *self._state.agent_findings]
        for candidate in candidates_for(shared):  # not a host's: the shared queue
            if (None, candidate.action_type) not in busy:
                candidates.append(candidate)
        learned_now = now if self._round2 else None
        for decision in engine.plan(
            candidates, self._state.knowledge, self._settings.decision, PRIORS, learned_now
        ):
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
                    + _on(decision.candidate.host)
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
                    subject=f"{c.action_type}{_on(c.host)} ({c.priority.value}, risk {c.risk:.2f}) "
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
            if self._round2:  # a "no" holds for a while instead of coming back every cooldown
                snooze = approval.snooze if approval.snooze is not None else self._settings.rejection_snooze
                c = record.decision.candidate
                self._state.snoozes.append(
                    Snooze(
                        action_type=c.action_type,
                        host=c.host,
                        until=workflow.now() + snooze,
                        why=record.detail,
                    )
                )
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
        if self._draining:  # the queue is carried into the next run
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
        result: ActionResult | None = None
        try:
            result = await self._carry_out(record)
            record.status = ActionStatus.SUCCEEDED if result.success else ActionStatus.FAILED
            record.improvement, record.detail = result.improvement, result.detail
            if result.nothing_to_do and self._round2:
                record.status = ActionStatus.NOTHING_TO_DO
        except (ActivityError, ChildWorkflowError) as error:
            record.status, record.improvement, record.error = (
                ActionStatus.FAILED,
                0.0,
                str(error.cause or error),
            )
            cause = error.cause
            if (
                self._round2
                and isinstance(cause, TemporalTimeout)
                and cause.type == TimeoutType.SCHEDULE_TO_START
            ):
                # Nobody on the host took it (the host went away): not run, so it says nothing of the action.
                record.status = ActionStatus.NOT_DELIVERED
                record.error = f"no worker{_on(candidate.host)} took it in time; not run"
        except Exception as error:
            if self._round2:
                raise  # a bug, not an outcome: see _raise_if_crashed
            workflow.logger.exception("action %s failed unexpectedly", record.action_id)
            record.status, record.improvement = ActionStatus.FAILED, 0.0
            record.error = f"{type(error).__name__}: {error}"
        finally:
            self._running.pop(record.action_id, None)
            self._wake = True
        record.finished_at = workflow.now()
        assert record.started_at is not None
        record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
        self._remember(record)
        if self._scaling and candidate.action_type == SCALE_POOL and candidate.host:
            hs = self._state.hosts.get(candidate.host)
            # A compensated change moved capacity twice: the scaler's cooldown runs, and so does the policy's.
            if hs is not None and record.status in (ActionStatus.SUCCEEDED, ActionStatus.FAILED):
                hs.scaling.last_scaled_at = record.finished_at
        if record.status in (ActionStatus.NOTHING_TO_DO, ActionStatus.NOT_DELIVERED):  # teaches nothing
            self._bump(record.status.value)
            return
        success = record.status == ActionStatus.SUCCEEDED
        stats = self._state.knowledge.get(candidate.action_type)
        if self._round2:
            measured = result is not None and result.improvement_measured
            self._state.knowledge[candidate.action_type] = learning.record(
                stats,
                workflow.now(),
                self._settings.decision.evidence_half_life,
                success,
                record.improvement if measured else None,
            )
        else:
            self._state.knowledge[candidate.action_type] = engine.record_outcome(
                stats, success, record.improvement or 0.0
            )
        self._bump("succeeded" if success else "failed")

    def _task_queue(self, spec: ActionSpec, host: str | None) -> str:
        own = workflow.info().task_queue
        if not self._round2 or host is None:  # one host: the pool's process serves the plain control queue
            return self._control_queue if spec.queue == QueueRole.CONTROL else own
        if spec.queue == QueueRole.HOST:
            return host_queue(own, host)
        if spec.queue == QueueRole.CONTROL:
            return host_queue(self._control_queue, host)
        return own

    async def _carry_out(self, record: ActionRecord) -> ActionResult:
        candidate = record.decision.candidate
        spec = ACTIONS[candidate.action_type]
        request = ActionRequest(
            action_id=record.action_id,
            action_type=candidate.action_type,
            params=candidate.params,
            reason=candidate.reason,
            host=candidate.host,
        )
        task_queue = self._task_queue(spec, candidate.host)
        if spec.runner == Runner.ACTIVITY:
            options: dict[str, object] = {}
            if self._round2 and spec.heartbeats:
                options["heartbeat_timeout"] = self._settings.action_heartbeat_timeout
            if self._round2 and task_queue != workflow.info().task_queue:
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
                summary=f"{record.action_id} {candidate.action_type}{_on(candidate.host)}: "
                f"{candidate.reason}"[:200],
                **options,  # type: ignore[arg-type]
            )
        return await workflow.execute_child_workflow(
            spec.name,
            spec.child_input(request) if spec.child_input else request,
            result_type=ActionResult,
            task_queue=task_queue,
            id=f"{workflow.info().workflow_id}-{record.action_id}",
            execution_timeout=spec.timeout,
            static_summary=f"{candidate.action_type}{_on(candidate.host)} for the autopilot "
            f"({record.action_id})",
        )

    # ------------------------------------------------------------------------------ queries

    @workflow.query
    def status(self) -> AutopilotStatus:
        state = self._state
        pending = len(self.pending())
        started = state.started_at or workflow.now()
        if self._settings.simulation:
            label = "simulating"
        elif pending:
            label = "waiting for approval"
        else:
            label = "draining before continue-as-new" if self._draining else "running"
        now, decision = workflow.now(), self._settings.decision
        learned_now = now if self._round2 else None
        samples = {h or "(any)": (hs.window[-1] if hs.window else None) for h, hs in state.hosts.items()}
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
            agent_versions={ANOMALY_AGENT: state.anomaly_version} if state.anomaly_version else {},
            success_probabilities={
                t: round(engine.probability(state.knowledge.get(t), p, decision, learned_now), 4)
                for t, p in PRIORS.items()
            },
            expected_improvements={
                t: round(
                    learning.expected_improvement(
                        state.knowledge.get(t),
                        _playbook_figure(t),
                        decision.improvement_prior_strength,
                        now,
                        decision.evidence_half_life,
                    ),
                    4,
                )
                for t in PRIORS
                if self._round2
            },
            knowledge=dict(state.knowledge),
            findings=self._all_findings(),
            last_sample=next((p for p in samples.values() if p is not None), None),
            hosts=samples,
            draining=self._draining,
            snoozes=[z for z in state.snoozes if z.until > now],
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
                goal.host = host or None
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
        return f"{prefix}-{self._state.sequence}"

    def _bump(self, counter: str) -> None:
        self._state.totals[counter] = self._state.totals.get(counter, 0) + 1

    def _remember(self, record: ActionRecord) -> None:
        self._state.recent_actions.append(record)
        del self._state.recent_actions[:-RECENT_ACTIONS_KEPT]

    def _refresh_details(self) -> None:
        workflow.set_current_details(render_details(self))


def _key(record: ActionRecord) -> tuple[str | None, str]:
    """What must not be planned twice at once: an action type on a host."""
    c = record.decision.candidate
    return (c.host, c.action_type)


def _own_cooldown(record: ActionRecord) -> bool:
    spec = ACTIONS.get(record.decision.candidate.action_type)
    return spec is not None and spec.own_cooldown


def _runs_a_pool(hs: HostState) -> bool:
    """Whether the host's last sample saw members of a local worker pool."""
    last = hs.window[-1] if hs.window else None
    return last is not None and any(p.startswith(POOL_MEMBER) for p in last.process_rss_bytes)


def _on(host: str | None) -> str:
    return f" on {host}" if host else ""


def _playbook_figure(action_type: str) -> float:
    """The playbook's highest expected improvement for an action type (for the status query)."""
    figures = [i for entries in PLAYBOOK.values() for (t, _, i, _) in entries if t == action_type]
    return max(figures, default=0.0)


def _read_single_host_state(state: AutopilotState) -> None:
    """State carried from a run before per-host routing becomes the legacy host's state."""
    if state.window or state.findings or state.detection.anomaly or state.detection.trends:
        legacy = state.hosts.setdefault(LEGACY_HOST, HostState())
        legacy.window = state.window + legacy.window
        legacy.findings = state.findings
        legacy.detection = state.detection
        state.window, state.findings = [], []
        state.detection = type(state.detection)()


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
        pool_backlog=host.pool_backlog,
        pool_backlog_age_seconds=host.pool_backlog_age_seconds,
    )


def render_details(wf: AutopilotWorkflow) -> str:
    """Markdown for the UI's "current details": what it is doing and what waits for a person."""
    state = wf._state
    mode = "SIMULATION (executes nothing)" if wf._settings.simulation else "running"
    lines = [f"**Autopilot** {mode} · iteration {state.iterations} · run {state.runs + 1}"]
    if wf._draining:
        lines.append(
            f"Draining before continue-as-new: waiting for {len(wf._running)} running action(s); "
            "monitoring goes on, nothing new starts"
        )
    for host, hs in state.hosts.items():
        name = f"`{host}`" if host else "this host"
        if hs.window:
            p = hs.window[-1]
            latency = f"{p.network_latency_ms:.1f} ms" if p.network_latency_ms is not None else "n/a"
            lines.append(
                f"{name}: CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, "
                f"disk {p.disk_percent:.0f} %, latency {latency}"
                + (f" (probe failed {hs.probe_failures}× in a row)" if hs.probe_failures else "")
            )
        if hs.findings:
            lines.append(f"Findings on {name}: " + "; ".join(f.message for f in hs.findings))
    pending = wf.pending()
    if pending:
        lines.append("**Waiting for your approval:**")
        lines += [
            f"- `{a.approval_id}` {a.subject}. Why: {a.why}. Expires {a.expires_at:%H:%M:%S} UTC. "
            f"`autarky approve {a.approval_id} --reason …` or `autarky reject {a.approval_id} --reason … "
            "[--snooze 4h]`"
            for a in pending
        ]
    now = workflow.now()
    snoozed = [z for z in state.snoozes if z.until > now]
    if snoozed:
        lines.append("Snoozed (not proposed again until):")
        lines += [
            f"- {z.action_type}{_on(z.host)} until {z.until:%Y-%m-%d %H:%M} UTC ({z.why})" for z in snoozed
        ]
    if wf._running:
        lines.append(
            "Running: "
            + ", ".join(
                f"{r.action_id} {r.decision.candidate.action_type}{_on(r.decision.candidate.host)}"
                for r in wf._running.values()
            )
        )
    t = state.totals
    lines.append(
        f"Totals: {t.get('succeeded', 0)} succeeded, {t.get('failed', 0)} failed, "
        f"{t.get('rejected', 0) + t.get('expired', 0)} rejected/expired, {t.get('simulated', 0)} simulated, "
        f"{t.get('nothing_to_do', 0)} with nothing to do"
    )
    return "\n".join(lines)
