"""The search and the promotion rule of self-modification (pure code, no I/O, deterministic given a seed).

Search: a (1+λ) evolution strategy over an agent's tunable parameters. Each generation the incumbent
(the parent) gets λ children (`mutate`); the best child replaces it only if it is better. Every parameter
is perturbed in a normalised space, so one step size serves parameters of any range:

    u = (x − low) / (high − low)                      (linear parameters)
    u = (log x − log low) / (log high − log low)      (log-scale parameters: a step multiplies)
    u' = reflect(u + N(0, step²)) into [0, 1]          (reflection, not clamping: no pile-up at the edges)

then mapped back, rounded for integer parameters and clamped to [low, high]. The step adapts with
Rechenberg's 1/5 success rule (`adapt_step`): more than a fifth of the children improving means the
search is too timid (grow), fewer means it overshoots (shrink).

Promotion: the search sees one part of the data; the decision is made on another, from paired
measurements. Each unit (one data file, or one labelled example) is measured for the incumbent and the
candidate, so what is hard or easy about a unit cancels. `improvement_interval` is a paired sign-flip
interval of the improvement of the totals (exact for units of any spread, see it). `clears_bar` asks
for the estimate to reach the agent's bar (a gain worth having) and for the interval's lower bound to be
above 0 (a gain that is real): a lucky benchmark that merely estimates a large gain does not promote.

The improvement is measured in the metric's own points for a bounded metric (accuracy, a NAB score:
"absolute", candidate total − incumbent total) and as a share of the incumbent's total for an unbounded
one ("relative"): +15 % of 86 % accuracy would need 99 %, a bar no goal below 100 % agrees with.

Repeated looks: every comparison reads the same decision part until its data changes. Look k at one data
version uses a two-sided confidence of 1 − α·2^−k (`look_confidence`), so however often the decision part
is read, the chance that any look promotes a candidate with no real gain stays below α/2 (α spending).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from autarky.selfmod.types import Direction, ImprovementKind, Interval, ParameterSpec

# Attempts per requested child before accepting fewer: a narrow integer range may have few distinct values.
_ATTEMPTS_PER_CHILD = 20
# Relative improvements are capped to this magnitude (1e6 = 100,000,000 %): an incumbent total of 0 (or
# nearly) has no finite relative change, and an infinite one would not survive JSON (Temporal payloads).
RELATIVE_CAP = 1e6


# ---------------------------------------------------------------- search


def mutate(
    parent: dict[str, float],
    specs: Sequence[ParameterSpec],
    step: float,
    rng: random.Random,
    count: int,
) -> list[dict[str, float]]:
    """Up to `count` children of `parent`, each different from the parent and from one another.

    Every parameter in `specs` is perturbed (see the module); parameters of `parent` not in `specs` are
    carried unchanged. Fewer than `count` come back when the ranges hold too few distinct values.
    """
    _check_specs(specs)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    missing = [spec.name for spec in specs if spec.name not in parent]
    if missing:
        raise ValueError(f"parent has no value for parameter(s) {', '.join(missing)}")
    if not specs:
        return []  # nothing to perturb: no child could differ from the parent
    parent_key = tuple(_clamp(parent[spec.name], spec) for spec in specs)
    seen = {tuple(parent[spec.name] for spec in specs), parent_key}
    children: list[dict[str, float]] = []
    for _ in range(count * _ATTEMPTS_PER_CHILD):
        if len(children) == count:
            break
        values = tuple(_perturb(parent[spec.name], spec, step, rng) for spec in specs)
        if values in seen:
            continue
        seen.add(values)
        child = dict(parent)
        child.update(zip((spec.name for spec in specs), values, strict=True))
        children.append(child)
    return children


def adapt_step(step: float, improved: int, tried: int, low: float = 0.01, high: float = 0.5) -> float:
    """The 1/5 success rule: ×1.5 when more than a fifth of `tried` children improved, ×0.6 when fewer,
    unchanged at exactly a fifth or when nothing was tried; clamped to [low, high]."""
    if not 0 <= improved <= tried:
        raise ValueError(f"improved must be within [0, tried = {tried}], got {improved!r}")
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low!r}, high={high!r}")
    if tried:
        rate = improved / tried
        if rate > 0.2:
            step *= 1.5
        elif rate < 0.2:
            step *= 0.6
    return min(high, max(low, step))


def better(a: float, b: float, direction: Direction) -> bool:
    """Whether `a` is strictly better than `b` (higher for "max", lower for "min")."""
    _check_direction(direction)
    return a > b if direction == "max" else a < b


def _check_specs(specs: Sequence[ParameterSpec]) -> None:
    names: set[str] = set()
    for spec in specs:
        if spec.name in names:
            raise ValueError(f"parameter {spec.name!r} is specified twice")
        names.add(spec.name)
        if not (math.isfinite(spec.low) and math.isfinite(spec.high)):
            raise ValueError(f"parameter {spec.name!r}: low and high must be finite")
        if spec.low >= spec.high:
            raise ValueError(
                f"parameter {spec.name!r}: low must be below high, got low={spec.low!r}, high={spec.high!r}"
            )
        if spec.log_scale and spec.low <= 0:
            raise ValueError(f"parameter {spec.name!r}: a log-scale range needs low > 0, got {spec.low!r}")
        if spec.integer and math.ceil(spec.low) > math.floor(spec.high):
            raise ValueError(f"parameter {spec.name!r}: no integer within [{spec.low!r}, {spec.high!r}]")


def _perturb(value: float, spec: ParameterSpec, step: float, rng: random.Random) -> float:
    # A parent outside the range (made under an older, wider spec) starts from the nearest edge.
    u = _to_unit(_clamp(value, spec), spec)
    return _clamp(_from_unit(_reflect(u + rng.gauss(0.0, step)), spec), spec)


def _to_unit(value: float, spec: ParameterSpec) -> float:
    if spec.log_scale:
        return (math.log(value) - math.log(spec.low)) / (math.log(spec.high) - math.log(spec.low))
    return (value - spec.low) / (spec.high - spec.low)


def _from_unit(u: float, spec: ParameterSpec) -> float:
    if spec.log_scale:
        return math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low)))
    return spec.low + u * (spec.high - spec.low)


def _reflect(u: float) -> float:
    """Folds u back into [0, 1] as a mirror would (period 2), however far the step went."""
    u %= 2.0
    return 2.0 - u if u > 1.0 else u


def _clamp(value: float, spec: ParameterSpec) -> float:
    if spec.integer:
        # Rounded first, then kept within the integers of the range (round(0.4) = 0 is below low = 0.5).
        return float(min(math.floor(spec.high), max(math.ceil(spec.low), round(value))))
    return min(spec.high, max(spec.low, value))


# ---------------------------------------------------------------- promotion


def relative_improvement(incumbent_total: float, candidate_total: float, direction: Direction) -> float:
    """Signed so that > 0 is better: (c − i) / |i| for "max", (i − c) / |i| for "min" (0.2 = 20 % better).

    An incumbent total of 0 has no relative change: equal totals give 0, otherwise ±RELATIVE_CAP by which
    is better. Every result is capped to ±RELATIVE_CAP, so it stays finite near 0 too.
    """
    _check_direction(direction)
    if not (math.isfinite(incumbent_total) and math.isfinite(candidate_total)):
        raise ValueError(f"totals must be finite, got {incumbent_total!r} and {candidate_total!r}")
    sign = 1.0 if direction == "max" else -1.0
    difference = sign * (candidate_total - incumbent_total)
    if incumbent_total == 0:
        return 0.0 if difference == 0 else math.copysign(RELATIVE_CAP, difference)
    return min(RELATIVE_CAP, max(-RELATIVE_CAP, difference / abs(incumbent_total)))


def absolute_improvement(incumbent_total: float, candidate_total: float, direction: Direction) -> float:
    """Signed so that > 0 is better, in the metric's points: c − i for "max", i − c for "min"."""
    _check_direction(direction)
    if not (math.isfinite(incumbent_total) and math.isfinite(candidate_total)):
        raise ValueError(f"totals must be finite, got {incumbent_total!r} and {candidate_total!r}")
    return candidate_total - incumbent_total if direction == "max" else incumbent_total - candidate_total


