"""Types of the scaling policy: resources, the policy's knobs, its memory and what it recommends.

Shared by the pure policy (autarky.scaling.policy), configuration, the scaler and the benchmark; the
scaler's and providers' messages are in autarky.scaling.types. No I/O here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from autarky.core.durations import Duration

SCALER_PREFIX = "scaler/"


class ResourceKind(StrEnum):
    LOCAL_POOL = "local-pool"  # name: the host id whose `autarky up` owns the pool
    AWS_ASG = "aws-asg"  # name: the Auto Scaling group's name
    AWS_ECS = "aws-ecs"  # name: "<cluster>/<service>"
    AWS_EC2 = "aws-ec2"  # name: the value of the `autarky:group` tag on instances Autarky runs itself


class ResourceRef(BaseModel, frozen=True):
    """One scalable resource, written `<kind>/<name>` (e.g. `aws-asg/web`, `local-pool/node-1`)."""

    kind: ResourceKind
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:@/-]+$")

    @model_validator(mode="after")
    def _name_shape(self) -> ResourceRef:
        parts = self.name.split("/")
        expected = 2 if self.kind == ResourceKind.AWS_ECS else 1
        if len(parts) != expected or not all(parts):
            shape = "<cluster>/<service>" if expected == 2 else "a name without '/'"
            raise ValueError(f"a {self.kind.value} resource is named {shape}, not {self.name!r}")
        return self

    @property
    def id(self) -> str:
        return f"{self.kind.value}/{self.name}"

    @property
    def workflow_id(self) -> str:
        return SCALER_PREFIX + self.id

    @classmethod
    def parse(cls, text: str, *, local_host: str | None = None) -> ResourceRef:
        """`aws-asg/web`, `aws-ecs/prod/api`, `aws-ec2/batch`, `local-pool/<host>`; a bare `local-pool`
        (or `scaler/…`, as the UI shows it) names this host's pool when `local_host` is given."""
        text = text.strip().removeprefix(SCALER_PREFIX)
        kind, _, name = text.partition("/")
        if kind == ResourceKind.LOCAL_POOL and not name and local_host:
            name = local_host
        try:
            resource_kind = ResourceKind(kind)
        except ValueError:
            kinds = ", ".join(k.value for k in ResourceKind)
            raise ValueError(f"unknown resource kind {kind!r} in {text!r} (kinds: {kinds})") from None
        return cls(kind=resource_kind, name=name)

    def __str__(self) -> str:
        return self.id


# ---------------------------------------------------------------------------------------- the policy


