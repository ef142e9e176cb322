"""CMA-ES proposals for self-modification's parameter search (pure code, no I/O, deterministic given a seed).

CMA-ES (via the well-kept `cma` package) learns which directions and scales of change pay off — a
covariance over the parameters — where the (1+λ) strategy of `policy` perturbs each parameter alone
with one step. It searches the same normalised space as `policy.mutate` ([0, 1] per parameter, log scale
where the spec says so), kept inside the box by cma's own boundary handling (`bounds`), then mapped to
the range, rounded for integer parameters and clamped.

Stateless: `cma_children` rebuilds the optimiser from the evaluated history on every call (ask/tell
replay), so a workflow carries only the (parameters, score) pairs it has anyway, and a replay gets the
same children. A history entry that one of the replayed generation's samples maps to is told as that
sample; any other (the incumbent, `mutate`'s children, an LLM's proposal) as its own point, which cma
clips to a step its distribution could have made — so the operators can share one history.

Determinism: the normal samples come from a `numpy.random.Generator` seeded with `seed`, never from
numpy's global state (a worker runs workflows on several threads), and every part of cma that would read
the global state is off (its seeding, mirrored sampling, integer handling). The optimiser's numbers (an
eigendecomposition) could differ in the last bits on another CPU or BLAS, so unit coordinates are rounded
to 1e-9 before they are mapped to the ranges; running the search in an activity avoids the question.

Temporal's workflow sandbox cannot import numpy (its import calls os.putenv): workflow code that calls
`cma_children` needs the modules in `SANDBOX_PASSTHROUGH` passed through (the worker's
`SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)`, which keeps the import lazy,
or a call inside `workflow.unsafe.imports_passed_through()`, as workflows/self_modify.py does).

`cma` (and numpy) are imported on first use only: a worker that never runs this search does not pay the
import (≈ 25 MiB without scipy; cma also loads scipy when it is installed, ≈ 90 MiB).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from autarky.selfmod.policy import _check_specs, _clamp, _from_unit, _to_unit, better
from autarky.selfmod.types import Direction, ParameterSpec

# What workflow code calling `cma_children` must pass through Temporal's sandbox (see the module).
SANDBOX_PASSTHROUGH = ("cma", "numpy")
# The first step in the normalised space: a fifth of each range, as broad as `policy`'s first steps.
DEFAULT_SIGMA0 = 0.2
# The search's smallest step per continuous parameter (the floor of `policy.adapt_step`): below it the
# benchmark's noise, not the parameter, decides.
MIN_STD = 0.01
# For an integer parameter, the smallest step is this share of the unit space between its two closest
# integers: smaller steps would round every child to the same value.
INTEGER_MIN_STD_SHARE = 0.3
# Batches drawn per requested child before accepting fewer (narrow integer ranges have few values).
_ATTEMPTS_PER_CHILD = 20
# Unit coordinates are rounded to this before mapping (see the module: last-bit differences across CPUs).
_UNIT_DECIMALS = 9


def cma_children(
    history: Sequence[tuple[Mapping[str, float], float]],
    specs: Sequence[ParameterSpec],
    direction: Direction,
    seed: int,
    count: int,
    *,
    sigma0: float = DEFAULT_SIGMA0,
    popsize: int | None = None,
) -> list[dict[str, float]]:
    """Up to `count` new children, different from one another and from every point of `history`.

    `history` is every evaluated (parameters, score) in the order they were evaluated; the search starts
    at the first entry (by convention the incumbent) with step `sigma0` in the normalised space, or at the
    centre of the ranges when the history is empty. A non-finite score (a failed candidate) ranks below
    every finite one. `popsize` is the optimiser's generation size (cma's default 4 + ⌊3 ln d⌋ when None);
    `count` need not equal it. Parameters of the best entry that are not in `specs` are carried into every
    child unchanged. Fewer than `count` come back when the ranges hold too few distinct values.
    """
    _check_specs(specs)
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    if not (math.isfinite(sigma0) and 0 < sigma0 <= 1):
        raise ValueError(f"sigma0 must be within (0, 1] (a step in the normalised space), got {sigma0!r}")
    if popsize is not None and popsize < 4:
        raise ValueError(f"popsize must be >= 4 (cma recombines the better half), got {popsize!r}")
    for k, (parameters, _score) in enumerate(history):
        missing = [spec.name for spec in specs if spec.name not in parameters]
        if missing:
            raise ValueError(f"history entry {k} has no value for parameter(s) {', '.join(missing)}")
    if not specs or count == 0:
        return []

    import numpy as np  # on first use only (see the module)

    keys = [_key(parameters, specs) for parameters, _ in history]
    fitness = _fitness([score for _, score in history], direction)
    x0 = [_unit(history[0][0][spec.name], spec) for spec in specs] if history else [0.5] * len(specs)
    es = _optimiser(x0, specs, seed, sigma0, popsize)
    lam = es.popsize
    # Replay: the entries, in order, fill generations. An entry whose values one of the generation's
    # samples maps to is told as that sample (cma knows its exact step); any other (another operator's
    # point, a child of an extra ask) as its unit point, which cma clips to a step its distribution could
    # have made. A generation closes once it holds `lam` entries and the next is none of its samples, so
    # a caller's batches need not line up with the optimiser's generations.
    samples = _by_key(es.ask(number=lam), specs)
    solutions: list[Any] = []
    values: list[float] = []
    for k, key in enumerate(keys):
        if len(solutions) >= lam and key not in samples:
            es.tell(solutions, values)
            samples, solutions, values = _by_key(es.ask(number=lam), specs), [], []
        sample = samples.pop(key, None)
        solutions.append(
            np.asarray([_unit(history[k][0][spec.name], spec) for spec in specs])
            if sample is None
            else sample
        )
        values.append(fitness[k])
    if len(solutions) >= lam:
        es.tell(solutions, values)
        samples = _by_key(es.ask(number=lam), specs)

    # The children: the current generation's samples no entry took, then samples of further asks.
    seen = set(keys)
    base = _base(history, direction)
    children: list[dict[str, float]] = []
    for _ in range(count * _ATTEMPTS_PER_CHILD):
        for key in samples:
            if len(children) == count:
                return children
            if key in seen:
                continue
            seen.add(key)
            child = dict(base)
            child.update(zip((spec.name for spec in specs), key, strict=True))
            children.append(child)
        if len(children) == count:
            break
        samples = _by_key(es.ask(number=count - len(children)), specs)
    return children


def _by_key(samples: Sequence[Any], specs: Sequence[ParameterSpec]) -> dict[tuple[float, ...], Any]:
    """Each sample by the parameter values it maps to (the first sample of each value; dicts keep order)."""
    found: dict[tuple[float, ...], Any] = {}
    for sample in samples:
        key = tuple(
            _clamp(_from_unit(min(1.0, max(0.0, round(float(u), _UNIT_DECIMALS))), spec), spec)
            for spec, u in zip(specs, sample.tolist(), strict=True)
        )
        found.setdefault(key, sample)
    return found


def _optimiser(
    x0: list[float], specs: Sequence[ParameterSpec], seed: int, sigma0: float, popsize: int | None
) -> Any:
    with warnings.catch_warnings():  # cma says at import that it cannot plot without matplotlib
        warnings.filterwarnings("ignore", message="Could not import matplotlib")
        import cma
    import numpy as np

    normal = np.random.default_rng(seed)
    options: dict[str, Any] = {
        # Normal samples from our own generator; with `randn` given, cma's `seed` (which would reseed
        # numpy's global state) is unused, and NaN says so without a warning.
        "randn": lambda *shape: normal.standard_normal(shape),
        "seed": math.nan,
        "CMA_mirrors": 0,  # mirrored sampling's stochastic rounding reads numpy's global state
        "minstd": [_min_std(spec) for spec in specs],
        "bounds": [0.0, 1.0],
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
    }
    if popsize is not None:
        options["popsize"] = popsize
    return cma.CMAEvolutionStrategy(x0, sigma0, options)


def _min_std(spec: ParameterSpec) -> float:
    if not spec.integer:
        return MIN_STD
    low, high = math.ceil(spec.low), math.floor(spec.high)
    if low == high:
        return MIN_STD  # a single value: every child rounds to it anyway
    # The closest two integers in the unit space: the top pair on a log scale, any pair on a linear one.
    gap = _to_unit(float(high), spec) - _to_unit(float(high - 1), spec)
    return max(MIN_STD, INTEGER_MIN_STD_SHARE * gap)


def _unit(value: float, spec: ParameterSpec) -> float:
    # A value outside the range (an older, wider spec) counts as the nearest edge.
    return min(1.0, max(0.0, _to_unit(min(spec.high, max(spec.low, value)), spec)))


def _fitness(scores: Sequence[float], direction: Direction) -> list[float]:
    """What cma minimises: the score, negated for "max"; a failed (non-finite) one just below the worst."""
    sign = -1.0 if direction == "max" else 1.0
    finite = [sign * s for s in scores if math.isfinite(s)]
    worst = max(finite) + 1.0 if finite else 0.0
    return [sign * s if math.isfinite(s) else worst for s in scores]


def _key(parameters: Mapping[str, float], specs: Sequence[ParameterSpec]) -> tuple[float, ...]:
    return tuple(_clamp(parameters[spec.name], spec) for spec in specs)


def _base(history: Sequence[tuple[Mapping[str, float], float]], direction: Direction) -> dict[str, float]:
    """The best finite-scored entry's parameters (the first among equals), for the parameters not searched."""
    best: tuple[Mapping[str, float], float] | None = None
    for parameters, score in history:
        if math.isfinite(score) and (best is None or better(score, best[1], direction)):
            best = (parameters, score)
    if best is None:
        return dict(history[0][0]) if history else {}
    return dict(best[0])
