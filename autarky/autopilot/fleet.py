"""The autopilot across many hosts: what its host watchers and its action runs tell it (types, pure code).

Since release 25 the autopilot does not hold every host's window and detectors in its own state: one
`AutopilotHostWorkflow` per host probes, keeps the window and the detectors, continues-as-new on its own
and reports the host's findings to the autopilot by signal when they change. Each action runs as its own
`AutopilotActionWorkflow` and reports its outcome by signal, so the autopilot can continue-as-new while
actions run. The autopilot keeps what must be decided together: the decision engine, the concurrency
limit and the learning pooled over all hosts. Its state per host is a small summary (`HostState` with the
last sample and the findings), so its continue-as-new input grows by about a kilobyte per host.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from autarky.autopilot.types import ActionRecord, ActionStatus, HostState, MetricPoint, WatchConfig
from autarky.core.findings import Finding, Severity

# Signal names (the autopilot's and its watchers').
HOST_REPORT = "host_report"
ACTION_FINISHED = "action_finished"
WATCH_CONFIGURE = "configure"
WATCH_RESUME = "resume"
WATCH_STOP = "stop"
WATCH_SCALED = "scaled"


def watcher_id(autopilot_id: str, host: str) -> str:
    """A readable id: the host's watcher is found from the autopilot's id and the host's."""
    return f"{autopilot_id}-host-{host}"


def action_run_id(autopilot_id: str, action_id: str) -> str:
    """The action's own workflow (a child workflow the action starts is `<autopilot_id>-<action_id>`)."""
    return f"{autopilot_id}-run-{action_id}"


class HostWatchInput(BaseModel):
    host: str
    autopilot_id: str  # where reports go (the autopilot's workflow id: its current run)
    pool_task_queue: str  # the host's pool queue is `<pool_task_queue>@<host>` (the probe reads its backlog)
    config: WatchConfig
    state: HostState | None = None  # carried across continue-as-new (window, detectors, pool memory)
    last_report: HostReport | None = None
    report_sequence: int = 0
    counters: dict[str, int] = Field(default_factory=dict)


class HostReport(BaseModel):
    """One watcher's news for the autopilot: the host's findings and a summary of its last sample."""

    host: str
    generation: str = ""  # the watcher's first run id: a new watcher counts its reports from 1 again
    sequence: int  # per watcher; a late report older than one already applied is ignored
    reported_at: datetime
    findings: list[Finding] = Field(default_factory=list)
    last_point: MetricPoint | None = None  # without its per-process figures (see `runs_pool`)
    runs_pool: bool = False  # the last sample saw members of a local worker pool
    last_seen: datetime | None = None
    probe_failures: int = 0
    unreachable_since: datetime | None = None
    counters: dict[str, int] = Field(default_factory=dict)  # the watcher's, e.g. probe failures, cumulative


# A report carries at most this many findings (the most urgent): the autopilot's state per host stays
# small during an incident on every host at once. One remedy per action type is planned anyway.
MAX_FINDINGS_REPORTED = 8


def most_urgent(findings: list[Finding]) -> list[Finding]:
    """Critical findings first, otherwise in the analysis's order, at most MAX_FINDINGS_REPORTED."""
    ranked = sorted(findings, key=lambda f: f.severity != Severity.CRITICAL)
    return ranked[:MAX_FINDINGS_REPORTED]


def what_changed(previous: HostReport | None, report: HostReport, params: Sequence[str] = ()) -> bool:
    """Whether a report says something the autopilot has not heard: new or gone findings, reachability,
    the pool. Values alone (CPU 91 % then 92 %) are not news; the keep-alive carries them. A finding's
    `params` named here are news when they change (the capacity a scaling finding asks for: an autopilot
    that kept the old one would ask for it again and again)."""
    if previous is None:
        return True

    def gist(r: HostReport) -> tuple[object, ...]:
        kinds = sorted(
            (f.kind, f.metric, f.severity.value, f.subject or "", *(f.params.get(p, "") for p in params))
            for f in r.findings
        )
        return (kinds, r.runs_pool, r.unreachable_since is None, r.counters)

    return gist(previous) != gist(report)


class ActionRunInput(BaseModel):
    """One action, run as its own workflow; it reports to the autopilot `autopilot_id` when done."""

    record: ActionRecord
    autopilot_id: str
    control_task_queue: str
    heartbeat_timeout: timedelta


class ActionOutcome(BaseModel):
    """What the autopilot learns from: the record's final fields, and whether improvement was measured."""

    action_id: str
    status: ActionStatus
    improvement: float | None = None
    detail: str = ""
    error: str | None = None
    improvement_measured: bool = False
    finished_at: datetime
    # The action as planned: an autopilot that did not start it (a new one after a terminate) still
    # records and learns from it.
    record: ActionRecord | None = None
