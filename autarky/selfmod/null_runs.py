"""How often would an evolution promote a candidate with no real gain? (pure code, no I/O; issue 30's A/A)

The promotion rule is judged on the real structure of an agent's units (its data files or labelled
examples, some decisive and most not), not on Gaussian noise. A `UnitTable` holds what real variants of
an agent scored per unit on the search and the decision part, beside the incumbent. A *null candidate* is
the incumbent plus one real variant's per-unit differences with a random sign on each unit: the sizes and
spread of real differences, with an expected gain of exactly 0 (a difference and its negative are equally
likely under no real change).

One simulated evolution does what SelfModificationWorkflow does: `generations × population` candidates
measured on the search part, the best that beats the incumbent goes on (best-of-many), and it is compared
with the incumbent on the decision part by the product's rule (the agent's bar, `clears_bar`, at the look's
confidence, `look_confidence`). Looks at one data version repeat that with the same decision data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autarky.selfmod.policy import better, clears_bar, improvement_interval, look_confidence
from autarky.selfmod.types import Direction, ImprovementKind

Units = Mapping[str, float]  # unit → its contribution to the figure (the figure is their sum)


@dataclass(frozen=True)
class UnitTable:
    """Real per-unit figures: the incumbent's and each variant's, on the "search" and "decision" parts."""

    incumbent: Mapping[str, Units]
    variants: Sequence[Mapping[str, Units]]

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("a unit table needs at least one variant")
        for part in ("search", "decision"):
            keys = set(self.incumbent.get(part, {}))
            if not keys:
                raise ValueError(f"the incumbent has no units on the {part} part")
            for i, variant in enumerate(self.variants):
                if set(variant.get(part, {})) != keys:
                    raise ValueError(f"variant {i} is not measured on the incumbent's {part} units")


@dataclass(frozen=True)
class Rule:
    """The agent's promotion rule (its AgentSpec's direction, improvement and threshold)."""

    direction: Direction
    kind: ImprovementKind
    bar: float


def null_candidate(table: UnitTable, rng: random.Random, lift: float = 0.0) -> dict[str, dict[str, float]]:
    """The incumbent plus a random real variant's differences, each unit's sign flipped at random; with
    `lift`, a real gain of that many points in total on each part, spread evenly over its units."""
    variant = rng.choice(table.variants)
    candidate: dict[str, dict[str, float]] = {}
    for part in ("search", "decision"):
        base = table.incumbent[part]
        candidate[part] = {
            unit: value + rng.choice((-1.0, 1.0)) * (variant[part][unit] - value) + lift / len(base)
            for unit, value in base.items()
        }
    return candidate


def evolution_promotes(
    table: UnitTable,
    rule: Rule,
    rng: random.Random,
    generations: int,
    population: int,
    look: int = 1,
    candidates: Sequence[Mapping[str, Units]] | None = None,
    lift: float = 0.0,
) -> bool | None:
    """Whether one evolution promotes: the best of `generations × population` candidates on the search
    part (null candidates unless `candidates` are given), judged on the decision part at look `look`;
    None when none beat the incumbent on the search part (no look at the decision part, as in the
    workflow)."""
    pool = candidates or [null_candidate(table, rng, lift) for _ in range(generations * population)]
    incumbent_search = math.fsum(table.incumbent["search"].values())
    best, best_figure = None, incumbent_search
    for candidate in pool:
        figure = math.fsum(candidate["search"].values())
        if better(figure, best_figure, rule.direction):
            best, best_figure = candidate, figure
    if best is None:
        return None
    units = sorted(table.incumbent["decision"])
    gain = improvement_interval(
        [table.incumbent["decision"][u] for u in units],
        [best["decision"][u] for u in units],
        rule.direction,
        confidence=look_confidence(look),
        seed=rng.randrange(2**31),
        kind=rule.kind,
    )
    return clears_bar(gain, rule.bar)


def promotions(
    table: UnitTable,
    rule: Rule,
    runs: int,
    generations: int = 3,
    population: int = 4,
    looks: int = 1,
    seed: int = 0,
    lift: float = 0.0,
) -> int:
    """Of `runs` histories of `looks` evolutions each at one data version (stopping at a promotion), how
    many promoted (candidates: null ones, plus `lift` points of real gain; with none, the A/A's false
    promotions). Only the evolutions that reach the comparison count as looks."""
    rng = random.Random(seed)
    promoted = 0
    for _ in range(runs):
        look = 1  # counted as the knowledge base counts it: only evolutions that compared
        for _ in range(looks):
            outcome = evolution_promotes(table, rule, rng, generations, population, look, lift=lift)
            if outcome:
                promoted += 1
                break
            look += outcome is not None
    return promoted
