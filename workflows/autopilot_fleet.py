"""The autopilot's side of its host watchers and action runs (release 25, patch `autopilot-hosts-apart`).

A mixin of AutopilotWorkflow (none is defined here: one workflow file per process): starting each host's
AutopilotHostWorkflow and sending it the configuration, taking its reports; starting each action in its
own AutopilotActionWorkflow and taking its outcome. Both are children the autopilot abandons on purpose
(they outlive each of its runs) and that report by signal to the autopilot's workflow id, which reaches
whichever run is current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.actions import ACTIONS
    from autarky.autopilot.details import on_host
    from autarky.autopilot.fleet import (
        ACTION_FINISHED,
        HOST_REPORT,
        WATCH_CONFIGURE,
        WATCH_RESUME,
        WATCH_STOP,
        ActionOutcome,
        ActionRunInput,
        HostReport,
        HostWatchInput,
        WatchConfig,
        action_run_id,
        watcher_id,
    )
    from autarky.autopilot.settings import AutopilotSettings
    from autarky.autopilot.types import ActionRecord, ActionStatus, AutopilotState, DetectionState, HostState
    from autarky.core.findings import Finding
    from autarky.scaling.policy_types import ScalingMemory
    from autarky.scaling.pool_policy import DESIRED
    from workflows.autopilot_actions import ACTION_RETRY, AutopilotActionWorkflow
    from workflows.autopilot_host import AutopilotHostWorkflow, silent_for_too_long
    from workflows.compat import autopilot as compat

# An action run that has not reported this long after its own bounds is counted as failed.
OUTCOME_GRACE = timedelta(minutes=10)


class Fleet:
    """What AutopilotWorkflow sets up in its __init__ and the methods of it this mixin calls."""

    _state: AutopilotState
    _settings: AutopilotSettings
    _pool_queue: str
    _control_queue: str
    _running: dict[str, ActionRecord]
    _starting: int
    _plan_now: bool
    _wake: bool
    _bump: Callable[..., None]
    _settle: Callable[[ActionRecord, ActionOutcome], None]
    _spawn: Callable[[object], None]

    # ------------------------------------------------------------------------------ host watchers

    async def _watch_hosts(self) -> None:
        """Each active host has a watcher, sent the current configuration (release 25)."""
        state, now = self._state, workflow.now()
        config = self._watch_config()
        # Compared as objects, both read by this code: a field a later release adds compares equal.
        if state.watch_config is not None and state.watch_config != config:
            await self._signal_watchers(list(state.watchers), WATCH_CONFIGURE, config)
        state.watch_config = config
        missing = []
        for host in state.active_hosts:
            hs = state.hosts.setdefault(host, HostState())
            started = state.watchers.get(host)
            if started is None or silent_for_too_long(last_heard(hs, started), now, config):
                missing.append(host)
        await asyncio.gather(*(self._start_watcher(host, config) for host in missing))

    def _watch_config(self) -> WatchConfig:
        s = self._settings
        return WatchConfig(
            settings=s,
            anomaly_parameters=self._state.anomaly_parameters,
            report_every=s.host_report_interval,
            rounds_per_run=s.iterations_per_run,
        )

    async def _start_watcher(self, host: str, config: WatchConfig) -> None:
        state = self._state
        hs = state.hosts[host]
        # A run before release 25 held this host's window and detectors: the watcher takes them over.
        carried = hs.model_copy() if hs.detection != DetectionState() and host not in state.watchers else None
        self._starting += 1
        try:
            await workflow.start_child_workflow(
                AutopilotHostWorkflow.run,
                HostWatchInput(
                    host=host,
                    autopilot_id=workflow.info().workflow_id,
                    pool_task_queue=self._pool_queue,
                    config=config,
                    state=carried,
                ),
                id=watcher_id(workflow.info().workflow_id, host),
                parent_close_policy=ParentClosePolicy.ABANDON,  # it outlives each run of the autopilot
                static_summary=f"watches {host} for the autopilot",
            )
            adopted = False
        except WorkflowAlreadyStartedError:  # still running (started by an earlier run or autopilot)
            adopted = True
        finally:
            self._starting -= 1
        state.watchers[host] = workflow.now()
        if adopted:  # it may have another autopilot's configuration
            await self._signal_watchers([host], WATCH_CONFIGURE, config)
        if carried is not None:  # the watcher holds them now
            hs.window, hs.detection, hs.scaling = hs.window[-1:], DetectionState(), ScalingMemory()

    async def _signal_watchers(self, hosts: list[str], signal: str, arg: object = None) -> None:
        autopilot = workflow.info().workflow_id
        handles = [workflow.get_external_workflow_handle(watcher_id(autopilot, h)) for h in hosts]
        outcomes = await asyncio.gather(
            *(h.signal(signal, *([] if arg is None else [arg])) for h in handles), return_exceptions=True
        )
        for host, outcome in zip(hosts, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, FailureError):
                    raise outcome
                workflow.logger.warning("watcher of %s did not take %s: %s", host, signal, outcome)
                self._state.watchers.pop(host, None)  # gone: started again at the next Monitor round

    @workflow.signal(name=HOST_REPORT)
    def host_report(self, report: HostReport) -> None:
        state = self._state
        if report.host not in state.watchers and report.host not in state.active_hosts:
            # A departed host's watcher left by an earlier autopilot (terminated): nobody would stop it.
            self._starting += 1
            self._spawn(self._tell_watcher(report.host, WATCH_STOP, None))
            return
        hs = state.hosts.setdefault(report.host, HostState())
        if report.generation != hs.watcher_generation:  # a new watcher, or one an earlier autopilot started
            hs.watcher_generation, hs.report_sequence = report.generation, 0
            # Its counts so far were added to that autopilot's totals, unless this is its first report.
            hs.counters = {} if report.sequence == 1 else dict(report.counters)
        if report.sequence <= hs.report_sequence:  # late
            return
        changed = [f.kind for f in hs.findings] != [f.kind for f in report.findings]
        if not changed and _sizes(hs.findings) != _sizes(report.findings):
            compat.plan_on_new_size()
            changed = True  # the pool asks for another size: plan it now
        hs.report_sequence, hs.reported_at = report.sequence, report.reported_at
        hs.findings, hs.runs_pool = report.findings, report.runs_pool
        hs.window = [report.last_point] if report.last_point else []
        hs.last_seen, hs.probe_failures = report.last_seen, report.probe_failures
        hs.unreachable_since = report.unreachable_since
        for counter, count in report.counters.items():  # the watcher's counts, added to the totals
            self._bump(counter, count - hs.counters.get(counter, 0))
        hs.counters = dict(report.counters)
        if changed:  # plan on news now rather than at the next plan round
            self._plan_now = self._wake = True

    async def _tell_watcher(self, host: str, signal: str, arg: object) -> None:
        """A signal sent from a task: `_starting` was counted by whoever spawned it."""
        try:
            await self._signal_watchers([host], signal, arg)
        finally:
            self._starting -= 1

    async def _start_action(self, record: ActionRecord) -> None:
        """The action in its own workflow, which signals `action_finished` (release 25). `_starting` was
        counted by `_execute`."""
        candidate = record.decision.candidate
        try:
            await workflow.start_child_workflow(
                AutopilotActionWorkflow.run,
                ActionRunInput(
                    record=record,
                    autopilot_id=workflow.info().workflow_id,
                    control_task_queue=self._control_queue,
                    heartbeat_timeout=self._settings.action_heartbeat_timeout,
                ),
                id=action_run_id(workflow.info().workflow_id, record.action_id),
                parent_close_policy=ParentClosePolicy.ABANDON,  # it reports to whichever run is current
                static_summary=f"{record.action_id} {candidate.action_type}{on_host(candidate.host)}: "
                f"{candidate.reason}"[:200],
            )
        except WorkflowAlreadyStartedError:  # ids are unique: only a run of this very action
            pass
        finally:
            self._starting -= 1

    @workflow.signal(name=ACTION_FINISHED)
    def action_finished(self, outcome: ActionOutcome) -> None:
        record = self._running.get(outcome.action_id)
        known = record is not None or any(
            r.action_id == outcome.action_id for r in self._state.recent_actions
        )
        if record is None and not known and outcome.record is not None:
            # Started by an autopilot terminated since: what it did is still recorded and learnt from.
            record = outcome.record
            self._running[record.action_id] = record
        if record is not None:  # else settled already (a repeated signal)
            self._settle(record, outcome)

    def _give_up_on_silent_runs(self) -> None:
        """An action run that never reported (terminated by a person, say) must not hold its slot for ever."""
        now = workflow.now()
        for record in list(self._running.values()):
            spec = ACTIONS.get(record.decision.candidate.action_type)
            bound = (spec.timeout if spec else timedelta(hours=1)) * (ACTION_RETRY.maximum_attempts + 1)
            if record.started_at is not None and now > record.started_at + bound + OUTCOME_GRACE:
                self._settle(
                    record,
                    ActionOutcome(
                        action_id=record.action_id,
                        status=ActionStatus.NOT_DELIVERED,  # nothing about the action was measured
                        improvement=0.0,
                        error=f"its workflow {action_run_id(workflow.info().workflow_id, record.action_id)} "
                        "never reported an outcome",
                        finished_at=now,
                    ),
                )

    # ------------------------------------------------------------------------------ reachability

    async def _resume_hosts_back(self) -> None:
        """A watcher that found its host gone probes again once the host polls again."""
        hosts = self._state.hosts
        back = [
            h
            for h in self._state.active_hosts
            if h in hosts and hosts[h].unreachable_since and self._reachable(h)
        ]
        for host in back:
            hosts[host].unreachable_since = None
        await self._signal_watchers(back, WATCH_RESUME)

    def _reachable(self, host: str) -> bool:
        """False for a host whose worker let a probe wait unclaimed and has not polled since: probing it
        would hold every Monitor round up by HOST_PICKUP_TIMEOUT until discovery stops listing it."""
        hs = self._state.hosts.get(host)
        if hs is None or hs.unreachable_since is None:
            return True
        return hs.last_polled is not None and hs.last_polled > hs.unreachable_since


def last_heard(hs: HostState, started: datetime) -> datetime:
    """The later of the watcher's last report and its last (re)start."""
    return max(hs.reported_at, started) if hs.reported_at is not None else started


def watcher_silent(hs: HostState, started: datetime | None, now: datetime, config: WatchConfig) -> bool:
    """A watcher not heard from for long: its findings are stale and no remedy is planned on them."""
    return started is not None and silent_for_too_long(last_heard(hs, started), now, config)


def _sizes(findings: list[Finding]) -> list[str | None]:
    """The capacities scaling findings ask for (other findings: None)."""
    return [f.params.get(DESIRED) for f in findings]
