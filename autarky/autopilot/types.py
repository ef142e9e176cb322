"""The autopilot's typed payloads: probe samples, metric points, decisions, action records, its state,
input and status.

Every workflow and activity takes exactly one of these models as input, so fields can be added later
without breaking recorded histories (give new fields defaults).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field
from temporalio import activity

from autarky.autopilot.detectors.anomaly import AnomalyState
from autarky.autopilot.detectors.trend import TrendSeries
from autarky.autopilot.settings import AutopilotSettings
from autarky.core.actions import ActionResult
from autarky.core.approval import ApprovalRequest
from autarky.core.findings import Finding
from autarky.scaling.policy_types import ScalingMemory


class CpuStats(BaseModel):
    percent: float
    per_core_percent: list[float]
    load_1m: float
    load_5m: float
    load_15m: float
    core_count: int


class MemoryStats(BaseModel):
    total_bytes: int
    available_bytes: int
    used_percent: float
    swap_total_bytes: int
    swap_used_percent: float


class DiskStats(BaseModel):
    path: str
    total_bytes: int
    used_bytes: int
    used_percent: float
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_count: int | None = None
    write_count: int | None = None


class NetworkIOStats(BaseModel):
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errors_in: int
    errors_out: int
    drops_in: int
    drops_out: int


class Temperature(BaseModel):
    sensor: str
    label: str
    current_celsius: float
    high_celsius: float | None = None
    critical_celsius: float | None = None


class ProcessInfo(BaseModel):
    pid: int
    name: str
    rss_bytes: int
    cpu_percent: float | None = None
    role: str | None = None  # for Autarky's own processes: "pool member" or "autarky"


class HostSample(BaseModel):
    taken_at: datetime
    hostname: str
    cpu: CpuStats
    memory: MemoryStats
    disk: DiskStats
    network: NetworkIOStats
    temperatures: list[Temperature] = Field(default_factory=list)
    # Why temperatures are empty, e.g. "not available on this platform"; None when there are readings.
    temperatures_note: str | None = None
    top_processes: list[ProcessInfo] = Field(default_factory=list)
    # Autarky's own processes, whatever their size: the leak detector watches these.
    own_processes: list[ProcessInfo] = Field(default_factory=list)
    # Activity tasks waiting in the local pool's queue, and how long the oldest has waited (when asked).
    pool_backlog: int | None = None
    pool_backlog_age_seconds: float | None = None
    # The local pool's members, from its files on this host (None where the worker has no pool): live
    # members by pid, their pool-queue activities in flight (summed), one member's slots, the recorded size
    # (0 is a size), and the longest schedule-to-start of a task a member started in the last minute.
    pool_members: int | None = None
    pool_in_flight: int | None = None
    pool_slots_per_member: int | None = None
    pool_desired: int | None = None
    pool_schedule_to_start_seconds: float | None = None


class HostProbeInput(BaseModel):
    disk_path: str = "/"
    top_processes: int = Field(5, ge=0, le=100)
    own_processes: bool = True
    # The local pool's queue: its backlog and the backlog's age go into the sample (pool scaling).
    pool_task_queue: str | None = None


class TargetProbeResult(BaseModel):
    target: str
    attempts: int
    successes: int
    loss_ratio: float
    latency_ms_avg: float | None = None
    latency_ms_min: float | None = None
    latency_ms_max: float | None = None
    error: str | None = None


class NetworkProbeInput(BaseModel):
    targets: list[str]
    attempts: int = Field(3, ge=1, le=50)
    timeout_seconds: float = Field(1.0, gt=0, le=30)


class NetworkSample(BaseModel):
    taken_at: datetime
    targets: list[TargetProbeResult]


class MetricPoint(BaseModel):
    """The compact form of one Monitor round that the autopilot keeps in its window."""

    at: datetime
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    network_latency_ms: float | None = None
    network_loss_ratio: float | None = None
    memory_total_bytes: int | None = None
    # The hottest sensor relative to its critical temperature, when the platform has sensors.
    temperature_celsius: float | None = None
    temperature_critical_celsius: float | None = None
    # RSS of Autarky's own processes, keyed "role pid" (e.g. "pool member 4242").
    process_rss_bytes: dict[str, int] = Field(default_factory=dict)
    # The CPU the pool's members used, in the host's terms (comparable with cpu_percent); None when the
    # sample did not say (older samples, or no pool).
    pool_cpu_percent: float | None = None
    pool_backlog: int | None = None
    pool_backlog_age_seconds: float | None = None
    # As in HostSample: what more pool members relieve (slots in use), and the pool's recorded size.
    pool_members: int | None = None
    pool_in_flight: int | None = None
    pool_slots_per_member: int | None = None
    pool_desired: int | None = None
    pool_schedule_to_start_seconds: float | None = None


# ---------------------------------------------------------------------------------------- actions


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class CandidateAction(BaseModel):
    action_type: str
    priority: Priority
    expected_improvement: float = Field(ge=0, le=1)
    risk: float = Field(ge=0, le=1)
    reason: str
    finding_kind: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    host: str | None = None  # the host whose finding this answers; its remedy runs there


class Decision(BaseModel):
    candidate: CandidateAction
    success_probability: float
    expected_value: float
    improvement: float | None = None  # the expected improvement the engine used (learned)
    score: float
    execute: bool
    needs_approval: bool
    why: str


class ActionStatus(StrEnum):
    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    SIMULATED = "simulated"
    NOTHING_TO_DO = "nothing_to_do"
    NOT_DELIVERED = "not_delivered"  # no worker of the host took it in time: not run


class ActionRecord(BaseModel):
    action_id: str
    decision: Decision
    status: ActionStatus
    planned_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    improvement: float | None = None
    duration_seconds: float | None = None
    detail: str = ""
    error: str | None = None
    approval_id: str | None = None


class ActionTypeStats(BaseModel):
    """Knowledge: outcomes seen per action type (see autarky.autopilot.policy.learning for the model)."""

    # Raw counts, for people.
    attempts: int = 0
    successes: int = 0
    total_improvement: float = 0.0
    # Evidence as the engine weighs it: each outcome counts 2^(−age / half-life), as of `updated_at`.
    weight: float = 0.0  # decayed attempts
    weighted_successes: float = 0.0
    improvement_weight: float = 0.0  # decayed count of successes whose improvement was measured
    weighted_improvement: float = 0.0  # decayed sum of those improvements
    updated_at: datetime | None = None


# ---------------------------------------------------------------------------------------- autopilot


class Goal(BaseModel):
    metric: str
    target: float
    direction: str  # "below" or "above"
    current: float | None
    achieved: bool
    progress: float
    host: str | None = None


class DetectionState(BaseModel):
    """The statistical detectors' memory, carried across continue-as-new (autopilot.policy.detection)."""

    anomaly: dict[str, AnomalyState] = Field(default_factory=dict)  # per metric
    # Trend windows: "disk_percent", "temperature_percent_of_critical", "rss <role> <pid>".
    trends: dict[str, TrendSeries] = Field(default_factory=dict)
    memory_total_bytes: int | None = None
    anomalies: list[Finding] = Field(default_factory=list)  # recent anomaly findings, held a while


