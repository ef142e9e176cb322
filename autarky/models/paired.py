"""A paired test for offline slots (pure code, no I/O): both variants score the SAME labelled examples.

An offline slot evaluates a fixed set of labelled examples. Resampling them as if each draw were a new,
independent observation (the online test's two-sample view) counts every example many times and ignores
that the two variants are judged on the same inputs; the paired view settles it at once. Each example
falls in one of four cells: both right, only the incumbent right, only the challenger right, both wrong.
Only the discordant examples (b = only the incumbent, c = only the challenger) carry information about
which variant is more accurate: under "equally accurate", c given b + c is Binomial(b + c, ½) (McNemar's
exact test; Fay, "Two-sided exact tests and matching confidence intervals for discrete data", R Journal
2010, for the matching interval).

Decision (`paired_decision`), at the two-sided level α (each side α/2, as the online test's design):
- better:     the exact one-sided p that the challenger wins more discordant examples is ≤ α/2, i.e. the
              Clopper-Pearson interval of π = P(challenger right | the two disagree) lies above ½,
              AND the estimated relative gain in accuracy is at least `min_improvement`. The minimum is a
              practical threshold on the estimate, as in autarky.models.sequential ("significantly better,
              and by at least the minimum as estimated"): requiring the interval's lower end to clear the
              minimum instead would pass a variant whose true gain is exactly the minimum only α/2 of the
              time, far too strict for a set of ~200 examples.
- worse:      the exact one-sided p that the incumbent wins more discordant examples is ≤ α/2;
- not_better: otherwise (no evidence, or a significant gain smaller than the minimum). A paired test on a
              fixed set is final: more batches over the same examples add no information.

The binomial tails are summed in log space from the far end of the tail with the ratio of successive
terms, so counts in the millions neither overflow nor underflow (`binomial_sf`, `binomial_cdf`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

PairedDecision = Literal["better", "not_better", "worse"]

_TINY = 1e-17  # a term this much smaller than the first no longer changes a double's sum


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _log_pmf(k: int, n: int, p: float) -> float:
    """log P(X = k) for X ~ Binomial(n, p), 0 < p < 1."""
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _log_tail_away_from_mode(k: int, n: int, p: float, step: int) -> float:
    """log Σ P(X = j) for j = k, k + step, … to the end, where the terms shrink from k on (k is on the far
    side of the mode), so the sum can stop once a term no longer counts."""
    total, term, j = 1.0, 1.0, k
    odds = p / (1 - p)
    while 0 <= j + step <= n:
        # P(j + 1) / P(j) = (n − j) / (j + 1) · p / (1 − p); the reverse for a step down.
        term *= (n - j) / (j + 1) * odds if step > 0 else j / (n - j + 1) / odds
        j += step
        total += term
        if term < _TINY * total:
            break
    return _log_pmf(k, n, p) + math.log(total)


def _mode(n: int, p: float) -> int:
    return min(n, math.floor((n + 1) * p))


def log_binomial_sf(k: int, n: int, p: float) -> float:
    """log P(X ≥ k) for X ~ Binomial(n, p) (−inf when impossible)."""
    if k <= 0 or p >= 1:
        return 0.0 if k <= n else -math.inf
    if k > n or p <= 0:
        return -math.inf
    if k > _mode(n, p):  # the upper tail itself is the small side: sum it
        return _log_tail_away_from_mode(k, n, p, +1)
    # The upper tail holds the mode: 1 − P(X ≤ k − 1), the lower tail being the small side.
    return math.log1p(-min(1.0, math.exp(_log_tail_away_from_mode(k - 1, n, p, -1))))


def log_binomial_cdf(k: int, n: int, p: float) -> float:
    """log P(X ≤ k) for X ~ Binomial(n, p)."""
    if k >= n or p <= 0:
        return 0.0 if k >= 0 else -math.inf
    if k < 0 or p >= 1:
        return -math.inf
    if k < _mode(n, p):
        return _log_tail_away_from_mode(k, n, p, -1)
    return math.log1p(-min(1.0, math.exp(_log_tail_away_from_mode(k + 1, n, p, +1))))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    return math.exp(log_binomial_sf(k, n, p))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p)."""
    return math.exp(log_binomial_cdf(k, n, p))


def mcnemar(only_incumbent: int, only_challenger: int) -> float:
    """McNemar's exact two-sided p-value on the discordant pairs: 2 · P(X ≤ min(b, c)), X ~ Bin(b + c, ½),
    capped at 1 (the binomial is symmetric, so this equals the "as likely or less" two-sided p)."""
    _check_count("only_incumbent", only_incumbent)
    _check_count("only_challenger", only_challenger)
    n = only_incumbent + only_challenger
    return min(1.0, 2 * binomial_cdf(min(only_incumbent, only_challenger), n, 0.5))