def improvement(
    incumbent_total: float, candidate_total: float, direction: Direction, kind: ImprovementKind
) -> float:
    """The candidate's improvement over the incumbent as the agent's bar counts it (see the module)."""
    if kind == "absolute":
        return absolute_improvement(incumbent_total, candidate_total, direction)
    if kind == "relative":
        return relative_improvement(incumbent_total, candidate_total, direction)
    raise ValueError(f"kind must be 'absolute' or 'relative', got {kind!r}")


def look_confidence(look: int, alpha: float = 0.05) -> float:
    """The two-sided confidence of look `look` (1, 2, …) at one data version: 1 − α·2^−look, so the
    false-promotion chances of all looks sum to less than α/2 (one-sided)."""
    if not (isinstance(look, int) and look >= 1):
        raise ValueError(f"look must be an integer >= 1, got {look!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    return 1 - alpha * 2.0**-look


def improvement_interval(
    incumbent: Sequence[float],
    candidate: Sequence[float],
    direction: Direction,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
    kind: ImprovementKind = "relative",
) -> Interval:
    """The improvement of the candidate's total over the incumbent's (relative or absolute: `kind`) with a
    paired sign-flip (randomisation) interval; `incumbent[k]` and `candidate[k]` measure the same unit.

    The interval holds the improvements δ that a sign-flip test does not reject: were every unit's
    difference beyond δ as likely to have the other sign, flipping signs at random would often give a
    sum as large. Beyond δ means d − δ (absolute: the same gain on every unit) or d − δ·|i| (relative:
    the same share of every unit's figure). Flipping the units of a subset F, the test rejects δ exactly
    when δ is below Σ_F d / Σ_F w (w = 1, or |i|), so the bounds are quantiles of that ratio over
    `resamples` random subsets. Exact under that symmetry whatever the units' spread: on the detector's
    24 files of lumpy NAB scores a percentile bootstrap claimed 97.5 % and held 96.4 % (issue 30's A/A).

    With 2^n ≤ `resamples` units' subsets they are all enumerated (the exact test). Where the units cannot
    bound the gain at this confidence (n units say no more than 1 in 2^n), the bound is 0. The interval
    is widened to contain the estimate, which only makes the promotion rule more cautious.
    """
    _check_direction(direction)
    if len(incumbent) != len(candidate):
        raise ValueError(
            f"incumbent and candidate must be paired (same length), got {len(incumbent)} and {len(candidate)}"
        )
    if not incumbent:
        raise ValueError("incumbent and candidate must not be empty")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples!r}")
    sign = 1.0 if direction == "max" else -1.0
    differences = [sign * (c - i) for i, c in zip(incumbent, candidate, strict=True)]
    weights = [1.0] * len(differences) if kind == "absolute" else [abs(i) for i in incumbent]
    incumbent_total = math.fsum(incumbent)
    estimate = improvement(incumbent_total, math.fsum(candidate), direction, kind)
    pairs = list(zip(differences, weights, strict=True))
    tail = (1 - confidence) / 2
    if 2 ** len(pairs) <= resamples:  # every subset: the test's exact distribution
        subsets = [[p for k, p in enumerate(pairs) if mask >> k & 1] for mask in range(2 ** len(pairs))]
        allowed = math.floor(tail * len(subsets))  # p(δ) = #{shift ≤ δ} / 2^n
    else:
        rng = random.Random(seed)
        subsets = [[p for p in pairs if rng.random() < 0.5] for _ in range(resamples)]
        allowed = math.floor(tail * (resamples + 1)) - 1  # p(δ) = (1 + #{shift ≤ δ}) / (resamples + 1)
    shifts: list[float | None] = []  # per subset; None: it rejects nothing (no flip, or no weight in it)
    for picked in subsets:
        weight = math.fsum(w for _, w in picked)
        shifts.append(math.fsum(d for d, _ in picked) / weight if weight > 0 else None)
    lows = sorted(-math.inf if x is None else x for x in shifts)
    highs = sorted((math.inf if x is None else x for x in shifts), reverse=True)
    low_shift = lows[allowed] if 0 <= allowed < len(lows) else -math.inf
    high_shift = highs[allowed] if 0 <= allowed < len(highs) else math.inf
    total_weight = math.fsum(weights)

    def as_improvement(shift: float) -> float:
        total = shift * total_weight
        if kind == "absolute":
            return total
        if incumbent_total == 0:
            return 0.0 if total == 0 else math.copysign(RELATIVE_CAP, total)
        return min(RELATIVE_CAP, max(-RELATIVE_CAP, total / abs(incumbent_total)))

    # Too few units to bound the gain at this confidence (8 units can say no more than 1 in 256): the
    # bound is 0, no gain claimed, and the promotion rule refuses.
    low = min(estimate, as_improvement(low_shift) if math.isfinite(low_shift) else 0.0)
    high = max(estimate, as_improvement(high_shift) if math.isfinite(high_shift) else 0.0)
    return Interval(estimate=estimate, low=low, high=high, confidence=confidence, kind=kind)


def should_promote(interval: Interval, threshold: float) -> bool:
    """Round 1 (runs begun before release 30): promote only when the interval's lower bound reaches the
    threshold. On the detector's 24 decision files even a +12-point gain has a lower bound near 0."""
    return interval.low >= threshold


def clears_bar(interval: Interval, bar: float) -> bool:
    """Promote when the improvement is meaningful and real: its estimate reaches the agent's bar (in the
    agent's unit) and the interval's lower bound is above 0 (above the bar, when a test sets a negative
    one to promote anything measured). A lucky benchmark fails the second; a real but trivial gain the
    first."""
    return interval.estimate >= bar and interval.low > min(0.0, bar)


def _check_direction(direction: str) -> None:
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
