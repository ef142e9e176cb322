"""The model registry's payloads: slots, their variants and traffic split, outcomes and per-arm statistics.

A *slot* is one place the system calls a model (e.g. ``research-relevance-offline``); its *variants* are
the candidate models (provider, model, prompt version, parameters). The slot's `split` says what share of
the calls each variant gets (routed stickily by `autarky.models.routing.choose_variant`), and `active` is
the incumbent: the variant the slot falls back to. Every call may record an *outcome* (latency, tokens,
cost, validity, error, quality), and the A/B test reads them back per arm (`ArmStats`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from temporalio import activity

from autarky.core.findings import Finding
from autarky.models.routing import validate_split

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
    out of valid_rate, latency and quality: an errored call has no answer to judge."""

    variant: str
    calls: int
    errors: int
    error_rate: float
    valid_rate: float
    latency_p95_ms: float | None
    cost_per_call: float
    metric: MetricSummary


class ArmsInput(BaseModel):
    slot: str
    variants: list[str] = Field(min_length=1)
    since: datetime
    metric: ArmMetric = "quality"


class SlotRef(BaseModel):
    slot: str


class SetSplit(BaseModel):
    slot: str
    split: dict[str, float]
    key: str = Field(min_length=1, max_length=255)


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


@activity.defn(name="model_arm_stats")
async def model_arm_stats(request: ArmsInput) -> list[ArmStats]:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="evaluate_offline_batch")
async def evaluate_offline_batch(request: EvaluateBatch) -> EvaluationResult:
    raise NotImplementedError(_IN_REGISTRY)


@activity.defn(name="untested_model_variants")
async def untested_model_variants() -> list[UntestedVariant]:
    raise NotImplementedError(_IN_REGISTRY)
