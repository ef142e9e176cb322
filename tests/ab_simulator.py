"""A seeded traffic simulator for A/B tests: calls routed by the slot's current split (as the gateway
routes them), each with an outcome drawn from its variant's true behaviour, recorded in the registry.

It runs beside the workflow under test, so ramps, promotions and rollbacks change what it routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from activities.models.registry import ModelRegistry
from autarky.models.routing import choose_variant
from autarky.models.types import OutcomeIn


@dataclass
class Behaviour:
    """A variant's true behaviour: success probability (the quality metric), error rate, latency."""

    quality: float = 0.5
    error_rate: float = 0.0
    latency_ms: float = 100.0


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
        split = self.registry.slot(self.slot).split
        for _ in range(self.calls_per_tick):
            key = f"user-{self._next_key}"
            self._next_key += 1
            variant = choose_variant(self.slot, split, key)
            truth = self.behaviours[variant]
            error = rng.random() < truth.error_rate
            self.registry.record_outcome(
                OutcomeIn(
                    slot=self.slot,
                    variant=variant,
                    routing_key=key,
                    latency_ms=rng.lognormvariate(0, 0.3) * truth.latency_ms,
                    error=error,
                    valid=not error,
                    quality=None if error else float(rng.random() < truth.quality),
                )
            )
            self.calls[variant] = self.calls.get(variant, 0) + 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.run_tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)
