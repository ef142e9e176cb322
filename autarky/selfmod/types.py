"""Types of self-modification: evolvable agents, their versions and candidates, sandbox runs.

Shared by the pure policy (autarky/selfmod/policy.py), the activities (activities/selfmod/), the
workflow (workflows/self_modify.py) and the CLI. Workflow and activity inputs are single models, so fields
can be added without breaking histories.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

Direction = Literal["max", "min"]
ImprovementKind = Literal["absolute", "relative"]


class ParameterSpec(BaseModel):
    """One tunable parameter of an agent and the range a search may explore."""

    name: str
    low: float
    high: float
    integer: bool = False
    # Searched on a log scale (sizes, half-points): a step doubles or halves rather than adds.
    log_scale: bool = False


class AgentSpec(BaseModel):
    """An evolvable agent: which files a candidate may change, what it may tune, how it is tested and
    measured. Declared in code (autarky/selfmod/agents.py); a person cannot widen it from the CLI."""

    name: str
    description: str
    # What the agent is for, in plain prose: an approved research experiment whose plan matches it starts
    # this agent's evolution (autarky/selfmod/experiments.py). Empty: the description stands in.
    purpose: str = ""
    # Paths relative to the project root: the only files a candidate may change.
    source_files: list[str]
    parameters: list[ParameterSpec]
    # Test files (relative to the project root) run in the sandbox against every candidate.
    test_files: list[str]
    # Modules a candidate's sources may import (top-level names); anything else fails the static check.
    allowed_imports: list[str]
    metric: str
    direction: Direction = "max"
    # Promote only when the estimated improvement reaches this bar (and the interval's lower bound is
    # above 0: autarky.selfmod.policy.clears_bar): in the metric's own points
    # ("absolute": a bounded metric, e.g. +3 NAB points) or as a share of the incumbent's figure
    # ("relative": an unbounded one, e.g. 0.15 = +15 %).
    improvement: ImprovementKind = "relative"
    threshold: float = Field(0.15, ge=0)
    # The best figure the metric can take (100 for accuracy in %), where it is bounded: an evolution
    # whose bar cannot be cleared below it is not started (autarky.selfmod.goals).
    best_possible: float | None = None
    # Parameter-only promotions need a person's approval too (LLM-written code always does).
    risky: bool = False
    # Incumbent/candidate benchmark pairs on the decision part (A B A B …).
    repeats: int = Field(2, ge=1, le=20)
    # How the data is split into the part the search sees and the part that decides, fixed and recorded.
    split: str = ""
    # The figure on the decision part the agent should reach; below it the autopilot may evolve it.
    goal: float | None = None
    # The product runs a promoted version's code at run time, in the sandbox (else only its parameters
    # apply live, and changed code waits for a worker built from it).
    live_code: bool = False


class SandboxLimits(BaseModel):
    """Limits of one sandboxed run; a run that hits one is stopped and reported with the limit's name."""

    cpu_seconds: int = Field(120, ge=1)
    memory_mib: int = Field(2048, ge=64)  # address space
    processes: int = Field(64, ge=4)
    file_size_mib: int = Field(64, ge=1)  # largest file the run may write, its output included
    wall_seconds: float = Field(300, gt=0)
    output_bytes: int = Field(64 * 1024, ge=1024)  # kept of stdout+stderr; the rest is cut


class SandboxLimit(StrEnum):
    """Which limit stopped a run."""

    WALL_CLOCK = "wall_clock"
    CPU = "cpu_seconds"
    MEMORY = "memory"
    PROCESSES = "processes"
    FILE_SIZE = "file_size"


