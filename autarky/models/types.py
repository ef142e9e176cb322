"""The model registry's payloads: slots, their variants and traffic split, outcomes and per-arm statistics.

A *slot* is one place the system calls a model (e.g. ``research-relevance-offline``); its *variants* are
the candidate models (provider, model, prompt version, parameters). The slot's `split` says what share of
the calls each variant gets (routed stickily by `autarky.models.routing.choose_variant`), and `active` is
the incumbent: the variant the slot falls back to. Every call may record an *outcome* (latency, tokens,
cost, validity, error, quality), and the A/B test reads them back per arm (`ArmStats`).

A test's split is a *lease*: it holds until `split_expires_at`, which the test renews while it runs
(`renew_model_split`); once it lapses every router sends all calls to `active` (`SlotInfo.effective_split`),
so a test that stops renewing — failed, cancelled, its worker or registry gone — leaves the traffic on the
incumbent. A slot's `salt` (the test's) salts the routing hash, so each test draws its own keys.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from temporalio import activity

from autarky.core.findings import Finding
from autarky.models.routing import choose_variant, validate_split

Provider = str  # "openai", "anthropic", "openai-compatible", "offline", "external", …
ArmMetric = Literal["quality", "valid", "latency_ms", "cost"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"


class Variant(BaseModel):
    """One candidate model of a slot. Immutable once registered: change the model, register a new name."""

    name: str = Field(pattern=_NAME)
    provider: Provider = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    prompt_version: str = Field("1", min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class SlotInfo(BaseModel):
    name: str
    description: str = ""
    external: bool = False
    active: str
    split: dict[str, float]
    variants: list[Variant]
    updated_at: datetime
    # Set by a test's split (defaults: slots and histories from before round 2 read the same as then).
    salt: str = ""
    split_expires_at: datetime | None = None

    @model_validator(mode="after")
    def _check(self) -> SlotInfo:
        known = {v.name for v in self.variants}
        if self.active not in known:
            raise ValueError(f"active variant {self.active!r} is not a variant of slot {self.name!r}")
        unknown = sorted(set(self.split) - known)
        if unknown:
            raise ValueError(f"split names unknown variants of slot {self.name!r}: {', '.join(unknown)}")
        validate_split(self.split)
        return self

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ValueError(f"slot {self.name!r} has no variant {name!r}")

    def effective_split(self, now: datetime) -> dict[str, float]:
        """The split to route by at `now`: `split` while its lease holds, all to `active` once it lapsed."""
        if self.split_expires_at is not None and now >= self.split_expires_at:
            return {self.active: 1.0}
        return dict(self.split)

    def choose(self, routing_key: str, now: datetime) -> str:
        """The variant that serves `routing_key` at `now` (effective split, the slot's salt)."""
        return choose_variant(self.name, self.effective_split(now), routing_key, self.salt)


class OutcomeIn(BaseModel):
    """One call of a slot's variant. `ref`, when given, makes recording it again a no-op (per slot)."""

    slot: str
    variant: str
    routing_key: str | None = None
    latency_ms: float = Field(ge=0)
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)
    valid: bool = True
    error: bool = False
    quality: float | None = Field(None, ge=0, le=1)
    ref: str | None = Field(None, max_length=255)
    at: datetime | None = None  # None: now (set by the registry)

    @field_validator("latency_ms", "cost", "quality")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class MetricSummary(BaseModel):
    """n, mean and sample variance (n - 1 in the denominator; 0 when n < 2) of an arm's metric."""

    n: int
    mean: float
    variance: float


class ArmStats(BaseModel):
    """One variant's outcomes in a window. Errors count as calls (error_rate, cost_per_call) but are left
    out of valid_rate and latency_p95_ms: an errored call has no answer to judge. The metric leaves them
    out too unless the request says `errors_count` (see ArmsInput)."""

    variant: str
    calls: int
    errors: int
    error_rate: float
    valid_rate: float
    latency_p95_ms: float | None
    cost_per_call: float
    metric: MetricSummary
    # Units of assignment for the sample-ratio check: distinct routing keys (an outcome without a key
    # counts as one). 0 in results recorded before round 2.
    units: int = 0


class ArmsInput(BaseModel):
    """Which arms and metric to read. With `errors_count` an errored call is the worst outcome instead of
    none: "quality" and "valid" count it as 0 ("quality" over the answered calls with a quality plus every
    errored call), "latency_ms" as max(its latency, `error_latency_ms`) (e.g. the call's timeout), "cost"
    counts every call either way. Without it (results recorded before round 2) errors are left out."""

    slot: str
    variants: list[str] = Field(min_length=1)
    since: datetime
    metric: ArmMetric = "quality"
    errors_count: bool = False
    error_latency_ms: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ArmsInput:
        if self.error_latency_ms is not None and not math.isfinite(self.error_latency_ms):
            raise ValueError("error_latency_ms must be a finite number")
        if self.errors_count and self.metric == "latency_ms" and self.error_latency_ms is None:
            raise ValueError(
                "error_latency_ms is required when errors_count is set for the metric latency_ms (the "
                "latency an errored call counts as, e.g. the call's timeout)"
            )
        return self


