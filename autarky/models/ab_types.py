"""Messages of the A/B model test: its input (validated before anything changes), status and result."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from autarky.models.group_sequential import GroupSequentialPlan

Metric = Literal["quality", "valid", "latency_ms", "cost"]
Direction = Literal["higher", "lower"]
ABDecision = Literal["running", "promoted", "kept", "rolled_back", "aborted", "failed"]
# Round 2's designs (autarky.models.group_sequential, autarky.models.sequential); an offline slot's test is
# paired instead (autarky.models.paired): both variants score the same labelled examples.
Design = Literal["group_sequential", "always_valid"]
# Which way is better for each metric unless the input says otherwise.
DEFAULT_DIRECTION: dict[str, Direction] = {
    "quality": "higher",
    "valid": "higher",
    "latency_ms": "lower",
    "cost": "lower",
}


class Guardrails(BaseModel):
    """What the challenger must not do to the traffic it serves; a breach stops the test at once and routes
    all traffic back to the incumbent.

    Round 2 (tests started from release 27 on): each guardrail is a test of the challenger against the
    incumbent over the last `window` evaluation periods, declared breached only when the evidence says so
    (autarky.models.guardrails): the chance of a false rollback over the whole test is at most `alpha`.
    The limits are margins over the incumbent (an absolute increase of the error rate, of the share of
    calls slower than the incumbent's p95; a relative increase of the cost per call). The absolute limits
    below (max_error_rate, max_p95_latency_ms, max_cost_per_call) are tested the same way when set.
    None: not checked."""

    max_error_rate: float | None = Field(0.05, ge=0, le=1)
    max_p95_latency_ms: float | None = Field(None, gt=0)
    max_cost_per_call: float | None = Field(None, ge=0)
    # Guardrails are judged once the challenger has this many calls (a single early error is not a rate).
    min_calls: int = Field(20, ge=1)
    # Round 2: margins over the incumbent, in the recent window.
    max_error_increase: float | None = Field(0.02, ge=0, le=1, description="absolute, e.g. 2 % → 4 %")
    max_slow_increase: float | None = Field(
        0.05, ge=0, le=1, description="absolute increase of the share slower than the incumbent's p95 (5 %)"
    )
    max_cost_increase: float | None = Field(0.25, ge=0, description="relative, e.g. 0.25: 25 % dearer")
    window: int = Field(5, ge=1, le=1000, description="evaluation periods a guardrail looks back")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="chance of a false rollback over the whole test")


class ABTestState(BaseModel):
    """Carried across continue-as-new."""

    incumbent: str | None = None
    started_at: datetime | None = None
    step: int = 0
    step_started_calls: int = 0
    batch: int = 0
    paused: bool = False
    paused_at: datetime | None = None
    # Paused time does not count against max_duration.
    paused_total: timedelta = timedelta(0)
    evaluations: int = 0
    # Carried across continue-as-new: an abort that arrived in the last period of a run still counts.
    abort: str | None = None
    # The sequential test reads outcomes from when the final share took effect: pooling the ramp's
    # steps would compare arms sampled at different times (drift would look like an effect).
    test_since: datetime | None = None
    # Round 2 (release 27): 1 for a test begun on the old path (it keeps it until it ends), 2 for a new one.
    round: int = 1
    plan: GroupSequentialPlan | None = None  # the group-sequential design's boundaries, planned once
    looks_done: int = 0
    opened: bool = False  # the challenger's first share was set
    step_since: datetime | None = None  # when the current step's share took effect (round 2)
    providers: dict[str, str] = Field(default_factory=dict)  # variant → provider, for the approval's risk


class ABTestInput(BaseModel):
    slot: str = Field(min_length=1, max_length=128)
    challenger: str = Field(min_length=1, max_length=128)
    share: float = Field(0.10, gt=0, lt=1, description="the challenger's final traffic share")
    # Ramp: the challenger's share step by step up to `share`; each step is held for `calls_per_step`.
    ramp: list[float] = Field(default_factory=lambda: [0.01])
    calls_per_step: int = Field(100, ge=1)
    metric: Metric = "quality"
    direction: Direction | None = None  # None: the metric's usual direction
    min_improvement: float = Field(0.10, gt=0, lt=10, description="minimum relative improvement")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    max_duration: timedelta = Field(timedelta(days=7), gt=timedelta(0))
    max_samples: int = Field(100_000, ge=100, description="per arm")
    evaluation_interval: timedelta = Field(timedelta(minutes=1), gt=timedelta(0))
    # How long a split change takes to reach every caller (the routed gateway caches a slot for 10 s).
    propagation_delay: timedelta = Field(timedelta(seconds=10), ge=timedelta(0))
    # Promotion waits for a person's approval (the approval gate).
    require_approval: bool = False
    approval_timeout: timedelta = Field(timedelta(days=1), gt=timedelta(0))
    # Offline slots have no traffic of their own: each period the test evaluates a batch of labelled
    # examples through the split (None: when the slot's variants are offline).
    drive_offline: bool | None = None
    batch_size: int = Field(200, ge=1, le=10_000)
    activity_task_queue: str | None = None
    evaluations_per_run: int = Field(300, ge=1, description="continue-as-new after this many periods")
    # Round 2 (tests begun from release 27 on).
    design: Design = "group_sequential"
    looks: int = Field(10, ge=1, le=20, description="the group-sequential design's planned looks")
    # No decision on the metric before this (a daily cycle at least); guardrails act at once.
    min_duration: timedelta = Field(timedelta(days=1), ge=timedelta(0))
    # Promotion asks a person when the variant's risk (autarky.models.promotion_risk) is above this.
    approval_risk: float = Field(0.5, ge=0, le=1)
    # An errored call counts as the worst outcome: 0 for quality/valid, at least this for latency_ms.
    error_latency_ms: float = Field(60_000, gt=0)
    # The challenger's share is a lease: renewed every period, routed back to the incumbent by every
    # router once it runs out (a test that stopped without restoring). None: 10 periods, at least 10 min.
    split_lease: timedelta | None = Field(None, gt=timedelta(0))
    # A pause longer than this ends the test (the challenger would keep its share while nobody looks).
    max_pause: timedelta = Field(timedelta(days=1), gt=timedelta(0))
    # Set by the workflow when it continues as new; None for a new test.
    state: ABTestState | None = None

    @model_validator(mode="after")
    def _check(self) -> ABTestInput:
        steps = [*self.ramp, self.share]
        for step in self.ramp:
            if not 0 < step < 1:
                raise ValueError(f"ramp step {step} must be between 0 and 1 (exclusive)")
        if any(b < a for a, b in pairwise(steps)):
            raise ValueError(f"ramp {self.ramp} must rise to the share {self.share}")
        if self.split_lease is not None and self.split_lease < 2 * self.evaluation_interval:
            # Renewed once a period: a shorter lease would run out between two renewals.
            raise ValueError(
                f"split_lease {self.split_lease} must be at least two evaluation intervals "
                f"({2 * self.evaluation_interval})"
            )
        return self

    @property
    def better_direction(self) -> Direction:
        return self.direction or DEFAULT_DIRECTION[self.metric]

    @property
    def steps(self) -> list[float]:
        return sorted({s for s in [*self.ramp, self.share] if s <= self.share})

    def workflow_id(self) -> str:
        return f"abtest/{self.slot}/{self.challenger}"

    @property
    def guardrail_checks(self) -> int:
        """How many periods the guardrails may be checked in (their error rate is spread over them)."""
        return math.ceil(
            (self.max_duration + self.max_pause + self.approval_timeout) / self.evaluation_interval
        )

    @property
    def lease(self) -> timedelta:
        return self.split_lease or max(10 * self.evaluation_interval, timedelta(minutes=10))


class ArmView(BaseModel):
    variant: str
    calls: int = 0
    samples: int = 0
    mean: float | None = None
    error_rate: float = 0.0
    latency_p95_ms: float | None = None
    cost_per_call: float = 0.0


class ABTestStatus(BaseModel):
    workflow_id: str
    slot: str
    incumbent: str | None
    challenger: str
    share: float
    metric: Metric
    direction: Direction
    decision: ABDecision
    paused: bool = False
    arms: list[ArmView] = Field(default_factory=list)
    estimate: float | None = None  # relative effect, positive = better
    lower: float | None = None
    upper: float | None = None
    statistic: str = ""  # the sequential test's own words
    reason: str | None = None
    design: str = ""  # round 2: which test, e.g. "group-sequential, 5 looks, at most 12,400 per arm"
    guardrails: str = ""  # round 2: the last guardrail check, in words
    sample_ratio: str = ""  # round 2: the last sample-ratio check, in words
    risk: float | None = None  # round 2: the promotion's risk, when one was judged
    periods: int = 0  # evaluation periods so far


class ABTestResult(BaseModel):
    workflow_id: str
    decision: ABDecision
    reason: str
    status: ABTestStatus
