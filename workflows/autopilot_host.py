"""AutopilotHostWorkflow: one host's Monitor and Analyze, for the autopilot (autarky/autopilot/fleet.py).

Each host the autopilot finds gets a watcher. It probes the host on the host's queue, keeps the window and
the detectors, analyses on the analysis interval and signals the autopilot when the host's findings change
(and at least every `report_every`, so the autopilot knows it is alive). It continues-as-new on its own,
so a host's state never rides in the autopilot's input. After a probe nobody on the host picked up, it stops
probing until the autopilot (which lists the hosts that poll) says the host is back, or tells it to stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.fleet import (
        HOST_REPORT,
        WATCH_CONFIGURE,
        WATCH_RESUME,
        WATCH_SCALED,
        WATCH_STOP,
        HostReport,
        HostWatchInput,
        WatchConfig,
        most_urgent,
        what_changed,
    )
    from autarky.autopilot.policy.detection import POOL_MEMBER, detector_findings, observe
    from autarky.autopilot.policy.rules import analyze, default_analyzers
    from autarky.autopilot.samples import to_metric_point
    from autarky.autopilot.settings import AnalysisSettings, AutopilotSettings
    from autarky.autopilot.types import HostSample, HostState, NetworkSample
    from autarky.core import search_attributes as sa
    from autarky.core.findings import Finding
    from autarky.core.hosts import host_queue
    from autarky.scaling.pool_policy import DESIRED, pool_scaling_findings
    from autarky.selfmod.agents import anomaly_config
    from workflows import autopilot_reads as reads
    from workflows.compat import autopilot_host as compat

WINDOW_KEPT = 60


async def sample_host(
    host: str,
    hs: HostState,
    settings: AutopilotSettings,
    analysis: Callable[[], AnalysisSettings],
    pool_queue: str,
    bump: Callable[[str], None],
) -> None:
    """One Monitor sample of `host` into its state. `analysis` is read after the probe (a new
    configuration may arrive while it runs)."""
    pool = host_queue(pool_queue, host) if settings.pool_scaling else None
    sample, network = await reads.probe(host, settings, pool)
    for name, outcome in (("host", sample), ("network", network)):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, ActivityError):
                raise outcome
            # A missed sample is not worth stopping the loop for; the next round tries again.
            workflow.logger.warning("%s: %s probe failed: %s", host, name, outcome.cause or outcome)
            bump(f"{name}_probe_failures")
            cause = outcome.cause
            if isinstance(cause, TemporalTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
                hs.unreachable_since = workflow.now()
    if isinstance(sample, HostSample):
        hs.last_seen, hs.probe_failures, hs.unreachable_since = workflow.now(), 0, None
        point = to_metric_point(sample, network if isinstance(network, NetworkSample) else None)
        hs.window.append(point)
        del hs.window[:-WINDOW_KEPT]
        observe(hs.detection, point, analysis())
    else:
        hs.probe_failures += 1


def host_findings(
    host: str,
    hs: HostState,
    settings: AutopilotSettings,
    analysis: AnalysisSettings,
    now: datetime,
) -> list[Finding]:
    """The Analyze stage for one host: threshold rules, detectors, the local pool's scaling policy."""
    findings = analyze(hs.window, default_analyzers(settings.rules, settings.monitor_interval))
    findings += detector_findings(hs.detection, hs.window, analysis, now)
    if settings.pool_scaling:
        compat.pool_scaling_round_2()
        findings += pool_scaling_findings(host, hs.window, hs.scaling, settings.pool_policy, now)
    for finding in findings:
        finding.host = host
    return findings


def analysis_settings(
    settings: AutopilotSettings, anomaly_parameters: dict[str, float] | None
) -> AnalysisSettings:
    # An anomaly finding must outlast the gap between plan rounds, or no plan would see it.
    hold = max(settings.analysis.anomaly_hold, settings.optimization_interval)
    update: dict[str, object] = {"anomaly_hold": hold}
    if anomaly_parameters:  # an evolved version is active (self-modification)
        update["anomaly"] = anomaly_config(anomaly_parameters, settings.analysis.anomaly)
    return settings.analysis.model_copy(update=update)


def waits_for_a_pool(hs: HostState, settings: AutopilotSettings) -> bool:
    """Work waits for a pool at zero members: analyse now, not at the next analysis round, so the first
    backlog brings a member back within seconds (round 2 of pool scaling)."""
    last = hs.window[-1] if hs.window else None
    if not (settings.pool_scaling and last is not None and last.pool_desired == 0 and last.pool_backlog):
        return False
    compat.pool_scaling_round_2()
    return True


def runs_a_pool(hs: HostState) -> bool:
    """Whether the host's last sample saw members of a local worker pool."""
    last = hs.window[-1] if hs.window else None
    return last is not None and any(p.startswith(POOL_MEMBER) for p in last.process_rss_bytes)