class SandboxResult(BaseModel):
    exit_code: int | None  # None: killed by a signal
    signal: int | None = None
    limit: SandboxLimit | None = None
    output: str = ""  # stdout and stderr interleaved, at most limits.output_bytes
    output_truncated: bool = False
    wall_seconds: float = 0.0
    # What guarded the run ("seccomp filter", "own session keyring", …), for its log and for people.
    protections: list[str] = Field(default_factory=list)
    # Totals (memory, processes, cpu_seconds) this machine could not bound for the whole run, and why.
    unbounded: dict[str, str] = Field(default_factory=dict)
    cpu_seconds_used: float | None = None  # by the whole run, where its cgroup counts it
    memory_peak_mib: float | None = None  # of the whole run, where its cgroup counts it

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.limit is None

    def summary(self) -> str:
        """One line a person can read: how the run ended."""
        if self.limit is not None:
            how = f"stopped by the {self.limit.value.replace('_', ' ')} limit"
        elif self.exit_code is None:
            how = f"killed by signal {self.signal}"
        else:
            how = f"exit {self.exit_code}"
        cut = ", output cut" if self.output_truncated else ""
        return f"{how} after {self.wall_seconds:.1f} s{cut}"


class AgentVersion(BaseModel):
    """A version of an agent in its version repository: a commit and the parameters it carries."""

    agent: str
    commit: str
    parameters: dict[str, float]
    message: str = ""


class ActivePointer(BaseModel):
    """What the product reads at run time: the active version of an agent and where it came from."""

    agent: str
    commit: str
    parameters: dict[str, float]
    previous: str | None = None  # the commit a rollback returns to
    changed_at: datetime
    changed_by: str  # workflow id, "bootstrap" or a person
    reason: str = ""
    metric: float | None = None  # the decision-part figure at promotion
    # The version's sources differ from the ones Autarky shipped: a product that can load code runs
    # them (the research analyser); one that cannot (the autopilot's detector) runs it only on workers
    # built from its sources (activities/selfmod/running_version.py), never its parameters on other code.
    code_changed: bool = False


class CandidateOrigin(StrEnum):
    INCUMBENT = "incumbent"
    MUTATION = "mutation"
    LLM = "llm"


class Candidate(BaseModel):
    """A proposed version. Diffs and logs live in the agent's storage; histories carry their paths."""

    key: str  # readable and unique within a run: "g1c3"
    commit: str
    parameters: dict[str, float]
    origin: CandidateOrigin
    summary: str = ""
    diff_path: str | None = None
    diff_lines: int = 0
    diff_excerpt: str = ""  # the start of an LLM patch, for the approval (the whole diff is at diff_path)


class CheckOutcome(BaseModel):
    """Static check or sandbox test of one candidate."""

    passed: bool
    reason: str = ""  # why not, in a sentence
    log_path: str | None = None


class Interval(BaseModel):
    """Improvement of a candidate over the incumbent with its bootstrap confidence interval: relative
    (0.2 = 20 % better) or absolute (in the metric's points), as the agent's bar counts it."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    kind: ImprovementKind = "relative"

    def show(self, value: float) -> str:
        """`value` (an estimate, a bound, a bar) in this interval's unit: "+12.5 %" or "+3.10 points"."""
        return f"{value:+.1%}" if self.kind == "relative" else f"{value:+.2f} points"

    def text(self) -> str:
        return (
            f"{self.show(self.estimate)} ({self.confidence:.1%} interval {self.show(self.low)} … "
            f"{self.show(self.high)})"
        )


class BenchmarkOutcome(BaseModel):
    incumbent: float
    candidate: float
    improvement: Interval
    runs: int  # sandboxed benchmark runs made
    log_path: str | None = None
    # Which look at the decision part this was (its confidence is spent accordingly), of which data.
    look: int = 1
    data_version: str = ""
    bar: float | None = None  # the agent's bar in the interval's unit (None: comparisons before release 30)


# ---------------------------------------------------------------- workflow and activity inputs