class HostState(BaseModel):
    """What the autopilot knows of one host: its samples, detector memory and current findings."""

    window: list[MetricPoint] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    detection: DetectionState = Field(default_factory=DetectionState)
    last_seen: datetime | None = None  # its last successful host probe
    probe_failures: int = 0  # in a row
    # No worker of the host took its probe in time; it is skipped until one polls again after this.
    unreachable_since: datetime | None = None
    last_polled: datetime | None = None  # as the last discovery saw it
    scaling: ScalingMemory = Field(default_factory=ScalingMemory)  # its local pool's policy memory
    # Since release 25 the host's watcher holds its window and detectors; the autopilot keeps its reports:
    runs_pool: bool | None = None  # its last sample saw pool members (None: the window says, older runs)
    reported_at: datetime | None = None  # the watcher's last report
    report_sequence: int = 0
    watcher_generation: str | None = None  # the first run id of the watcher that reported last
    counters: dict[str, int] = Field(default_factory=dict)  # the watcher's, as last reported


class Snooze(BaseModel):
    """A remedy a person rejected (or let expire): not proposed again for that host until `until`."""

    action_type: str
    host: str | None = None
    until: datetime
    why: str


class WatchConfig(BaseModel):
    """What a host's watcher needs from the autopilot (autarky/autopilot/fleet.py); sent again whenever it
    changes."""

    settings: AutopilotSettings
    # The anomaly detector's evolved parameters (self-modification), None for the shipped ones.
    anomaly_parameters: dict[str, float] | None = None
    # Report at least this often, even when nothing changed (the autopilot's proof the watcher is alive).
    report_every: timedelta = timedelta(minutes=5)
    rounds_per_run: int = Field(300, ge=1)  # monitor rounds before the watcher continues-as-new