@workflow.defn(name="AutopilotHostWorkflow")
class AutopilotHostWorkflow:
    @workflow.init
    def __init__(self, input: HostWatchInput) -> None:
        self._host = input.host
        self._config = input.config
        self._state = input.state or HostState()
        self._last_report = input.last_report
        self._sequence = input.report_sequence
        self._stopping = False
        self._woken = False
        self._counters = dict(input.counters)

    @workflow.run
    async def run(self, input: HostWatchInput) -> None:
        workflow.upsert_search_attributes([sa.KIND.value_set("autopilot-host")])
        workflow.upsert_memo({"host": self._host, "autopilot": input.autopilot_id})
        autopilot = workflow.get_external_workflow_handle(input.autopilot_id)
        if input.last_report is None:  # a new watcher: the autopilot starts many at once; spread their rounds
            offset = self._config.settings.monitor_interval * workflow.random().random()
            with contextlib.suppress(TimeoutError):  # the timer is the normal way to go on
                await workflow.wait_condition(lambda: self._stopping or self._woken, timeout=offset)
        hs, analyse_due = self._state, workflow.now()
        for _ in range(self._config.rounds_per_run):
            settings = self._config.settings
            if hs.unreachable_since is None:  # else wait for the autopilot to say the host polls again
                await sample_host(self._host, hs, settings, self._analysis, input.pool_task_queue, self._bump)
            now, settings = workflow.now(), self._config.settings
            if now >= analyse_due or waits_for_a_pool(hs, settings):
                hs.findings = host_findings(self._host, hs, settings, self._analysis(), now)
                analyse_due = now + settings.analysis_interval
            await self._report(autopilot)
            workflow.set_current_details(self._details())
            self._woken = False
            with contextlib.suppress(TimeoutError):  # the timer is the normal way to wake
                await workflow.wait_condition(
                    lambda: self._woken or self._stopping, timeout=settings.monitor_interval
                )
            if self._stopping:
                return
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            HostWatchInput(
                host=self._host,
                autopilot_id=input.autopilot_id,
                pool_task_queue=input.pool_task_queue,
                config=self._config,
                state=hs,
                last_report=self._last_report,
                report_sequence=self._sequence,
                counters=self._counters,
            )
        )

    async def _report(self, autopilot: workflow.ExternalWorkflowHandle) -> None:
        hs, now = self._state, workflow.now()
        last = hs.window[-1] if hs.window else None
        report = HostReport(
            host=self._host,
            generation=workflow.info().first_execution_run_id,
            sequence=self._sequence + 1,
            reported_at=now,
            findings=most_urgent(hs.findings),
            last_point=last.model_copy(update={"process_rss_bytes": {}}) if last else None,
            runs_pool=runs_a_pool(hs),
            last_seen=hs.last_seen,
            probe_failures=hs.probe_failures,
            unreachable_since=hs.unreachable_since,
            counters=dict(self._counters),
        )
        previous = self._last_report
        stale = previous is None or now >= previous.reported_at + self._config.report_every
        # Round 2 of pool scaling: a pool finding that asks for another size is news (round 1 kept the first).
        targets: tuple[str, ...] = ()
        if self._config.settings.pool_scaling:
            compat.pool_scaling_round_2()
            targets = (DESIRED,)
        if not (stale or what_changed(previous, report, targets)):
            return
        try:
            await autopilot.signal(HOST_REPORT, report)
        except FailureError as error:  # the autopilot is gone (terminated): nothing to report to
            workflow.logger.warning("%s: could not report to the autopilot: %s", self._host, error)
            self._stopping = True
            return
        self._sequence, self._last_report = report.sequence, report

    def _analysis(self) -> AnalysisSettings:
        analysis = analysis_settings(self._config.settings, self._config.anomaly_parameters)
        return analysis.model_copy(update={"detection_round": compat.detection_round()})

    def _bump(self, counter: str) -> None:
        self._counters[counter] = self._counters.get(counter, 0) + 1

    def _details(self) -> str:
        hs = self._state
        lines = [f"**Host watcher** `{self._host}` · {len(hs.window)} samples in the window"]
        if hs.window:
            p = hs.window[-1]
            lines.append(
                f"CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, disk {p.disk_percent:.0f} %"
            )
        if hs.unreachable_since is not None:
            lines.append(
                f"Not probing: nobody on the host took a probe at {hs.unreachable_since:%H:%M:%S} UTC"
            )
        if hs.findings:
            lines.append("Findings: " + "; ".join(f.message for f in hs.findings))
        return "\n".join(lines)

    @workflow.signal(name=WATCH_CONFIGURE)
    def configure(self, config: WatchConfig) -> None:
        self._config = config
        self._last_report = None  # a new or adopting autopilot hears everything at the next round
        self._woken = True

    @workflow.signal(name=WATCH_RESUME)
    def resume(self) -> None:
        """The host polls again after a probe it did not take: probe it again."""
        self._state.unreachable_since = None
        self._woken = True

    @workflow.signal(name=WATCH_SCALED)
    def scaled(self, at: datetime) -> None:
        """The autopilot changed this host's pool: the pool policy's own cooldown starts then."""
        self._state.scaling.last_scaled_at = at

    @workflow.signal(name=WATCH_STOP)
    def stop(self) -> None:
        self._stopping = True

    @workflow.query
    def counters(self) -> dict[str, int]:
        return dict(self._counters)


# How long the autopilot waits for a watcher's keep-alive before it starts the watcher again.
def silent_for_too_long(reported_at: datetime | None, now: datetime, config: WatchConfig) -> bool:
    if reported_at is None:
        return False
    return now > reported_at + 3 * config.report_every + timedelta(minutes=1)