class SelfModifyInput(BaseModel):
    agent: str
    offline: bool = False  # never ask an LLM, even when one is configured
    generations: int = Field(3, ge=1, le=50)
    population: int = Field(4, ge=1, le=32)  # λ of the (1+λ) evolution strategy, or LLM patches
    threshold: float | None = None  # None: the agent's own
    require_approval: bool | None = None  # None: the agent's `risky`; LLM code always asks
    approval_timeout: timedelta = timedelta(days=3)
    # The watch after a promotion (round 2, release 30): every `watch_interval`, `watch_runs` times, the
    # promoted version's live metric since `watch_settle` after the promotion is tested against the
    # incumbent's over the `watch_baseline` before it (autarky.selfmod.live_watch); a significant drop
    # beyond `regression_tolerance` (relative) rolls back. `watch_alpha` is shared by all the looks.
    watch_runs: int = Field(7, ge=0)
    watch_interval: timedelta = timedelta(days=1)
    watch_baseline: timedelta = Field(timedelta(days=28), gt=timedelta(0))
    watch_settle: timedelta = Field(timedelta(minutes=10), ge=timedelta(0))  # hosts re-read versions
    watch_alpha: float = Field(0.05, gt=0, lt=0.5)
    regression_tolerance: float = Field(0.05, ge=0, lt=1)
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    parallel_checks: int = Field(2, ge=1, le=16)  # candidates checked in the sandbox at the same time
    requested_by: str = "cli"
    reason: str = ""
    # An approved research experiment's plan and source, for the LLM that writes patches
    # (autarky/selfmod/experiments.py: experiment_brief); empty for other runs.
    brief: str = ""
    # How parameter children are made without an LLM: "es" the (1+λ) strategy from the best so far;
    # "archive" mutations of parents drawn from a MAP-Elites archive by score and novelty
    # (autarky.selfmod.archive); "cma" CMA-ES over every measured point (autarky.selfmod.cma_search).
    search: Literal["es", "archive", "cma"] = "es"
    # Where the self-modification activities run (full workers' research queue).
    activity_task_queue: str = "autarky-research"


class SelfModifyResult(BaseModel):
    agent: str
    status: str  # promoted, rolled_back, not_promoted, rejected, failed
    incumbent_commit: str
    promoted_commit: str | None = None
    baseline_search: float | None = None
    baseline_decision: float | None = None
    best_search: float | None = None
    best_decision: float | None = None
    improvement: Interval | None = None
    candidates: int = 0
    sandbox_runs: int = 0
    failed_candidates: int = 0
    message: str = ""
    watch: str = ""  # what the live watch saw last (round 2)
    generations: list[GenerationBest] = Field(default_factory=list)  # the best so far after each


class GenerationBest(BaseModel):
    generation: int
    commit: str
    search: float  # its figure on the search part


class Snapshot(BaseModel):
    spec: AgentSpec
    pointer: ActivePointer
    units: dict[str, int]  # per data part, how many units (files, examples) it has
    llm: str  # "offline" or "provider:model": what would write patches
    # The queue of the host that took this step (its own, which it serves): the run's later steps go
    # there. None: a worker without one; the steps stay on the shared queue.
    task_queue: str | None = None
    # The agent's shipped parameters (a generated agent's live in the knowledge base, which workflow code
    # must not read); empty in snapshots taken before release 30.
    defaults: dict[str, float] = Field(default_factory=dict)


class AgentRunInput(BaseModel):
    agent: str
    run_id: str


class ActiveAgentInput(BaseModel):
    agent: str


class StartEvolutionInput(BaseModel):
    agent: str
    requested_by: str
    reason: str = ""
    brief: str = ""  # the approved experiment's plan and source (SelfModifyInput.brief)


class StartedEvolution(BaseModel):
    workflow_id: str | None = None
    refused: str | None = None  # why none was started (one is running already, …)


class ShortfallInput(BaseModel):
    # An agent evolved this recently is not proposed again, whatever its figure.
    cooldown: timedelta = timedelta(days=7)


class AgentShortfall(BaseModel):
    agent: str
    commit: str
    figure: float
    goal: float
    metric: str


class MeasuredFigure(BaseModel):
    """The active version's figure on the decision part, cached beside the agent's repository."""

    commit: str
    figure: float
    measured_at: datetime
    data_version: str = ""  # of the decision part it was measured on: new data is measured again


def shortfall_finding_message(s: AgentShortfall) -> str:
    return (
        f"agent {s.agent} scores {s.figure:.1f} on its decision data ({s.metric}), "
        f"short of its goal {s.goal:.1f}"
    )


class ParameterProposal(BaseModel):
    key: str
    parameters: dict[str, float]


class MakeCandidatesInput(BaseModel):
    agent: str
    run_id: str
    base: str
    proposals: list[ParameterProposal]


