"""Messages of the research cycle and of experiments: workflow inputs, activity inputs and results.

They carry ids, scores and counts, never documents: titles, abstracts, rationales and plans stay in the
knowledge base, so a cycle over hundreds of items keeps a small history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

from autarky.research.items import ExperimentRef, ExperimentUpdate

# "sample": the synthetic items the project ships, gathered when no real source answers (or always), so an
# offline stack shows the whole loop; never in SOURCES, the real ones.
SourceName = Literal["arxiv", "github", "sample"]
SOURCES: tuple[SourceName, ...] = ("arxiv", "github")
SAMPLE: SourceName = "sample"
SourceStatus = Literal["ok", "unavailable"]
# "skipped": another cycle held the one-at-a-time lease, so this one did nothing.
CycleStatus = Literal["running", "completed", "stopped_for_budget", "stopped_for_time", "failed", "skipped"]
SampleSource = Literal["auto", "always", "never"]


class CycleInput(BaseModel):
    """How a research cycle runs. None: the worker's configuration (`research.*`, `llm.*`) decides."""

    trigger: str = Field("schedule", description="'schedule' or who asked (e.g. 'cli')")
    # Where the research activities run (None: the workflow's own task queue).
    activity_task_queue: str | None = None
    # The autopilot to tell how the cycle ended (a failed or budget-stopped cycle is one of its findings).
    report_to: str | None = None
    concurrency: int | None = Field(None, ge=1, le=32)
    max_items: int | None = Field(None, ge=0)
    experiment_threshold: float | None = Field(None, ge=0, le=1)
    # How often a source is tried before the cycle goes on without it.
    source_attempts: int = Field(3, ge=1)
    source_retry_interval: timedelta = timedelta(seconds=5)
    analysis_attempts: int = Field(5, ge=1)
    analysis_retry_interval: timedelta = timedelta(seconds=2)
    # How long a research activity may wait for a worker of its task queue: without a research worker the
    # cycle fails after this, naming the queue, instead of waiting for its run timeout.
    activity_start_timeout: timedelta = Field(timedelta(minutes=5), gt=timedelta(0))
    # How long an experiment waits for a person's decision before it expires (rejected).
    approval_timeout: timedelta | None = None


class AnalyserKey(BaseModel):
    """Which analyses count as the current analyser's: with an LLM, any non-offline analysis with the
    current prompt version; offline, an offline analysis by the current offline model (its label changes
    with a promoted scorer or a retrained model). Recent items without one are analysed again."""

    label: str = Field(description="names the analyser on set-aside items, e.g. 'openai:gpt-5-mini'")
    offline: bool
    model: str = Field("", description="offline: the offline model's label")
    prompt_version: str = ""


class CyclePlan(BaseModel):
    """What `open_cycle` read from the worker's configuration and the knowledge base."""

    analyser: str = Field(description="'offline' or 'provider:model'")
    concurrency: int
    max_items: int
    experiment_threshold: float
    budget_per_cycle_usd: float
    budget_per_day_usd: float
    spent_today_usd: float
    approval_timeout: timedelta
    watermarks: dict[str, datetime | None] = Field(default_factory=dict)
    # Whether the analyser's calls cost money (a priced model): a free one is never stopped by a budget.
    priced: bool = False
    max_experiments: int = 10
    # Round 2 (None or defaults when an older worker opened the cycle).
    analyser_key: AnalyserKey | None = None
    reanalyse_since: datetime | None = None
    sample_source: SampleSource = "auto"
    # Another cycle holds the one-at-a-time lease: this one is skipped.
    held_by: str | None = None


class OpenCycleInput(BaseModel):
    cycle_id: str
    trigger: str
    started_at: datetime
    # Take the one-cycle-at-a-time lease until then (None: an older workflow, no lease).
    lease_until: datetime | None = None


class GatherInput(BaseModel):
    """Fetch one source from its watermark, store what it found, advance the watermark."""

    cycle_id: str
    source: SourceName
    since: datetime | None = None


class GatherResult(BaseModel):
    source: SourceName
    fetched: int
    new_items: int
    updated_items: int
    newest: datetime | None = None


class SourceOutcome(BaseModel):
    """One source in one cycle, as the digest, the memo and `autarky status` show it."""

    source: SourceName
    status: SourceStatus
    fetched: int = 0
    new_items: int = 0
    updated_items: int = 0
    error: str | None = None


class PendingInput(BaseModel):
    limit: int = Field(ge=0)
    # None: any analysis will do (older workflows); else the current analyser's, for items first seen
    # since `reanalyse_since`.
    analyser: AnalyserKey | None = None
    reanalyse_since: datetime | None = None


class AnalyseInput(BaseModel):
    cycle_id: str
    item_id: int


class AnalyseResult(BaseModel):
    item_id: int
    source: str
    source_id: str
    analysis_id: int
    score: float
    provider: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


