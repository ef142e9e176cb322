"""Issue 30's A/A for `python -m bench.selfmod`: how often would an evolution promote a candidate with no real
gain, on the recorded unit structure of each agent (bench/data/selfmod_units.json, recorded by
`python -m bench.selfmod_units`) with the workflow's best-of-many selection (autarky.selfmod.null_runs)?

The rate comes with a Wilson 95 % interval (scipy is for tests only). The evolutions are shared among worker
processes, each with its own seed: every evolution's sign-flip interval is the slow part.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from autarky.selfmod.agents import AGENTS
from autarky.selfmod.null_runs import Rule, UnitTable, promotions
from bench.selfmod_units import load as load_units

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
GOAL = 0.05  # issue 30: an A/A evolution promotes in at most 5 % of runs
GENERATIONS, POPULATION = 3, 4  # the workflow's defaults: the best of 12 null candidates


@dataclass
class NullRate:
    agent: str
    runs: int
    looks: int
    promoted: int


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if trials <= 0:
        raise ValueError(f"trials must be >= 1, got {trials}")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _null_count(agent: str, runs: int, looks: int, seed: int) -> int:
    """One share of an A/A measure (in a worker process): the false promotions of `runs` histories."""
    recorded = load_units()[agent]
    spec = AGENTS[agent]
    table = UnitTable(recorded["incumbent"], recorded["variants"])
    rule = Rule(spec.direction, spec.improvement, spec.threshold)
    return promotions(
        table, rule, runs, generations=GENERATIONS, population=POPULATION, looks=looks, seed=seed
    )


def null_rates(
    agents: Sequence[str], runs: int, histories: int, looks: int, seed: int, processes: int
) -> list[NullRate]:
    """Per agent: `runs` one-look evolutions and `histories` histories of `looks` looks, in `processes`
    shares with their own seeds (each evolution's sign-flip interval is the slow part)."""
    jobs = [(agent, n, k) for agent in agents for n, k in ((runs, 1), (histories, looks)) if n > 0]
    shares = max(1, processes)
    # spawn: the parent already runs Temporal's core threads, which a fork would copy half-way
    with ProcessPoolExecutor(shares, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            [
                pool.submit(_null_count, agent, n // shares + (i < n % shares), k, seed * 1000 + 10 * k + i)
                for i in range(shares)
            ]
            for agent, n, k in jobs
        ]
        return [
            NullRate(agent, n, k, sum(f.result() for f in share))
            for (agent, n, k), share in zip(jobs, futures, strict=True)
        ]


def null_table(rates: Sequence[NullRate]) -> list[str]:
    """The A/A false-promotion rates with their Wilson 95 % intervals."""
    head = f"{'agent':<17} {'runs':>5} {'looks':>5} {'promoted':>8} {'rate':>7} {'95 % interval':>17}"
    head += f" {'≤ 5 %':>5}"
    lines = [head, "-" * len(head)]
    for r in rates:
        low, high = wilson(r.promoted, r.runs)
        rate = r.promoted / r.runs
        lines.append(
            f"{r.agent:<17} {r.runs:>5} {r.looks:>5} {r.promoted:>8} {rate:>7.1%} "
            f"{f'[{low:.1%}, {high:.1%}]':>17} {'yes' if rate <= GOAL else 'NO':>5}"
        )
    return lines