class ProposePatchesInput(BaseModel):
    agent: str
    run_id: str
    base: str
    generation: int
    count: int
    baseline: float
    failures: list[str] = Field(default_factory=list)
    brief: str = ""  # SelfModifyInput.brief: put in the LLM's prompt


class ProposeOutcome(BaseModel):
    candidates: list[Candidate]
    rejected: list[str]  # why each refused proposal was refused
    cost_usd: float = 0.0


class CheckInput(BaseModel):
    agent: str
    run_id: str
    candidate: Candidate
    limits: SandboxLimits = Field(default_factory=SandboxLimits)


class MeasureInput(BaseModel):
    """Run commits on a data part in the sandbox, interleaved (A B A B …), and judge them outside."""

    agent: str
    run_id: str
    part: Literal["search", "decision"]
    commits: list[str]
    repeats: int = Field(1, ge=1)
    label: str = "measure"  # names the stored unit figures and logs
    limits: SandboxLimits = Field(default_factory=SandboxLimits)


class Measurement(BaseModel):
    figures: dict[str, float]  # commit → mean figure over repeats (commits that failed are absent)
    failures: dict[str, str] = Field(default_factory=dict)  # commit → why
    runs: int = 0
    units_path: str | None = None  # per-unit figures, for the bootstrap and for people


class CompareInput(BaseModel):
    agent: str
    run_id: str
    incumbent: str
    candidate: str
    repeats: int = Field(2, ge=1)
    seed: int = 0
    limits: SandboxLimits = Field(default_factory=SandboxLimits)


class PromoteInput(BaseModel):
    agent: str
    commit: str
    by: str
    reason: str = ""
    metric: float | None = None
    expected: str | None = None  # only over this active version (the incumbent compared with)


class RollbackInput(BaseModel):
    agent: str
    by: str
    reason: str
    to: str | None = None  # None: the version before the active one
    only_if: str | None = None  # only while this version is active


class ReviewInput(BaseModel):
    agent: str
    commit: str  # the version to promote


class PromotionReview(BaseModel):
    """How the version to promote differs from the sources this release ships; a diff, if any, is in the
    knowledge base under `diff_id` (activities/selfmod/diff_store.py)."""

    differs: bool
    diff_id: int | None = None
    diff_lines: int = 0  # added plus removed
    excerpt: str = ""  # its start, ending with how much is cut and where the whole diff is


# ---------------------------------------------------------------------------------------- activity stubs
# What workflows schedule for self-modification, typed: the SDK takes each activity's name and result type
# from these. The implementations live in activities/selfmod/ (git, the sandbox and the LLM SDKs stay out
# of workflows); tests/test_activity_contract.py keeps names and types equal to the registered ones.

_IN_SELFMOD = "activities/selfmod/activities.py (SelfModActivities)"


@activity.defn(name="snapshot_agent")
async def snapshot_agent(request: AgentRunInput) -> Snapshot:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="make_candidates")
async def make_candidates(request: MakeCandidatesInput) -> list[Candidate]:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="propose_patches")
async def propose_patches(request: ProposePatchesInput) -> ProposeOutcome:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="check_candidate")
async def check_candidate(request: CheckInput) -> CheckOutcome:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="measure")
async def measure(request: MeasureInput) -> Measurement:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="compare")
async def compare(request: CompareInput) -> BenchmarkOutcome:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="promote_version")
async def promote_version(request: PromoteInput) -> ActivePointer:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="rollback_version")
async def rollback_version(request: RollbackInput) -> ActivePointer:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="review_promotion")
async def review_promotion(request: ReviewInput) -> PromotionReview:
    raise NotImplementedError("activities/selfmod/review.py (PromotionReviewActivities)")


@activity.defn(name="active_agent_parameters")
async def active_agent_parameters(request: ActiveAgentInput) -> ActivePointer | None:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="agent_shortfalls")
async def agent_shortfalls(request: ShortfallInput) -> list[AgentShortfall]:
    raise NotImplementedError(_IN_SELFMOD)


@activity.defn(name="start_evolution")
async def start_evolution(request: StartEvolutionInput) -> StartedEvolution:
    raise NotImplementedError("activities/selfmod/requests.py (EvolutionRequestActivities)")