def mcnemar_one_sided(only_incumbent: int, only_challenger: int) -> float:
    """The exact one-sided p that the challenger is more accurate: P(X ≥ c), X ~ Bin(b + c, ½)."""
    _check_count("only_incumbent", only_incumbent)
    _check_count("only_challenger", only_challenger)
    return binomial_sf(only_challenger, only_incumbent + only_challenger, 0.5)


def clopper_pearson(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided 1 − α interval of a binomial proportion, by bisection on the
    binomial tails (each side α/2): [0, 1] when n = 0."""
    _check_count("successes", successes)
    _check_count("n", n)
    if successes > n:
        raise ValueError(f"successes must be <= n = {n}, got {successes}")
    log_half = math.log(alpha / 2)

    def solve(increasing: bool, tail: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(80):  # 2^-80: far below a double's resolution of the bounds that matter
            mid = (lo + hi) / 2
            # The lower bound: P(X ≥ c | π) rises with π; the upper bound: P(X ≤ c | π) falls with π.
            value = log_binomial_sf(successes, n, mid) if increasing else log_binomial_cdf(successes, n, mid)
            if (value < tail) == increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if successes == 0 else solve(True, log_half)
    upper = 1.0 if successes == n else solve(False, log_half)
    return lower, upper


@dataclass(frozen=True)
class PairedResult:
    decision: PairedDecision
    relative_effect: float  # challenger's accuracy / incumbent's − 1; inf when the incumbent got none right
    lower: float  # its exact 1 − α interval, conditional on the discordant count (see `paired_decision`)
    upper: float
    p_value: float  # McNemar's exact two-sided p
    text: str


def _relative(both_right: int, discordant: int, pi: float) -> float:
    """The challenger's relative gain in accuracy when it wins a share π of the discordant examples:
    (c − b) / (both_right + b) with c = π·n_d, b = (1 − π)·n_d; it rises with π."""
    gain = discordant * (2 * pi - 1)
    base = both_right + discordant * (1 - pi)
    if base <= 0:
        return math.inf if gain > 0 else (0.0 if gain == 0 else -math.inf)
    return gain / base


def paired_decision(
    both_right: int,
    only_incumbent: int,
    only_challenger: int,
    both_wrong: int,
    alpha: float,
    min_improvement: float,
) -> PairedResult:
    """The paired comparison of two variants scored on the same examples (see the module for the rule).

    The interval of the relative effect maps the Clopper-Pearson interval of π (the challenger's share of
    the discordant examples) through (c − b) / (both_right + b) at the observed discordant count: exact
    given that count, and it lies above 0 exactly when the one-sided McNemar p is ≤ α/2."""
    for name, value in (
        ("both_right", both_right),
        ("only_incumbent", only_incumbent),
        ("only_challenger", only_challenger),
        ("both_wrong", both_wrong),
    ):
        _check_count(name, value)
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    if not (
        isinstance(min_improvement, int | float) and math.isfinite(min_improvement) and min_improvement > 0
    ):
        raise ValueError(f"min_improvement must be a finite number > 0, got {min_improvement!r}")
    examples = both_right + only_incumbent + only_challenger + both_wrong
    discordant = only_incumbent + only_challenger
    p_value = mcnemar(only_incumbent, only_challenger)
    effect = _relative(both_right, discordant, only_challenger / discordant if discordant else 0.5)
    pi_low, pi_high = clopper_pearson(only_challenger, discordant, alpha)
    lower, upper = _relative(both_right, discordant, pi_low), _relative(both_right, discordant, pi_high)
    better_p = mcnemar_one_sided(only_incumbent, only_challenger)
    worse_p = mcnemar_one_sided(only_challenger, only_incumbent)
    decision: PairedDecision
    if better_p <= alpha / 2 and effect >= min_improvement:
        decision, why = (
            "better",
            f"significantly better, by at least {_share(min_improvement, 1)} as estimated",
        )
    elif worse_p <= alpha / 2:
        decision, why = "worse", "significantly worse"
    elif better_p <= alpha / 2:
        decision, why = "not_better", f"significantly better, but by less than {_share(min_improvement, 1)}"
    else:
        decision, why = "not_better", "no significant difference"
    accuracy = "no examples"
    if examples:
        challenger_accuracy = _share(both_right + only_challenger, examples)
        accuracy = f"accuracy {challenger_accuracy} vs {_share(both_right + only_incumbent, examples)}"
    text = (
        f"{accuracy} on the same {examples:,} examples ({only_challenger:,} only the challenger right, "
        f"{only_incumbent:,} only the incumbent): {_percent(effect)} [{_percent(lower)}, {_percent(upper)}], "
        f"McNemar p = {p_value:.2g}: {decision} ({why})"
    )
    return PairedResult(decision, effect, lower, upper, p_value, text)


def _percent(value: float) -> str:
    if math.isinf(value):
        return "-inf" if value < 0 else "+inf"
    return f"{100 * value:+.1f} %"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %"