class WindowInput(BaseModel):
    """The guardrails' window: incumbent and challenger outcomes of `slot` since `since`."""

    slot: str
    incumbent: str
    challenger: str
    since: datetime
    # The guardrails' absolute p95 limit, when set: each arm's answered calls slower than it are counted.
    latency_limit_ms: float | None = None


class WindowStats(BaseModel):
    """One arm's outcomes in a guardrail window. `slow`: its answered calls slower than the incumbent's
    p95 over the same window (nearest rank); `p95_ms`: the arm's own p95 of answered calls (None: none).
    `cost_sum`/`cost_sumsq`: over every call, for a variance of the cost per call."""

    variant: str
    calls: int
    errors: int
    answered: int
    slow: int
    cost_sum: float
    cost_sumsq: float
    p95_ms: float | None
    over_limit: int | None = None  # answered calls slower than WindowInput.latency_limit_ms (None: not asked)


class SlotRef(BaseModel):
    slot: str


class SetSplit(BaseModel):
    """`salt` None keeps the slot's salt; `expires_at` None: no lease (the split holds until changed)."""

    slot: str
    split: dict[str, float]
    key: str = Field(min_length=1, max_length=255)
    salt: str | None = Field(None, max_length=255)
    expires_at: datetime | None = None


class RenewSplit(BaseModel):
    """Extend the lease of `split` to `expires_at`, only while the slot still routes by that split."""

    slot: str
    split: dict[str, float]
    expires_at: datetime


class Promote(BaseModel):
    slot: str
    variant: str
    key: str = Field(min_length=1, max_length=255)


class RestoreIncumbent(BaseModel):
    slot: str
    incumbent: str
    key: str = Field(min_length=1, max_length=255)


class UntestedVariant(BaseModel):
    """A variant that is not its slot's active one and has never had an A/B test."""

    slot: str
    variant: str


def new_variant_finding(untested: UntestedVariant, now: datetime) -> Finding:
    """The autopilot's finding for it; the playbook answers with `start_abtest`."""
    return Finding(
        kind="new_model_variant",
        metric="model_variants",
        value=1.0,
        threshold=0.0,
        message=f"variant {untested.variant} of model slot {untested.slot} has never been A/B tested",
        observed_at=now,
        subject=f"{untested.slot}/{untested.variant}",
        params={"slot": untested.slot, "variant": untested.variant},
    )


class EvaluateBatch(BaseModel):
    """Score `size` labelled examples (drawn deterministically from slot and batch) with the slot's split."""

    slot: str
    size: int = Field(ge=1, le=10_000)
    batch: int = Field(ge=0)
    # Whose batch: a later test of the same slot numbers its batches from 1 again and must not find
    # its outcomes already recorded (e.g. the A/B test's workflow and first run id).
    run: str = Field("", max_length=200)


class EvaluationResult(BaseModel):
    slot: str
    recorded: int  # outcomes the batch has (its size, also when a retry found them recorded)
    new: int = 0  # of which recorded by this call


class PairedBatch(BaseModel):
    """Score every labelled example of an offline slot with both variants (a paired comparison)."""

    slot: str
    incumbent: str
    challenger: str
    run: str = Field(min_length=1, max_length=200)  # whose evaluation: its outcome refs

    @model_validator(mode="after")
    def _check(self) -> PairedBatch:
        if self.incumbent == self.challenger:
            raise ValueError(f"a paired evaluation needs two variants, got {self.incumbent!r} twice")
        return self


class PairedCounts(BaseModel):
    """The 2×2 table of a paired evaluation (McNemar's test reads the discordant cells)."""

    slot: str
    examples: int
    both_right: int
    only_incumbent: int
    only_challenger: int
    both_wrong: int
    new: int = 0  # outcomes recorded by this call (0 when a retry found them all recorded)


# ---------------------------------------------------------------------------------------- activity stubs
# What workflows schedule on the model registry, typed: the SDK takes each activity's name and result type
# from these. The implementations are ModelRegistryActivities (activities/models/registry_activities.py,
# whose SQLAlchemy stays out of workflows); tests/test_activity_contract.py keeps the two equal.

_IN_REGISTRY = "activities/models/registry_activities.py (ModelRegistryActivities)"


@activity.defn(name="describe_model_slot")
async def describe_model_slot(request: SlotRef) -> SlotInfo:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="set_model_split")
async def set_model_split(request: SetSplit) -> SlotInfo:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="promote_model_variant")
async def promote_model_variant(request: Promote) -> SlotInfo:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="restore_model_incumbent")
async def restore_model_incumbent(request: RestoreIncumbent) -> SlotInfo:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="renew_model_split")
async def renew_model_split(request: RenewSplit) -> bool:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="model_arm_stats")
async def model_arm_stats(request: ArmsInput) -> list[ArmStats]:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="model_window_stats")
async def model_window_stats(request: WindowInput) -> list[WindowStats]:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="evaluate_offline_batch")
async def evaluate_offline_batch(request: EvaluateBatch) -> EvaluationResult:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="evaluate_offline_paired")
async def evaluate_offline_paired(request: PairedBatch) -> PairedCounts:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="untested_model_variants")
async def untested_model_variants() -> list[UntestedVariant]:
    raise NotImplementedError(_IN_REGISTRY)
