"""Sample-ratio mismatch (pure code, no I/O; runs inside workflow code): did the challenger receive the share
of units the split gives it?

A split that is not honoured — a router that drops some of the challenger's units, a challenger whose
failures are not recorded, a cache that pins some users — biases every comparison in a way no metric
shows. The check compares the cumulative assignment counts with the configured share.

It is run EVERY period on the cumulative counts, so a fixed-sample chi-square test at α would sooner or
later fire on a healthy split (repeated looks). Instead the test is always valid: under "each unit goes to
the challenger with probability s, independently", the Beta-binomial mixture likelihood ratio

    L_n = B(a + x, b + n − x) / B(a, b) / (s^x (1 − s)^(n − x)),   a = c·s, b = c·(1 − s)

(x of n units at the challenger, the alternative share mixed over Beta(a, b) centred on s) is a
nonnegative martingale with mean 1, so by Ville's inequality P(L_n ≥ 1/α at ANY n) ≤ α: the workflow may
look after every period for as long as it likes. It is exact (no normal approximation), the
one-dimensional case of the Dirichlet-multinomial test of Lindon & Malek, "Anytime-valid inference for
multinomial count data" (NeurIPS 2022), which is what Optimizely and Netflix run for SRM. The reported
p-value is the anytime-valid one, min(1, 1/L_n); `fixed_p_value` is the single-look chi-square p (1 degree of
freedom) for reference.

The prior concentration c (default 1,000, i.e. a prior standard deviation of the share of
sqrt(s(1 − s)/1001), ~1 point at s = 10 %) sets where the bound is tightest; its price over a single
look grows only like log(n / c): at α = 0.001 a mismatch is declared from |z| ≈ 4.3 at 10⁵ units and
≈ 4.6 at 10⁶ (a single look would use 3.3).

Units must be the randomisation units (what the router hashes), counted since the current share took
effect: counts pooled over ramp steps with different shares, or calls clustered by a repeated key, are
not binomial at one share and would mismatch for that reason alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()
CONCENTRATION = 1000.0


@dataclass(frozen=True)
class SrmResult:
    mismatch: bool
    z: float  # (observed − expected challenger units) / sd: < 0 when the challenger got too few
    p_value: float  # anytime-valid: min(1, 1 / mixture likelihood ratio); mismatch ⇔ p_value ≤ alpha
    text: str
    fixed_p_value: float = 1.0  # the single-look chi-square p (not valid under repeated looks)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_mixture_ratio(
    challenger_units: int, units: int, share: float, concentration: float = CONCENTRATION
) -> float:
    """log L_n: the Beta-binomial mixture likelihood ratio against the binomial at `share` (the module)."""
    x, n, s = challenger_units, units, share
    a, b = concentration * s, concentration * (1 - s)
    return _log_beta(a + x, b + n - x) - _log_beta(a, b) - x * math.log(s) - (n - x) * math.log1p(-s)


def sample_ratio_mismatch(
    incumbent_units: int,
    challenger_units: int,
    challenger_share: float,
    alpha: float = 0.001,
    concentration: float = CONCENTRATION,
) -> SrmResult:
    """Whether the counts so far contradict the configured share (always valid: see the module)."""
    for name, value in (("incumbent_units", incumbent_units), ("challenger_units", challenger_units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if not (isinstance(challenger_share, int | float) and 0 < challenger_share < 1):
        raise ValueError(f"challenger_share must be within (0, 1), got {challenger_share!r}")
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    if not (isinstance(concentration, int | float) and math.isfinite(concentration) and concentration > 0):
        raise ValueError(f"concentration must be a finite number > 0, got {concentration!r}")
    n, x, s = incumbent_units + challenger_units, challenger_units, challenger_share
    if n == 0:
        return SrmResult(False, 0.0, 1.0, "no units assigned yet", 1.0)
    z = (x - n * s) / math.sqrt(n * s * (1 - s))
    log_ratio = log_mixture_ratio(x, n, s, concentration)
    p_value = math.exp(-log_ratio) if log_ratio > 0 else 1.0
    fixed_p = 2 * _NORMAL.cdf(-abs(z))  # chi-square with 1 df: z² ~ χ²₁
    mismatch = log_ratio >= math.log(1 / alpha)
    verdict = (
        f"sample ratio mismatch (anytime-valid p = {p_value:.2g} ≤ {alpha:g})"
        if mismatch
        else f"no sample ratio mismatch (anytime-valid p = {p_value:.2g})"
    )
    text = (
        f"{verdict}: the challenger has {100 * x / n:.2f} % of {n:,} units, {100 * s:.2f} % expected "
        f"({x:,} vs {n * s:,.0f}, z = {z:+.1f})"
    )
    return SrmResult(mismatch, z, p_value, text, fixed_p)
