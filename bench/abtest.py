"""Autarky's two A/B designs beside a fixed-horizon test, in simulation (bench/abtest_sim.py).

    .venv/bin/python -m bench.abtest [--runs 10000] [--seed 1] [--metric binary|lognormal|both]
                                     [--share 0.5 0.1] [--log-sd 0.8 1.2] [--effect 0 0.05 0.1 0.2]
                                     [--reads 20]

Per configuration (metric, challenger share, log-sd) and true effect, --runs simulated tests read after
every batch (--reads batches per fixed horizon), all three methods on the same observations:
- mixture: the always-valid design (autarky.models.sequential.evaluate) at every read; stopped undecided
  only at 4x the fixed horizon (a simulation limit, reported);
- group: the group-sequential design (autarky.models.group_sequential, the default plan) at every read;
- fixed: the fixed-horizon one-sided z-test of the log ratio at α/2 at exactly its size, with 80 % power
  at the minimum (no cap, no other horizon).
All three promote on the same rule: a significant improvement (lower bound of the log ratio > 0).
Metrics: binary, a success rate 0.30 × (1 + effect), higher is better; lognormal, latency (median 800 ms)
× (1 − effect), lower is better. Design: α = 0.05 two-sided (a wrong "better" at most 2.5 %), minimum
improvement 10 %, power 0.8.

Goals (issue 27): A/A false promotions <= α/2 within 2 standard errors for both designs; for the
group-sequential default: power >= 80 % at the minimum and mean samples <= 0.8x / 0.85x / 0.6x the fixed
horizon at effects 5 / 10 / 20 %.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `autarky` and `bench` packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autarky.models.group_sequential import plan_group_sequential
from autarky.models.sequential import SequentialDesign
from bench.abtest_sim import BETTER, CONTINUE, NOT_BETTER, WORSE, Metric, Outcome, Simulation, simulate

BINARY_RATE = 0.30
LATENCY_MEDIAN_MS = 800.0
SAMPLE_GOALS = {0.05: 0.80, 0.10: 0.85, 0.20: 0.60}  # group-sequential mean samples / fixed horizon
POWER_GOAL = 0.80


def configurations(
    metric: str, shares: Sequence[float], log_sds: Sequence[float]
) -> list[tuple[Metric, float]]:
    out: list[tuple[Metric, float]] = []
    if metric in ("binary", "both"):
        out += [(Metric("binary", BINARY_RATE), share) for share in shares]
    if metric in ("lognormal", "both"):
        out += [(Metric("lognormal", LATENCY_MEDIAN_MS, sd), share) for sd in log_sds for share in shares]
    return out


def _cell(o: Outcome, fixed_total: int) -> str:
    return f"{100 * o.rate(BETTER):6.2f} % {o.samples.mean() / fixed_total:5.2f}x"


def print_table(title: str, sims: list[Simulation]) -> None:
    print(title)
    head = (
        f"{'effect':>6} | {'mixture: promoted  n/fix':>24} {'futile':>6} {'worse':>6} {'undec':>6} | "
        f"{'group: promoted  n/fix':>22} {'futile':>6} | {'fixed: promoted':>15}"
    )
    print(head)
    print("-" * len(head))
    for s in sims:
        print(
            f"{100 * s.effect:4.0f} % | {_cell(s.mixture, s.fixed_total):>24} "
            f"{100 * s.mixture.rate(NOT_BETTER):5.1f}% {100 * s.mixture.rate(WORSE):5.1f}% "
            f"{100 * s.mixture.rate(CONTINUE):5.1f}% | {_cell(s.group, s.fixed_total):>22} "
            f"{100 * (s.group.rate(NOT_BETTER) + s.group.rate(WORSE)):5.1f}% | "
            f"{100 * s.fixed.rate(BETTER):13.2f} %"
        )
    print()


def goals(sims: list[Simulation], alpha: float) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    claim = alpha / 2
    for s in sims:
        spread = f" log-sd {s.metric.log_sd:g}" if s.metric.kind == "lognormal" else ""
        where = f"{s.metric.kind}{spread}, share {s.share:g}"
        if s.effect == 0:
            slack = 2 * math.sqrt(claim * (1 - claim) / s.runs)
            for name, o in (("mixture", s.mixture), ("group", s.group)):
                rate = o.rate(BETTER)
                out.append(
                    (
                        f"{where}: A/A false promotion ({name}) {100 * rate:.2f} % <= {claim:.1%} + 2 SE",
                        rate <= claim + slack,
                    )
                )
        for effect, ceiling in SAMPLE_GOALS.items():
            if abs(s.effect - effect) < 1e-9:
                ratio = s.group.samples.mean() / s.fixed_total
                out.append(
                    (
                        f"{where}: effect {effect:.0%}: group mean samples {ratio:.3f}x <= {ceiling}x",
                        ratio <= ceiling,
                    )
                )
        if abs(s.effect - 0.10) < 1e-9:
            power, slack = s.group.rate(BETTER), 2 * math.sqrt(POWER_GOAL * (1 - POWER_GOAL) / s.runs)
            out.append(
                (
                    f"{where}: group power at the minimum {100 * power:.1f} % >= 80 % - 2 SE",
                    power >= POWER_GOAL - slack,
                )
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=10_000, help="simulated tests per configuration and effect"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metric", choices=("binary", "lognormal", "both"), default="both")
    parser.add_argument("--share", type=float, nargs="+", default=[0.5, 0.1], help="the challenger's share")
    parser.add_argument("--log-sd", type=float, nargs="+", default=[0.8, 1.2], help="lognormal log-sds")
    parser.add_argument(
        "--effect", type=float, nargs="+", default=[0.0, 0.05, 0.10, 0.20], help="true relative effects"
    )
    parser.add_argument("--reads", type=int, default=20, help="reads (batches) per fixed horizon")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seed < 0 or args.reads < 1:
        parser.error("--runs and --reads must be >= 1, --seed >= 0")
    if any(not 0 < s < 1 for s in args.share):
        parser.error("--share values must be within (0, 1)")
    if any(not 0 < sd <= 3 for sd in args.log_sd):
        parser.error("--log-sd values must be within (0, 3]")
    if any(not 0 <= e < 1 for e in args.effect):
        parser.error("--effect values must be within [0, 1) (a relative improvement)")
    started = time.perf_counter()
    plans = {}
    for direction in ("higher", "lower"):
        design = SequentialDesign(direction=direction)  # type: ignore[arg-type]
        plans[direction] = (design, plan_group_sequential(design))
    design = plans["higher"][0]
    print(
        f"A/B designs in simulation: {args.runs} runs per cell, seed {args.seed}, read {args.reads} times "
        f"per fixed horizon; alpha {design.alpha:g} two-sided (false promotion claimed <= "
        f"{design.alpha / 2:.1%}), minimum improvement {design.min_relative_improvement:.0%}, power "
        f"{design.power:g}"
    )
    print(f"group-sequential plan: {plans['higher'][1].text()}")
    print(
        "columns: promoted = 'better' (effect 0: false promotion; else power); n/fix = mean samples / the "
        "fixed horizon's;\n  futile, worse, undec = the other ends (mixture undecided at 4x the fixed "
        "horizon)\n"
    )
    all_sims: list[Simulation] = []
    for index, (metric, share) in enumerate(configurations(args.metric, args.share, args.log_sd)):
        d, plan = plans[metric.direction]
        sims = [
            simulate(metric, effect, share, args.runs, args.seed * 1000 + index * 10 + k, d, plan, args.reads)
            for k, effect in enumerate(sorted(set(args.effect)))
        ]
        sd = f", log-sd {metric.log_sd:g}" if metric.kind == "lognormal" else f", rate {metric.mean:g}"
        print_table(
            f"{metric.kind}{sd}, challenger share {share:g}: fixed horizon {sims[0].fixed_total:,} samples",
            sims,
        )
        all_sims += sims
    print("goals:")
    for text, met in goals(all_sims, design.alpha):
        print(f"  {'met    ' if met else 'NOT met'}  {text}")
    print(f"\nsimulated in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