class ScalingPolicy(BaseModel):
    """The knobs of the scaling policy (autarky.scaling.policy; round 1's growth approval in policy_round1).

    Round 2 sizes proportionally, as Kubernetes' HPA does, but for the demand expected by the time new
    capacity serves: need = ceil((demand + the median rise of demand over one warm-up in the last hour) /
    target_utilisation), over the capacity in service plus starting (warm-up accounting, no scale-up
    cooldown). It shrinks only to what keeps the utilisation at or below scale_down_target, and only as far
    as every such need within stabilisation_window allows. Each automatic change stays within the blast
    radius of what is in service (HPA's default rate: double, or 4 units); larger ones are a person's.
    The defaults were chosen leave-one-trace-out on the shared traces (bench/scaling_choose.py prints the
    choice; bench/scaling.py the figures).
    """

    scale_up_utilisation: float = Field(
        0.9, gt=0, le=1, description="scale up above this utilisation; a scale-down never goes above it"
    )
    scale_down_utilisation: float = Field(0.6, ge=0, lt=1, description="scale down below this utilisation")
    max_step_up: int = Field(2, ge=1, description="units added at most per event")
    step_down: int = Field(1, ge=1, description="units removed at most per event")
    min_capacity: int = Field(1, ge=0)
    max_capacity: int = Field(8, ge=1)
    # Round 2 counts starting capacity instead (warm-up accounting); a cooldown only delays what is needed.
    cooldown: Duration = Field(timedelta(0), ge=timedelta(0), description="between two events")
    # Scale down only when the utilisation stayed low for this long, and only to the highest capacity
    # recommended within it (Kubernetes HPA's rule): noise does not flap, a dip does not shrink a peak's need.
    stabilisation_window: Duration = Field(timedelta(minutes=6), ge=timedelta(0))
    # Worker pools: a backlog older than this counts as overload whatever the CPU says.
    backlog_age_limit: Duration = Field(timedelta(seconds=30), gt=timedelta(0))
    # Blast radius: growing by more than this share of the current capacity needs a person's approval,
    # and so does shrinking by more than this share (round 2); the policy's own changes stay within it,
    blast_radius: float = Field(1.0, gt=0)
    # except a change of at most this many units (a few more members of a small pool are routine),
    blast_radius_units: int = Field(4, ge=0)
    # and so does a capacity whose cost per hour would exceed the ceiling (when both are set).
    unit_cost_per_hour: float | None = Field(None, ge=0)
    cost_ceiling_per_hour: float | None = Field(None, ge=0)

    # Round 2 (autarky.scaling.policy):
    target_utilisation: float = Field(
        1.0, gt=0, le=1, description="grow when demand plus its expected rise exceeds this share of capacity"
    )
    scale_down_target: float = Field(
        0.85, gt=0, le=1, description="shrink only to what keeps the utilisation at or below this"
    )
    # How long new capacity takes to serve (an instance's boot, a pool member's start): the horizon of the
    # expected rise, and how long a change is waited for before its effect is judged.
    warmup: Duration = Field(timedelta(minutes=3), ge=timedelta(0))
    headroom_quantile: float = Field(0.5, ge=0, le=1, description="of recent rises over one warm-up")
    rise_history: Duration = Field(timedelta(hours=1), gt=timedelta(0))
    # With min_capacity 0: no demand for this long takes the resource to zero (KEDA's cooldownPeriod).
    idle_window: Duration = Field(timedelta(minutes=5), ge=timedelta(0))

    @model_validator(mode="after")
    def _consistent(self) -> ScalingPolicy:
        if self.scale_down_utilisation >= self.scale_up_utilisation:
            raise ValueError(
                f"scale_down_utilisation ({self.scale_down_utilisation}) must be below "
                f"scale_up_utilisation ({self.scale_up_utilisation}), or the policy would flap"
            )
        if self.scale_down_target > self.target_utilisation:
            raise ValueError(
                f"scale_down_target ({self.scale_down_target}) must not exceed target_utilisation "
                f"({self.target_utilisation}), or a shrink would call for growing again"
            )
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity ({self.min_capacity}) exceeds max_capacity ({self.max_capacity})")
        return self


class LoadSample(BaseModel):
    """What the policy sees of a resource at one moment."""

    at: datetime
    # Demand as a share of the current capacity (CPU of the host or the group, 1.0 = all of it busy).
    utilisation: float | None = Field(None, ge=0)
    # Worker pools: tasks waiting in the task queue, and how long the oldest has waited.
    backlog: int | None = Field(None, ge=0)
    backlog_age_seconds: float | None = Field(None, ge=0)
    # Round 2: the demand in units of capacity (e.g. busy slots / slots per member); None: utilisation ×
    # the capacity in service.
    demand: float | None = Field(None, ge=0)


class Recommended(BaseModel):
    at: datetime
    capacity: int  # round 2: the scale-down need


class Rising(BaseModel):
    at: datetime
    demand: float
    peak: float | None = None  # the highest demand seen after `at`, within one warm-up


class Rise(BaseModel):
    at: datetime  # when the rise started
    size: float  # how much the demand rose within one warm-up from then (may be negative)


class ScalingMemory(BaseModel):
    """The policy's state for one resource: recent recommendations (stabilisation) and the last event."""

    recommendations: list[Recommended] = Field(default_factory=list)
    last_scaled_at: datetime | None = None
    observed_since: datetime | None = None  # the start of the current unbroken run of samples
    # Round 2: demand readings younger than one warm-up with the highest demand seen since each,
    rising: list[Rising] = Field(default_factory=list)
    # the rises of demand over one warm-up completed within rise_history (their start, their size),
    rises: list[Rise] = Field(default_factory=list)
    idle_since: datetime | None = None  # demand has been 0 since (scale to zero)


class Capacity(BaseModel):
    """A resource's capacity as the policy counts it: what is asked for, and how much of it serves."""

    desired: int = Field(ge=0)  # in service + starting
    in_service: int = Field(ge=0)


class Recommendation(BaseModel):
    current: int
    desired: int  # == current: no change
    reason: str
    demand: float | None = None  # round 2: the demand seen (units), for judging the change's effect later

    @property
    def change(self) -> int:
        return self.desired - self.current
