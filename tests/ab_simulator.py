"""A seeded traffic simulator for A/B tests: calls routed by the slot's current split (as the gateway
routes them), each with an outcome drawn from its variant's true behaviour, recorded in the registry.

It runs beside the workflow under test, so ramps, promotions and rollbacks change what it routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from activities.models.registry import ModelRegistry
from autarky.models.routing import choose_variant
from autarky.models.types import OutcomeIn


@dataclass
class Behaviour:
    """A variant's true behaviour: success probability (the quality metric), error rate, latency."""

    quality: float = 0.5
    error_rate: float = 0.0
    latency_ms: float = 100.0
    error_latency_ms: float | None = None  # an error's latency (a timeout); None: like an answer's
    valid_rate: float = 1.0  # of the answered calls, how many validate
    record_quality: bool = True  # False: like the LLM slot, which records no quality
    lost_failures: float = 0.0  # the share of its failed answers (quality 0) whose outcome is never recorded


@dataclass
class Simulator:
    registry: ModelRegistry
    slot: str
    behaviours: dict[str, Behaviour]
    calls_per_tick: int = 200
    tick: float = 0.05
    seed: int = 1
    calls: dict[str, int] = field(default_factory=dict)
    _next_key: int = 0

    def run_tick(self) -> None:
        rng = random.Random(self.seed * 1_000_003 + self._next_key)
        # Routed as the gateway routes (effective split, salt), and stamped with the time the split was
        # read: a tick that began before a split change records no outcome after it (no propagation delay).
        routed_at = datetime.now(UTC)
        info = self.registry.slot(self.slot)
        split = info.effective_split(routed_at)
        for _ in range(self.calls_per_tick):
            key = f"user-{self._next_key}"
            self._next_key += 1
            variant = choose_variant(self.slot, split, key, info.salt)
            truth = self.behaviours[variant]
            error = rng.random() < truth.error_rate
            latency = rng.lognormvariate(0, 0.3) * truth.latency_ms
            if error and truth.error_latency_ms is not None:
                latency = truth.error_latency_ms
            success = rng.random() < truth.quality
            lost = not error and not success and rng.random() < truth.lost_failures
            if not lost:
                self.registry.record_outcome(
                    OutcomeIn(
                        slot=self.slot,
                        variant=variant,
                        routing_key=key,
                        at=routed_at,
                        latency_ms=latency,
                        error=error,
                        valid=not error and rng.random() < truth.valid_rate,
                        quality=float(success) if truth.record_quality and not error else None,
                    )
                )
            self.calls[variant] = self.calls.get(variant, 0) + 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.run_tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)