class AutopilotState(BaseModel):
    """Compact state carried across continue-as-new."""

    started_at: datetime | None = None
    runs: int = 0  # how many continue-as-new generations came before this one
    iterations: int = 0
    knowledge: dict[str, ActionTypeStats] = Field(default_factory=dict)
    # Per host (the key is its host id).
    hosts: dict[str, HostState] = Field(default_factory=dict)
    active_hosts: list[str] = Field(default_factory=list)  # found polling at the last discovery
    hosts_discovered_at: datetime | None = None
    queued: list[ActionRecord] = Field(default_factory=list)
    recent_actions: list[ActionRecord] = Field(default_factory=list)
    approvals: list[ApprovalRequest] = Field(default_factory=list)
    snoozes: list[Snooze] = Field(default_factory=list)
    totals: dict[str, int] = Field(default_factory=dict)
    sequence: int = 0
    # The latest research cycle's finding (failed, stopped for budget), None while research is well.
    research_finding: Finding | None = None
    # Model variants never A/B tested (not a host's: routed to the shared queue), and when last looked.
    model_findings: list[Finding] = Field(default_factory=list)
    variants_checked_at: datetime | None = None
    # The anomaly detector's active version (self-modification), read every agent_version_check_interval.
    anomaly_version: str | None = None
    anomaly_parameters: dict[str, float] | None = None
    agents_checked_at: datetime | None = None
    agent_findings: list[Finding] = Field(default_factory=list)  # agents short of their goals
    goals_checked_at: datetime | None = None
    agents_evolve_planned_at: dict[str, datetime] = Field(default_factory=dict)  # per agent, for the cooldown
    # Since release 25 (patch `autopilot-hosts-apart`, deleted in 27): ids are `<prefix>-<lineage>-<n>`, the
    # lineage drawn once per autopilot, so a new autopilot never reuses an old one's ids; actions run in
    # their own workflows and are carried across continue-as-new while they run; each host has a watcher.
    lineage: str | None = None
    running: list[ActionRecord] = Field(default_factory=list)
    watchers: dict[str, datetime] = Field(default_factory=dict)  # host → when its watcher was started
    watch_config: WatchConfig | None = None  # the configuration the watchers were last sent


class AutopilotInput(BaseModel):
    settings: AutopilotSettings = Field(default_factory=AutopilotSettings)
    state: AutopilotState | None = None
    # Actions that manage the local worker pool run only where the pool lives (the `autarky up` process).
    control_task_queue: str = "autarky-control"
    pool_task_queue: str = "autarky-pool"  # the local pools' queues are `<pool_task_queue>@<host>`
    research_task_queue: str = "autarky-research"  # where the model registry's activities run


class AutopilotStatus(BaseModel):
    state: str  # "running", "simulating", "waiting for approval"
    simulation: bool
    started_at: datetime | None
    uptime_seconds: float
    iterations: int
    runs: int
    pending_approvals: int
    queued_actions: int
    active_actions: int
    completed_actions: int
    totals: dict[str, int]
    success_probabilities: dict[str, float]
    knowledge: dict[str, ActionTypeStats] = Field(default_factory=dict)
    findings: list[Finding]
    last_sample: MetricPoint | None
    expected_improvements: dict[str, float] = Field(default_factory=dict)  # learned, per action type
    hosts: dict[str, MetricPoint | None] = Field(default_factory=dict)  # each host's last sample
    snoozes: list[Snooze] = Field(default_factory=list)
    # Evolved agents the autopilot runs (self-modification): agent → active version's commit.
    agent_versions: dict[str, str] = Field(default_factory=dict)


class RecentActionsQuery(BaseModel):
    count: int = Field(20, ge=1, le=1000)


class HousekeepingInput(BaseModel):
    max_age: timedelta = timedelta(days=7)
    host: str | None = None  # prune on this host only; None: on every host running a worker
    reason: str = "scheduled housekeeping"


class PruneCacheInput(BaseModel):
    max_age: timedelta
    reason: str = ""


# ---------------------------------------------------------------------------------------- activity stubs
# What the autopilot and housekeeping schedule on a host, typed: the SDK takes each activity's name and
# result type from these. The implementations live in activities/infra/ (psutil stays out of workflows);
# tests/test_activity_contract.py keeps names and types equal to the registered ones.


@activity.defn(name="probe_host")
async def probe_host(request: HostProbeInput) -> HostSample:
    raise NotImplementedError("activities/infra/probes.py")


@activity.defn(name="probe_network")
async def probe_network(request: NetworkProbeInput) -> NetworkSample:
    raise NotImplementedError("activities/infra/probes.py")


@activity.defn(name="prune_cache")
async def prune_cache(request: PruneCacheInput) -> ActionResult:
    raise NotImplementedError("activities/infra/remediation.py (RemediationActivities)")
