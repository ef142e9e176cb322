"""Autarky's sequential A/B test (autarky.models.sequential) beside a fixed-horizon test, in simulation.

    .venv/bin/python -m bench.abtest [--runs 1000] [--seed 1] [--metric binary|latency|both]
                                     [--effect 0 0.05 0.10 0.20 ...] [--peek-every 100] [--quick]

Per metric and true effect, --runs simulated tests (A/A for effect 0, A/B otherwise):
- binary: a success rate (e.g. "the structured output validated"), control 0.30, higher is better; the
  challenger's rate is 0.30 × (1 + effect).
- latency: lognormal milliseconds (median 800 ms, log-sd 0.8: skewed like model calls), lower is better;
  the challenger's latency is the control's × (1 − effect), so the effect is the relative reduction.
- The design: α = 0.05, minimum relative improvement 10 %, power 0.8 (SequentialDesign's defaults).
- fixed: a two-sided z-test at α on the difference of means at the fixed-horizon size per arm
  (fixed_horizon_samples with the true baseline mean and variance: 80 % power at a 10 % improvement);
  promoted when significant in the better direction. It always takes its full size.
- sequential: `evaluate` after every --peek-every samples per arm, stopping at the first decision other
  than "continue", or undecided at the cap of 3× the fixed-horizon size. Promoted: decided "better".
  Samples per arm to a decision count an undecided run at the cap.
- promoted: with effect 0 the false-promotion rate, otherwise the power (a 5 % effect is real but below
  the minimum: promoting it is not an error, the design just does not aim at it).
- peeked fixed (A/A only): the fixed test's z-test read at every peek up to the cap, promoting at the
  first significant one: the error peeking causes without a sequential method.
Both methods see the same simulated observations (the fixed test reads the first n of each run).

Goals: a false-promotion rate of at most α on A/A, and at least 40 % fewer samples per arm on average
than the fixed horizon when the effect is at least twice the minimum (20 %).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `autarky` package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autarky.models.sequential import ArmSummary, SequentialDesign, evaluate, fixed_horizon_samples

BINARY_RATE = 0.30
LATENCY_MEDIAN_MS = 800.0
LATENCY_LOG_SD = 0.8
CAP_FACTOR = 3  # the sequential test stops undecided at this multiple of the fixed-horizon size
CHUNK = 250  # runs simulated at once (bounds memory: latency draws every observation)
SAVING_GOAL = 0.40
METRICS = ("binary", "latency")


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str
    mean: float  # the control's true mean and variance
    variance: float


def metric(name: str) -> Metric:
    if name == "binary":
        return Metric(name, "higher", BINARY_RATE, BINARY_RATE * (1 - BINARY_RATE))
    s2 = LATENCY_LOG_SD**2
    mean = LATENCY_MEDIAN_MS * math.exp(s2 / 2)
    return Metric(name, "lower", mean, mean * mean * math.expm1(s2))


@dataclass
class Scenario:
    metric: str
    effect: float
    runs: int
    fixed_n: int
    cap: int
    seq_better: int = 0
    seq_not_better: int = 0
    seq_worse: int = 0
    seq_undecided: int = 0
    fixed_better: int = 0
    peeked_better: int = 0
    seq_samples: list[int] | None = None

    @property
    def saving(self) -> float:
        return 1 - statistics.fmean(self.seq_samples or [0]) / self.fixed_n


def cumulative(m: Metric, effect: float, runs: int, peek: int, batches: int, fixed_n: int, rng) -> tuple:
    """Per arm (control, treatment): n, mean and variance at every peek (runs × batches) and at fixed_n."""
    arms = []
    for arm in (0, 1):
        if m.name == "binary":
            p = m.mean * (1 + effect) if arm else m.mean
            # Successes per batch. The fixed size ends r observations into batch q: how many of that
            # batch's successes fall among its first r is hypergeometric (the same observations).
            per_batch = rng.binomial(peek, p, size=(runs, batches))
            s1 = np.cumsum(per_batch, axis=1).astype(float)
            q, r = divmod(fixed_n, peek)
            f1 = s1[:, q - 1] if q else np.zeros(runs)
            if r:
                good = per_batch[:, q]
                f1 = f1 + rng.hypergeometric(good, peek - good, r)
            mean, fixed_mean = s1 / _ns(peek, batches), f1 / fixed_n
            arms.append((mean, mean * (1 - mean), fixed_mean, fixed_mean * (1 - fixed_mean)))
            continue
        scale = 1 - effect if arm else 1.0
        x = scale * rng.lognormal(math.log(LATENCY_MEDIAN_MS), LATENCY_LOG_SD, size=(runs, peek * batches))
        s1, s2 = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)
        at = np.arange(1, batches + 1) * peek - 1
        n = _ns(peek, batches)
        mean = s1[:, at] / n
        var = np.maximum(s2[:, at] - s1[:, at] * mean, 0) / (n - 1)
        fixed_mean = s1[:, fixed_n - 1] / fixed_n
        fixed_var = np.maximum(s2[:, fixed_n - 1] - s1[:, fixed_n - 1] * fixed_mean, 0) / (fixed_n - 1)
        arms.append((mean, var, fixed_mean, fixed_var))
    return arms[0], arms[1]


def _ns(peek: int, batches: int) -> np.ndarray:
    return np.arange(1, batches + 1, dtype=float) * peek


def significant(mc, vc, mt, vt, n, sign: float, z: float) -> np.ndarray:
    """The fixed test: the difference is more than z standard errors in the better direction."""
    se = np.sqrt((vc + vt) / n)
    diff = sign * (mt - mc)
    return (diff > z * se) & (se > 0) | (se == 0) & (diff > 0)


def simulate(name: str, effect: float, runs: int, peek: int, seed: int) -> Scenario:
    m = metric(name)
    design = SequentialDesign(direction=m.direction)  # type: ignore[arg-type]
    fixed_n = fixed_horizon_samples(m.mean, m.variance, design)
    batches = math.ceil(CAP_FACTOR * fixed_n / peek)
    result = Scenario(name, effect, runs, fixed_n, batches * peek, seq_samples=[])
    sign = 1.0 if m.direction == "higher" else -1.0
    z = statistics.NormalDist().inv_cdf(1 - design.alpha / 2)
    # A seed per scenario: a scenario's result does not depend on which others run
    rng = np.random.default_rng([seed, METRICS.index(name), round(effect * 1e6)])
    ns = _ns(peek, batches)
    for start in range(0, runs, CHUNK):
        size = min(CHUNK, runs - start)
        (mc, vc, fmc, fvc), (mt, vt, fmt, fvt) = cumulative(m, effect, size, peek, batches, fixed_n, rng)
        result.fixed_better += int(significant(fmc, fvc, fmt, fvt, fixed_n, sign, z).sum())
        if effect == 0:
            result.peeked_better += int(significant(mc, vc, mt, vt, ns, sign, z).any(axis=1).sum())
        for i in range(size):
            decision, n = "continue", batches * peek
            for k in range(batches):
                nk = (k + 1) * peek
                res = evaluate(
                    ArmSummary(nk, float(mc[i, k]), float(vc[i, k])),
                    ArmSummary(nk, float(mt[i, k]), float(vt[i, k])),
                    design,
                )
                if res.decision != "continue":
                    decision, n = res.decision, nk
                    break
            result.seq_samples.append(n)
            if decision == "better":
                result.seq_better += 1
            elif decision == "not_better":
                result.seq_not_better += 1
            elif decision == "worse":
                result.seq_worse += 1
            else:
                result.seq_undecided += 1
    return result


def rate(count: int, runs: int) -> str:
    return f"{100 * count / runs:5.1f} %"


def print_report(scenarios: Sequence[Scenario], alpha: float, peek: int) -> list[tuple[str, bool | None]]:
    head = (
        f"{'metric':<8} {'effect':>6} | {'promoted':>8} {'fixed':>7} | {'mean n':>7} {'median':>7} "
        f"{'fixed n':>7} {'saving':>7} | {'not_bet':>7} {'worse':>7} {'undec':>7} | {'peeked fixed':>12}"
    )
    print(head)
    print("-" * len(head))
    for s in scenarios:
        samples = s.seq_samples or [0]
        peeked = rate(s.peeked_better, s.runs) if s.effect == 0 else ""
        print(
            f"{s.metric:<8} {100 * s.effect:>4.0f} % | {rate(s.seq_better, s.runs):>8} "
            f"{rate(s.fixed_better, s.runs):>7} | {statistics.fmean(samples):>7.0f} "
            f"{statistics.median(samples):>7.0f} {s.fixed_n:>7} {100 * s.saving:>6.1f} % | "
            f"{rate(s.seq_not_better, s.runs):>7} {rate(s.seq_worse, s.runs):>7} "
            f"{rate(s.seq_undecided, s.runs):>7} | {peeked:>12}"
        )
    print(
        "  promoted: sequential 'better' (effect 0: false-promotion rate; else power); fixed: the same\n"
        "  for the fixed-horizon z-test; mean n, median: samples per arm to the sequential decision\n"
        "  (undecided runs counted at the cap); saving: 1 - mean n / fixed n; not_bet, worse, undec:\n"
        f"  sequential futility stops, guardrail stops, undecided at the cap ({CAP_FACTOR}x fixed n);\n"
        f"  peeked fixed: the fixed z-test read every {peek} samples per arm, promoting at the first\n"
        "  significant read"
    )
    goals: list[tuple[str, bool | None]] = []
    for name in dict.fromkeys(s.metric for s in scenarios):  # the metrics run, in order
        aa = [s for s in scenarios if s.metric == name and s.effect == 0]
        for s in aa:
            fpr = s.seq_better / s.runs
            se = math.sqrt(alpha * (1 - alpha) / s.runs)
            goals.append(
                (
                    f"{name}: false-promotion rate <= {alpha:.0%}: {100 * fpr:.1f} % "
                    f"(Monte-Carlo SE at {alpha:.0%}: {100 * se:.1f} points; fixed test peeked: "
                    f"{100 * s.peeked_better / s.runs:.1f} %)",
                    fpr <= alpha,
                )
            )
        big = [s for s in scenarios if s.metric == name and s.effect >= 0.2 - 1e-12]
        for s in big:
            goals.append(
                (
                    f"{name}, effect {100 * s.effect:.0f} %: >= {SAVING_GOAL:.0%} fewer samples than the "
                    f"fixed horizon on average: {100 * s.saving:.1f} % fewer",
                    s.saving >= SAVING_GOAL,
                )
            )
        if not aa:
            goals.append(
                (f"{name}: false-promotion rate <= {alpha:.0%}: no A/A scenario (effect 0) run", None)
            )
        if not big:
            goals.append((f"{name}: sample saving at >= 2x the minimum: no effect >= 20 % run", None))
    print()
    print("goals (sequential):")
    for text, met in goals:
        mark = "n/a    " if met is None else "met    " if met else "NOT met"
        print(f"  {mark}  {text}")
    return goals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated tests per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metric", choices=("binary", "latency", "both"), default="both")
    parser.add_argument(
        "--effect", type=float, nargs="+", default=[0.0, 0.05, 0.10, 0.20], help="true relative effects"
    )
    parser.add_argument("--peek-every", type=int, default=100, help="samples per arm between reads")
    parser.add_argument("--quick", action="store_true", help="200 runs per scenario (a smoke test)")
    args = parser.parse_args(argv)
    runs = 200 if args.quick else args.runs
    if runs < 1 or args.peek_every < 1 or args.seed < 0:
        parser.error("--runs and --peek-every must be >= 1, --seed >= 0")
    if any(not 0 <= e < 1 for e in args.effect):
        parser.error("--effect values must be within [0, 1) (a relative improvement)")
    metrics = METRICS if args.metric == "both" else (args.metric,)
    design = SequentialDesign()
    started = time.perf_counter()
    scenarios = [
        simulate(name, effect, runs, args.peek_every, args.seed)
        for name in metrics
        for effect in sorted(set(args.effect))
    ]
    print(
        f"Sequential (always-valid, normal mixture) vs fixed-horizon A/B tests: {runs} runs per scenario, "
        f"seed {args.seed}, read every {args.peek_every} samples per arm"
    )
    print(
        f"  design: alpha {design.alpha:g} (two-sided), minimum improvement "
        f"{design.min_relative_improvement:.0%}, power {design.power:g}, no decision before "
        f"{design.min_samples} per arm"
    )
    print(
        f"  binary: success rate {BINARY_RATE:g} x (1 + effect), higher is better; latency: lognormal, "
        f"median {LATENCY_MEDIAN_MS:g} ms, log-sd {LATENCY_LOG_SD:g}, x (1 - effect), lower is better"
    )
    print()
    print_report(scenarios, design.alpha, args.peek_every)
    print(f"\nsimulated in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