class AnalysisFailure(BaseModel):
    """An analysis that failed for the item's own reason: counted on the item under its analyser (set
    aside after a few, back when the analyser changes). Its cost is the gateway's to record, not this."""

    cycle_id: str
    item_id: int
    error: str = Field(max_length=1000)
    cost: float = Field(0.0, ge=0, description="ignored: kept so older workflows' payloads still parse")
    analyser: str = ""


class CandidatesInput(BaseModel):
    min_score: float = Field(ge=0, le=1)
    limit: int = Field(ge=0)


class ItemScore(BaseModel):
    item_id: int
    score: float
    source: str = ""
    source_id: str = ""


class CycleOutcome(BaseModel):
    """The result of a cycle: what the digest, the memo, `autarky status` and the autopilot read."""

    cycle_id: str
    status: CycleStatus
    analyser: str
    sources: list[SourceOutcome] = Field(default_factory=list)
    new_items: int = 0
    analysed: int = 0
    failed: int = 0
    pending: int = Field(0, description="items left unanalysed (budget, limit): the next cycle takes them")
    top_score: float | None = None
    cost_usd: float = 0.0
    stopped_reason: str | None = None
    experiments: list[str] = Field(default_factory=list, description="workflow ids started")
    digest: str | None = None
    digest_error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def unavailable_sources(self) -> list[SourceOutcome]:
        return [s for s in self.sources if s.status != "ok"]


class DigestInput(BaseModel):
    outcome: CycleOutcome
    scores: list[ItemScore] = Field(default_factory=list)


class ExperimentInput(BaseModel):
    item_id: int
    score: float
    cycle_id: str
    title: str = Field("", max_length=300, description="for the UI only; the item is read by id")
    approval_timeout: timedelta = timedelta(days=7)
    activity_task_queue: str | None = None


class ExperimentStep(BaseModel):
    workflow_id: str
    item_id: int
    # Plan without the LLM (and say why): it failed, or today's budget is spent.
    offline_because: str | None = None


class PlanSummary(BaseModel):
    """What the approval shows a person; the full plan is in the knowledge base."""

    provider: str
    model: str
    offline: bool
    what: str = Field(max_length=400)
    metric: str = Field(max_length=200)
    cost: float = 0.0
    agent: str | None = None  # the evolvable agent it would improve: approved, its evolution starts
    brief: str = ""  # for that evolution's LLM: the plan and its source (autarky/selfmod/experiments.py)


ExperimentResultState = Literal["approved", "rejected", "expired", "failed"]


class ExperimentOutcome(BaseModel):
    workflow_id: str
    item_id: int
    state: ExperimentResultState
    decided_by: str | None = None
    reason: str | None = None


class ResearchReport(BaseModel):
    """What a finished cycle tells the autopilot (signal `research_outcome`)."""

    cycle_id: str
    status: CycleStatus
    reason: str | None = None
    unavailable_sources: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------- activity stubs
# What the research and experiment workflows schedule, typed: the SDK takes each activity's name and result
# type from these. The implementations live in activities/research/ (their libraries stay out of
# workflows); tests/test_activity_contract.py keeps names and types equal to the registered ones.

_IN_STORE = "activities/research/store.py (ResearchStoreActivities)"


@activity.defn(name="open_research_cycle")
async def open_research_cycle(request: OpenCycleInput) -> CyclePlan:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="unanalysed_items")
async def unanalysed_items(request: PendingInput) -> list[int]:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="count_unanalysed_items")
async def count_unanalysed_items(request: PendingInput | None = None) -> int:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="record_analysis_failure")
async def record_analysis_failure(failure: AnalysisFailure) -> bool:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="experiment_candidates")
async def experiment_candidates(request: CandidatesInput) -> list[ItemScore]:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="close_research_cycle")
async def close_research_cycle(outcome: CycleOutcome) -> None:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="open_experiment")
async def open_experiment(step: ExperimentStep) -> ExperimentRef:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="update_experiment")
async def update_experiment(update: ExperimentUpdate) -> ExperimentRef:
    raise NotImplementedError(_IN_STORE)


@activity.defn(name="gather_source")
async def gather_source(request: GatherInput) -> GatherResult:
    raise NotImplementedError("activities/research/gather.py (GatherActivities)")


@activity.defn(name="analyse_item")
async def analyse_item(request: AnalyseInput) -> AnalyseResult:
    raise NotImplementedError("activities/research/analysis.py (AnalysisActivities)")


@activity.defn(name="plan_experiment")
async def plan_experiment(step: ExperimentStep) -> PlanSummary:
    raise NotImplementedError("activities/research/analysis.py (AnalysisActivities)")


@activity.defn(name="write_research_digest")
async def write_research_digest(request: DigestInput) -> str | None:
    raise NotImplementedError("activities/research/digest.py (DigestActivities.write_digest)")
