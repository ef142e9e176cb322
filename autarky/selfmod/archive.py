"""An archive of diverse working variants for self-modification's search (pure code, no I/O, deterministic
given a `random.Random`).

One lineage that keeps only the best of each generation throws away the stepping stones: a variant that
scores a little worse but behaves differently may be the parent of the next real gain (MAP-Elites; the
Darwin Gödel Machine's archive). The archive keeps the best variant per cell of a small grid over two
behaviour descriptors in [0, 1] — two of the agent's parameters in their normalised space
(`descriptor_parameters`), or any two measurements the caller passes in (e.g. a detector's alert rate and
its share of alerts on labelled anomalies) — and chooses parents weighted by score and novelty:

    score term    s = rank of the elite's score among the elites, scaled to [0, 1] (best = 1)
    novelty term  n = mean distance to the k nearest other elites in the normalised parameter space
                      ([0, 1] per parameter, as `policy` mutates), scaled so the most isolated elite has 1
    weight        = FLOOR + (1 − novelty_weight)·s + novelty_weight·n

Ranks, not raw scores, so the weights do not depend on the metric's scale; the floor keeps every elite
choosable. Bounded: at most `bins`² elites (≤ 100). `to_dict`/`from_dict` give plain JSON-able dicts, so
a workflow can carry the archive in its state and across continue-as-new.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autarky.selfmod.policy import _check_specs, _to_unit, better
from autarky.selfmod.types import Direction, ParameterSpec

MAX_BINS = 10
# Every elite keeps this much weight however bad and crowded: a stepping stone is never ruled out.
FLOOR = 0.05
_FORMAT = 1

Cell = tuple[int, int]


@dataclass(frozen=True)
class Elite:
    """The best variant found in one cell: its parameters, its score, where it sits (descriptor in [0, 1]²)
    and, optionally, what produced it (a candidate or version id, for code variants)."""

    parameters: dict[str, float]
    score: float
    descriptor: tuple[float, float]
    origin: str | None = None


class Archive:
    """MAP-Elites over two behaviour descriptors: at most one elite per cell of a `bins` × `bins` grid."""

    def __init__(
        self,
        specs: Sequence[ParameterSpec],
        direction: Direction,
        *,
        bins: int = 5,
        descriptor_parameters: tuple[str, str] | None = None,
    ) -> None:
        _check_specs(specs)
        if not specs:
            raise ValueError("an archive needs at least one parameter spec (novelty is measured over them)")
        if direction not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
        if not (isinstance(bins, int) and 1 <= bins <= MAX_BINS):
            raise ValueError(f"bins must be an integer within [1, {MAX_BINS}], got {bins!r}")
        names = {spec.name for spec in specs}
        if descriptor_parameters is not None:
            unknown = [name for name in descriptor_parameters if name not in names]
            if len(descriptor_parameters) != 2 or unknown:
                raise ValueError(
                    "descriptor_parameters must name two of the specs' parameters"
                    f" ({', '.join(sorted(names))}), got {descriptor_parameters!r}"
                )
        self.specs: tuple[ParameterSpec, ...] = tuple(specs)
        self.direction: Direction = direction
        self.bins = bins
        self.descriptor_parameters = descriptor_parameters
        self._cells: dict[Cell, Elite] = {}

    # ------------------------------------------------------------ filling

    def add(
        self,
        parameters: Mapping[str, float],
        score: float,
        descriptor: tuple[float, float] | None = None,
        origin: str | None = None,
    ) -> bool:
        """Offers a working variant; True when it became its cell's elite (the cell was empty, or it is
        strictly better than the elite there: a tie keeps the older one, so re-adding changes nothing).

        `descriptor` is required unless the archive was made with `descriptor_parameters`. Only working
        variants belong here: a non-finite score is refused (it would not survive JSON either).
        """
        if not math.isfinite(score):
            raise ValueError(f"score must be finite (only working variants enter the archive), got {score!r}")
        missing = [spec.name for spec in self.specs if spec.name not in parameters]
        if missing:
            raise ValueError(f"parameters have no value for {', '.join(missing)}")
        if descriptor is None:
            if self.descriptor_parameters is None:
                raise ValueError("pass a descriptor, or make the archive with descriptor_parameters")
            descriptor = parameter_descriptor(parameters, self.specs, self.descriptor_parameters)
        descriptor = _check_descriptor(descriptor)
        cell = self.cell_of(descriptor)
        held = self._cells.get(cell)
        if held is not None and not better(score, held.score, self.direction):
            return False
        self._cells[cell] = Elite(
            parameters={name: float(value) for name, value in parameters.items()},
            score=float(score),
            descriptor=descriptor,
            origin=origin,
        )
        return True

    def cell_of(self, descriptor: tuple[float, float]) -> Cell:
        """The grid cell of a descriptor in [0, 1]² (1.0 falls in the last cell)."""
        a, b = _check_descriptor(descriptor)
        return (min(self.bins - 1, int(a * self.bins)), min(self.bins - 1, int(b * self.bins)))

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._cells)

    def elites(self) -> list[Elite]:
        """The elites in cell order (deterministic: the order parent choice and serialisation use)."""
        return [self._cells[cell] for cell in sorted(self._cells)]

    def best(self) -> Elite | None:
        """The best elite (the first in cell order among equals), or None when the archive is empty."""
        found: Elite | None = None
        for elite in self.elites():
            if found is None or better(elite.score, found.score, self.direction):
                found = elite
        return found

    def novelty(self, k: int = 3) -> list[float]:
        """Per elite (cell order): the mean distance to its `k` nearest other elites in the normalised
        parameter space, divided by √d so it lies in [0, 1]. A lone elite has novelty 1."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        points = [self._unit(elite.parameters) for elite in self.elites()]
        if len(points) == 1:
            return [1.0]
        scale = math.sqrt(len(self.specs))
        result = []
        for i, p in enumerate(points):
            distances = sorted(math.dist(p, q) for j, q in enumerate(points) if j != i)
            nearest = distances[: min(k, len(distances))]
            result.append(math.fsum(nearest) / len(nearest) / scale)
        return result

    def weights(self, novelty_weight: float = 0.5, k: int = 3) -> list[float]:
        """Parent-choice weights per elite (cell order), see the module: FLOOR + (1 − w)·score rank +
        w·novelty, both terms scaled to [0, 1]."""
        if not 0 <= novelty_weight <= 1:
            raise ValueError(f"novelty_weight must be within [0, 1], got {novelty_weight!r}")
        elites = self.elites()
        if not elites:
            return []
        novelty = self.novelty(k)
        top = max(novelty)
        novelty = [n / top if top > 0 else 1.0 for n in novelty]
        ranks = _score_ranks([e.score for e in elites], self.direction)
        return [
            FLOOR + (1 - novelty_weight) * s + novelty_weight * n for s, n in zip(ranks, novelty, strict=True)
        ]

    def choose_parents(
        self, rng: random.Random, count: int, novelty_weight: float = 0.5, k: int = 3
    ) -> list[dict[str, float]]:
        """`count` parents drawn with replacement by `weights` (copies: a caller may change them freely)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        elites = self.elites()
        if not elites:
            raise ValueError("the archive is empty: add the incumbent before choosing parents")
        chosen = rng.choices(elites, weights=self.weights(novelty_weight, k), k=count)
        return [dict(elite.parameters) for elite in chosen]

    def _unit(self, parameters: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(_unit_of(parameters[spec.name], spec) for spec in self.specs)

    # ------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of str, float, int, list and None (JSON-able; `from_dict` restores it exactly)."""
        return {
            "format": _FORMAT,
            "direction": self.direction,
            "bins": self.bins,
            "descriptor_parameters": list(self.descriptor_parameters) if self.descriptor_parameters else None,
            "specs": [spec.model_dump() for spec in self.specs],
            "elites": [
                {
                    "parameters": dict(elite.parameters),
                    "score": elite.score,
                    "descriptor": list(elite.descriptor),
                    "origin": elite.origin,
                }
                for elite in self.elites()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Archive:
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown archive format {data.get('format')!r} (this code reads {_FORMAT})")
        pair = data.get("descriptor_parameters")
        archive = cls(
            [ParameterSpec.model_validate(spec) for spec in data["specs"]],
            data["direction"],
            bins=data["bins"],
            descriptor_parameters=(pair[0], pair[1]) if pair else None,
        )
        for elite in data["elites"]:
            a, b = elite["descriptor"]
            if not archive.add(elite["parameters"], elite["score"], (a, b), elite.get("origin")):
                raise ValueError(f"archive data holds two elites for cell {archive.cell_of((a, b))}")
        return archive


def parameter_descriptor(
    parameters: Mapping[str, float], specs: Sequence[ParameterSpec], names: tuple[str, str]
) -> tuple[float, float]:
    """Two parameters in their normalised space ([0, 1], log scale where the spec says so): a descriptor."""
    by_name = {spec.name: spec for spec in specs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"no spec for descriptor parameter(s) {', '.join(unknown)}")
    first, second = names
    return (
        _unit_of(parameters[first], by_name[first]),
        _unit_of(parameters[second], by_name[second]),
    )


def _unit_of(value: float, spec: ParameterSpec) -> float:
    # A value outside the range (an older, wider spec) counts as the nearest edge.
    return min(1.0, max(0.0, _to_unit(min(spec.high, max(spec.low, value)), spec)))


def _check_descriptor(descriptor: tuple[float, float]) -> tuple[float, float]:
    if len(descriptor) != 2:
        raise ValueError(f"a descriptor has two values, got {descriptor!r}")
    a, b = float(descriptor[0]), float(descriptor[1])
    if not (0 <= a <= 1 and 0 <= b <= 1):  # also refuses NaN
        raise ValueError(f"descriptor values must lie within [0, 1], got {descriptor!r}")
    return (a, b)


def _score_ranks(scores: Sequence[float], direction: Direction) -> list[float]:
    """Each score's rank scaled to [0, 1], best = 1, ties sharing their mean rank; a lone score gets 1."""
    n = len(scores)
    if n == 1:
        return [1.0]
    sign = 1.0 if direction == "max" else -1.0
    order = sorted(range(n), key=lambda i: sign * scores[i])  # worst first
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 / (n - 1)
        start = end + 1
    return ranks
