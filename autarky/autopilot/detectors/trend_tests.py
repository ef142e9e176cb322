"""The trend tests the detectors in `trend.py` combine: Mann-Kendall (with the Hamed-Rao correction for
autocorrelated values), whether a series still rises once a one-off step is taken out, and whether its
rise stands out from a random walk. Pure and stdlib-only, like `trend.py`.

    mann_kendall         rank-based test for a monotonic trend; needs no normality and ignores magnitudes.
    hamed_rao_inflation  variance inflation of Mann-Kendall's S for autocorrelated values.
    persistent_inflation the same, also for very persistent (AR(1)-like) noise that Hamed-Rao under-corrects.
    still_rising_p       does a series still rise once its one-off level steps are taken out?
    drift_p              does its rise stand out from a zero-drift random walk plus measurement noise?
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STILL_GROWING_P = 0.05  # the newest half of a window must still rise at this significance
STEP_SAMPLES = 3  # a level step may take this many sampling intervals (still_rising_p)
STEP_SIGMAS = 4.0  # ... and must stand out by this many robust standard deviations of the increments
ROUND3_STEP_SAMPLES = 12  # round 3: a step may be spread over this many intervals (12 min at one a minute)
ROUND3_STEPS = 2  # ... and this many steps are taken out


def format_p(p: float) -> str:
    return f"p={p:.2g}"


# ------------------------------------------------------------------------------------------ Mann-Kendall


class MannKendall(BaseModel):
    """Mann-Kendall trend test: S = Σ_{i<j} sign(x_j − x_i) over the values in time order.

    Under "no trend" S is about normal with mean 0 and, with tie groups of sizes t_k,
    Var(S) = [n(n−1)(2n+5) − Σ t_k(t_k−1)(2t_k+5)] / 18; z applies a continuity correction of 1.
    With the autocorrelation correction, Var(S) is multiplied by `variance_inflation` (see
    `mann_kendall`). p_value is two-sided; p_increasing / p_decreasing are the one-sided ones.
    """

    model_config = ConfigDict(frozen=True)

    n: int
    s: int
    var_s: float = Field(description="Var(S), times variance_inflation")
    variance_inflation: float = Field(
        1.0, description="n/n* of the Hamed-Rao autocorrelation correction (1 without it)"
    )
    z: float
    p_value: float
    trend: Literal["increasing", "decreasing", "none"]

    @property
    def p_increasing(self) -> float:
        return 0.5 * math.erfc(self.z / math.sqrt(2))

    @property
    def p_decreasing(self) -> float:
        return 0.5 * math.erfc(-self.z / math.sqrt(2))

    def describe(self) -> str:
        return (
            f"Mann-Kendall: {self.trend} (S={self.s}, z={self.z:.2f}, {format_p(self.p_value)}, n={self.n})"
        )


def mann_kendall(
    values: Sequence[float], *, alpha: float = 0.05, autocorrelation: bool = False
) -> MannKendall:
    """Mann-Kendall test of values in time order; `trend` is "none" unless the two-sided p < alpha.

    Constant (or fewer than two) values have Var(S) = 0 and give z = 0, p = 1, no trend.
    `autocorrelation=True` applies the Hamed-Rao correction (`hamed_rao_inflation`): without it,
    persistent noise (an AR(1) with φ = 0.95, a random walk) looks like a trend in a large share of
    windows, because neighbouring values are not independent draws.
    """
    xs = list(values)
    n = len(xs)
    s = _mk_s(xs)
    ties = sum(t * (t - 1) * (2 * t + 5) for t in Counter(xs).values() if t > 1)
    inflation = hamed_rao_inflation(xs) if autocorrelation else 1.0
    var_s = (n * (n - 1) * (2 * n + 5) - ties) / 18 * inflation
    z = _mk_z(s, var_s)
    # erfc rather than 1 - erf: keeps small p-values accurate instead of rounding them to 0.
    p = math.erfc(abs(z) / math.sqrt(2))
    trend: Literal["increasing", "decreasing", "none"] = "none"
    if p < alpha and s != 0:
        trend = "increasing" if s > 0 else "decreasing"
    return MannKendall(n=n, s=s, var_s=var_s, variance_inflation=inflation, z=z, p_value=p, trend=trend)


def _mk_s(xs: Sequence[float]) -> int:
    s = 0
    for i, xi in enumerate(xs):
        s += sum([(xj > xi) - (xj < xi) for xj in xs[i + 1 :]])
    return s


def _mk_z(s: float, var_s: float) -> float:
    # Continuity correction: S moves in steps of 2, so pull it 1 towards 0 before dividing.
    return 0.0 if var_s <= 0 or s == 0 else (s - 1 if s > 0 else s + 1) / math.sqrt(var_s)


def _p_up(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _oscillates(rhos: Sequence[float]) -> bool:
    """Whether an autocorrelation function swings below −0.25 and back above +0.4 (a sawtooth's: −0.5
    at half its period, near 1 at its period). Measured on 120 points: every sawtooth of period 20-45
    with noise, and 1 % of AR(1) windows with φ = 0.9-0.95 (whose sample ACF wanders, but seldom back)."""
    if not rhos:
        return False
    low = min(range(len(rhos)), key=rhos.__getitem__)
    return rhos[low] < -0.25 and max(rhos[low:]) > 0.4


def significant_rise(
    values: Sequence[float], p_value: float, autocorrelation: bool, *, persistent: bool = False
) -> MannKendall | None:
    """The Mann-Kendall test when it finds a rise at one-sided p < p_value, else None.

    The plain test runs first: the correction only ever shrinks z (inflation ≥ 1), so a series the plain
    test rejects needs no O(n²) correction. `persistent` (with `autocorrelation`) uses
    `persistent_inflation` instead of `hamed_rao_inflation`.
    """
    mk = mann_kendall(values)
    if mk.s <= 0 or mk.p_increasing >= p_value:
        return None
    if autocorrelation:
        inflation = persistent_inflation(values) if persistent else hamed_rao_inflation(values)
        var_s = mk.var_s * inflation
        z = _mk_z(mk.s, var_s)
        mk = mk.model_copy(
            update={
                "var_s": var_s,
                "variance_inflation": inflation,
                "z": z,
                "p_value": math.erfc(abs(z) / math.sqrt(2)),
                "trend": "increasing" if math.erfc(abs(z) / math.sqrt(2)) < 0.05 else "none",
            }
        )
        if mk.p_increasing >= p_value:
            return None
    return mk


def _average_ranks(xs: Sequence[float]) -> list[float]:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and xs[order[end + 1]] == xs[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def hamed_rao_inflation(values: Sequence[float]) -> float:
    """Variance inflation n/n* of the Mann-Kendall S for autocorrelated values (Hamed & Rao 1998).

    K. H. Hamed, A. R. Rao, "A modified Mann-Kendall trend test for autocorrelated data", Journal of
    Hydrology 204 (1998) 182-196: remove the Theil-Sen trend (by index), rank the residuals, take the
    autocorrelation ρ_k of those ranks at every lag, keep only the lags significant at 5 %
    (|ρ_k| > 1.96/√n), and n/n* = 1 + 2/(n(n−1)(n−2)) · Σ_k (n−k)(n−k−1)(n−k−2) ρ_k.

    Chosen over (trend-free) pre-whitening because it makes no AR(1) assumption: a garbage-collector
    sawtooth (periodic, with negative autocorrelation at half its period) is corrected correctly, where
    pre-whitening with the lag-1 autocorrelation would wipe out the leak under it. It is clamped at ≥ 1
    (never makes a trend look more significant than the plain test). It under-corrects very persistent
    noise (φ ≥ 0.9, random walks: the estimated ρ_k are biased low in a short window): with 120
    points it cuts their false alarms by about 2-3×, not down to the nominal level. O(n²); 1 for fewer
    than 4 values or when the residuals are all equal (an exact line).
    """
    rhos = _rank_autocorrelations(values)
    n = len(values)
    if not rhos:
        return 1.0
    bound = 1.96 / math.sqrt(n)
    total = 0.0
    for lag, rho in enumerate(rhos, 1):
        if abs(rho) > bound:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1 + 2 * total / (n * (n - 1) * (n - 2)))


def _rank_autocorrelations(values: Sequence[float]) -> list[float]:
    """ρ_1 … ρ_{n−3} of the ranks of the Theil-Sen residuals (by index); [] for fewer than 4 values or
    all-equal residuals. (The weight (n−k)(n−k−1)(n−k−2) of both corrections is 0 from k = n−2 on.)"""
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 4:
        return []
    slopes: list[float] = []
    for i in range(n - 1):
        xi = xs[i]
        slopes.extend([(xj - xi) / lag for lag, xj in enumerate(xs[i + 1 :], 1)])
    slope = statistics.median(slopes)
    ranks = _average_ranks([x - slope * i for i, x in enumerate(xs)])
    mean = (n + 1) / 2
    centred = [r - mean for r in ranks]
    denominator = sum(c * c for c in centred)
    if denominator <= 0:
        return []
    return [sum(map(operator.mul, centred, centred[lag:])) / denominator for lag in range(1, n - 2)]


def persistent_inflation(values: Sequence[float]) -> float:
    """Variance inflation of Mann-Kendall's S for persistent noise: the larger of Hamed-Rao's and the
    AR(1) one, n/n* = 1 + 2/(n(n−1)(n−2)) · Σ_k (n−k)(n−k−1)(n−k−2) ρ^k (Yue & Wang 2004), with the lag-1
    autocorrelation ρ of the ranks bias-corrected by (2 + 4ρ)/n (the bias of the lag-1 estimate after a
    fitted line, Shaman & Stine 1988: short windows estimate it low, so with φ = 0.95 in 120 points
    Hamed-Rao's significant lags leave ~5-7 % of flat RSS windows "rising" at 1 %, issue 29). Where
    the autocorrelation oscillates within half the window (`_oscillates`: a garbage-collector
    sawtooth) Hamed-Rao's all-lag sum is right and the AR(1) model would wipe out a leak under the
    sawtooth, so it alone is used.
    """
    rhos = _rank_autocorrelations(values)
    n = len(values)
    hamed_rao = hamed_rao_inflation(values)
    if not rhos or _oscillates(rhos[: n // 2]):
        return hamed_rao
    rho = min(0.98, rhos[0] + (2 + 4 * rhos[0]) / n)
    if rho <= 0:
        return hamed_rao
    total = sum((n - k) * (n - k - 1) * (n - k - 2) * rho**k for k in range(1, n - 2))
    return max(hamed_rao, 1 + 2 * total / (n * (n - 1) * (n - 2)))


def still_rising_p(values: Sequence[float], *, step_robust: bool = True, round3: bool = True) -> float:
    """One-sided Mann-Kendall p-value that values (in time order) rise, with level steps taken out.

    With `step_robust`, the largest rise over at most STEP_SAMPLES consecutive intervals, beyond what
    the median interval rises anyway, is taken to be a one-off step when it stands out from how much
    the intervals vary (over STEP_SIGMAS robust standard deviations √width): the values inside it are
    dropped and the later ones lowered by it before testing. A single step (disk 80 % → 88 % within a
    couple of minutes, +60 MiB RSS) then leaves a flat series wherever it is, while a steady rise (and a
    garbage-collector sawtooth over a leak) has no such outlier and keeps all its pairs across the
    series. Without `step_robust`, the plain one-sided Mann-Kendall p-value. O(n²).

    `round3` [old behaviour: False] (issue 29: a copy spread over 5-10 minutes, or two separate jumps,
    read as a rise): steps may take up to ROUND3_STEP_SAMPLES intervals, up to ROUND3_STEPS of them are
    found one after the other, and instead of lowering the values after a step by an estimate of its
    size (whose error, over half a window, is itself a significant shift) the series is cut there:
    Mann-Kendall's S and Var(S) are the sums over the pieces, so only pairs that no step separates
    count. A steady rise keeps its power (its pieces still rise), and so does a staircase fill of more
    steps than are taken out.
    """
    xs = [float(v) for v in values]
    if step_robust and round3:
        return _piecewise_rise_p(_cut_steps(xs))
    if step_robust and len(xs) >= 3:
        increments = [b - a for a, b in itertools.pairwise(xs)]
        typical = statistics.median(increments)
        # 1.4826·MAD estimates the standard deviation of normal increments; 0 when most are equal.
        sigma = 1.4826 * statistics.median(abs(d - typical) for d in increments)
        best, start, width = 0.0, 0, 1
        for w in range(1, min(STEP_SAMPLES, len(xs) - 1) + 1):
            for k in range(len(xs) - w):
                excess = xs[k + w] - xs[k] - w * typical
                if excess > best and excess > STEP_SIGMAS * sigma * math.sqrt(w):
                    best, start, width = excess, k, w
        if best > 0:
            xs = xs[: start + 1] + [x - best for x in xs[start + width :]]
    mk = mann_kendall(xs)
    return mk.p_increasing if mk.s > 0 else 1.0


def _cut_steps(xs: list[float]) -> list[list[float]]:
    """`xs` cut into pieces at up to ROUND3_STEPS level steps (the values inside a step dropped)."""
    # Wider steps only where the series is long enough that a step leaves most of it (a fifth: 12 of a
    # 60-point half); never narrower than before.
    max_width = max(STEP_SAMPLES, min(ROUND3_STEP_SAMPLES, len(xs) // 5))
    pieces = [xs]
    for _ in range(ROUND3_STEPS):
        increments = [b - a for piece in pieces for a, b in itertools.pairwise(piece)]
        if len(increments) < 2:
            break
        typical = statistics.median(increments)
        sigma = 1.4826 * statistics.median(abs(d - typical) for d in increments)
        best, where = 0.0, (0, 0, 1)
        for index, piece in enumerate(pieces):
            for w in range(1, min(max_width, len(piece) - 1) + 1):
                # Measurement noise on a level: x[k+w] − x[k] varies like one increment whatever w
                # (√w, a random walk's growth, would hide a step spread over 10 samples). Up to 2× of
                # margin: persistent noise wanders in "steps" too, and cutting them costs leaks power.
                threshold = STEP_SIGMAS * sigma * math.sqrt(min(w, 4))
                for k in range(len(piece) - w):
                    excess = piece[k + w] - piece[k] - w * typical
                    if excess > best and excess > threshold:
                        best, where = excess, (index, k, w)
        if best <= 0:
            break
        index, k, w = where
        piece = pieces[index]
        pieces[index : index + 1] = [piece[: k + 1], piece[k + w :]]
    return pieces


def _piecewise_rise_p(pieces: Sequence[Sequence[float]]) -> float:
    """One-sided Mann-Kendall p-value of a rise from the pairs within each piece (S and Var(S) summed)."""
    s = sum(_mk_s(piece) for piece in pieces)
    var_s = 0.0
    for piece in pieces:
        n = len(piece)
        ties = sum(t * (t - 1) * (2 * t + 5) for t in Counter(piece).values() if t > 1)
        var_s += (n * (n - 1) * (2 * n + 5) - ties) / 18
    return _p_up(_mk_z(s, var_s)) if s > 0 else 1.0


def drift_p(values: Sequence[float]) -> float:
    """One-sided p-value that the series drifts upwards, judged against a zero-drift random walk plus
    white measurement noise.

    Mann-Kendall assumes independent values, and a random walk is anything but: it calls a large share
    of a walk's wanders a trend. Here the rise from the mean of the first k values to that of the last k
    (k ≈ n/12) is compared with what the series does on its own. With a walk of σ² per step and white
    noise of τ², lag-j differences have variance j σ² + 2τ² (about their mean, so a steady trend is not
    counted): the lag-1 and lag-k variances give both parts, and the rise's variance is about
    (n - 2k + 1 + (k - 1)(2k - 1)/(3k)) σ² + 2τ²/k. A noisy steady fill has σ² ≈ 0 and keeps its power;
    stationary persistent noise (AR(1)) looks partly like a walk and partly like noise, and moves less
    over n steps than that walk would, so the test is conservative there. Assumes about even spacing
    (the product's TrendSeries keeps one point per interval).
    """
    n = len(values)
    k = max(2, n // 12)
    if n < 2 * k + 2 or not all(math.isfinite(v) for v in values):
        return 1.0
    v1 = statistics.pvariance([b - a for a, b in pairwise(values)])
    vk = statistics.pvariance([values[i + k] - values[i] for i in range(n - k)])
    # σ² per step is a small difference of two noisy variances when the noise dominates: take it from
    # the lag-k variance raised by half its relative error (Lo & MacKinlay 1988), or a walk hidden under
    # noise is taken for noise. Measured (disk-like walk of 0.1 a step under noise of 1.0): 1.6 % false
    # warnings without the margin, 0.5 % with it; a whole relative error gets 0.15 % but warns on only
    # 7 % of noisy fills (0.05 %/min under noise of 1.0) where half of one warns on 30 %.
    relative_error = math.sqrt(2 * (2 * k - 1) * (k - 1) / (3 * k * n))
    walk = max(0.0, (vk * (1 + relative_error / 2) - v1) / (k - 1))
    noise = max(0.0, (v1 - walk) / 2)  # τ²
    variance = walk * (n - 2 * k + 1 + (k - 1) * (2 * k - 1) / (3 * k)) + 2 * noise / k
    rise = statistics.fmean(values[-k:]) - statistics.fmean(values[:k])
    if variance == 0:
        return 0.0 if rise > 0 else 1.0
    t = rise / math.sqrt(variance)
    # The variances come from a few stretches of k steps, so t has Student-like tails: map it to a normal
    # deviate with the usual approximation z = t (1 - 1/(4ν)) / √(1 + t²/(2ν)), ν ≈ 2n/k - 1 (overlapping
    # lag-k differences carry about twice what n / k disjoint ones would; tests/test_trend_autocorrelation
    # measures the false-alarm rate on walks and AR(1) noise).
    dof = 2 * n / k - 1
    z = t * (1 - 1 / (4 * dof)) / math.sqrt(1 + t * t / (2 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))
