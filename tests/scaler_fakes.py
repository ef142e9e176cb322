"""A stand-in scalable resource for ScalerWorkflow tests (the real providers have their own tests).

It behaves like a group whose new members take `start_seconds` to become healthy, or never do
(`never_healthy`, a forced health failure), and records every change it is asked for.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from autarky.scaling.policy_types import ResourceKind, ResourceRef, ScalingPolicy
from autarky.scaling.types import CapacityReading, ReadCapacityInput, ScalerInput, SetCapacityInput
from tests.fakes import FakeHost


@dataclass
class FakeResource:
    desired: int = 1
    start_seconds: float = 0.0
    never_healthy: bool = False
    changes: list[tuple[str, int]] = field(default_factory=list)  # (idempotency key, desired)
    changed_at: float = 0.0
    healthy_before_change: int = -1  # -1: all of `desired`
    refuse_sets: int = 0  # the next this many changes are refused for good (e.g. access denied)
    apply_seconds: float = 0.0  # a change takes this long, without heartbeats (a cancel cannot reach it)

    def __post_init__(self) -> None:
        if self.healthy_before_change < 0:
            self.healthy_before_change = self.desired

    def healthy(self) -> int:
        if self.never_healthy and self.desired > self.healthy_before_change:
            return self.healthy_before_change
        if time.monotonic() - self.changed_at < self.start_seconds:
            return min(self.desired, self.healthy_before_change)
        return self.desired

    @activity.defn(name="read_capacity_aws")
    async def read_capacity(self, request: ReadCapacityInput) -> CapacityReading:
        return CapacityReading(
            resource=request.resource,
            desired=self.desired,
            running=self.desired,
            healthy=self.healthy(),
            detail="fake",
        )

    @activity.defn(name="set_capacity_aws")
    async def set_capacity(self, request: SetCapacityInput) -> CapacityReading:
        if self.refuse_sets > 0:
            self.refuse_sets -= 1
            raise ApplicationError("AccessDenied: not allowed to change the group", non_retryable=True)
        if self.apply_seconds:
            await asyncio.sleep(self.apply_seconds)
        self.changes.append((request.idempotency_key, request.desired))
        if request.desired != self.desired:
            self.healthy_before_change = min(self.healthy(), request.desired)
            self.desired = request.desired
            self.changed_at = time.monotonic()
        return await self.read_capacity(ReadCapacityInput(resource=request.resource))


def fake_input(provider_queue: str, **policy: object) -> ScalerInput:
    # A wide blast radius: only the approval test asks for approvals.
    settings = {
        "min_capacity": 0,
        "max_capacity": 10,
        "cooldown": timedelta(seconds=2),
        "blast_radius": 10.0,
        **policy,
    }
    return ScalerInput(
        resource=ResourceRef(kind=ResourceKind.AWS_ASG, name=f"test-{uuid.uuid4().hex[:8]}"),
        policy=ScalingPolicy.model_validate(settings),
        provider_task_queue=provider_queue,
        health_timeout=timedelta(seconds=2),
        health_poll_interval=timedelta(milliseconds=200),
        reconcile_interval=timedelta(seconds=30),
    )


@dataclass
class FakePool(FakeResource):
    """A local pool stand-in whose size the fake host probe reports, so the autopilot sees it change."""

    host: FakeHost | None = None

    @activity.defn(name="read_capacity_local_pool")
    async def read_pool(self, request: ReadCapacityInput) -> CapacityReading:
        return await self.read_capacity(request)

    @activity.defn(name="set_capacity_local_pool")
    async def set_pool(self, request: SetCapacityInput) -> CapacityReading:
        reading = await self.set_capacity(request)
        if self.host is not None:
            self.host.pool_members = reading.desired
        return reading
