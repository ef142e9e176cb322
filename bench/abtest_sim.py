"""A vectorised simulator of many A/B tests read after every batch, for bench/abtest.py and the error-rate
tests: the always-valid mixture design, the group-sequential design and a fixed-horizon test, on the same
simulated observations, all promoting on the same rule (a significant improvement of the log ratio of
means; the product's `log_ratio`).

The decisions are the product's: `mixture_decisions` and `gs_decisions` vectorise
autarky.models.sequential.evaluate and autarky.models.group_sequential.evaluate_look operation for
operation, and tests/test_group_sequential.py proves they agree with the scalar functions on random inputs.

- binary: a success rate, higher is better; the challenger's rate is p × (1 + effect).
- lognormal: e.g. latency, lower is better; the challenger's values are the control's × (1 − effect), so
  the relative reduction of the mean is the effect.
- share: the challenger's share of each batch (a fixed count per batch, the rest to the control).
- The fixed-horizon test takes exactly its size (no cap), the one-sided z-test of the log ratio at α/2:
  promoted when the 1 − α confidence interval's lower bound is above 0.
- Sequential runs stop at their first decision; the mixture design, which has no maximum, is stopped
  undecided at `cap` × the fixed horizon (reported as undecided, counted at the cap in mean samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from autarky.models.group_sequential import GroupSequentialPlan
from autarky.models.sequential import SequentialDesign, fixed_horizon_samples

CONTINUE, BETTER, NOT_BETTER, WORSE = 0, 1, 2, 3


@dataclass(frozen=True)
class Metric:
    kind: Literal["binary", "lognormal"]
    mean: float = 0.3  # binary: the control's rate; lognormal: the control's median
    log_sd: float = 0.8

    @property
    def direction(self) -> Literal["higher", "lower"]:
        return "higher" if self.kind == "binary" else "lower"

    def moments(self) -> tuple[float, float]:
        """The control's true mean and variance."""
        if self.kind == "binary":
            return self.mean, self.mean * (1 - self.mean)
        s2 = self.log_sd**2
        mean = self.mean * math.exp(s2 / 2)
        return mean, mean * mean * math.expm1(s2)


def fixed_total(metric: Metric, design: SequentialDesign, share: float) -> int:
    """The fixed horizon's samples over both arms at this share (fixed_horizon_samples is per arm at an
    equal split; the variance of the log ratio scales with 1 / n_C + 1 / n_T)."""
    per_arm = fixed_horizon_samples(*metric.moments(), design)
    return math.ceil(per_arm * (1 / share + 1 / (1 - share)) / 2)


# ------------------------------------------------------------------------------------- decisions
def log_ratio_arrays(n_c, m_c, v_c, n_t, m_t, v_t, direction: str):
    """`log_ratio` vectorised: (θ̂, s², estimable)."""
    theta, var, _, ok = log_ratio_variance_arrays(n_c, m_c, v_c, n_t, m_t, v_t, direction)
    return theta, var, ok


def log_ratio_variance_arrays(n_c, m_c, v_c, n_t, m_t, v_t, direction: str):
    """`log_ratio_variances` vectorised: (θ̂, s², s²_delta, estimable)."""
    ok = (n_c >= 2) & (n_t >= 2) & (m_c > 0) & (m_t > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        theta = np.log(np.where(ok, m_t, 1.0)) - np.log(np.where(ok, m_c, 1.0))
        if direction == "lower":
            theta = -theta
        delta = v_t / n_t / m_t / m_t + v_c / n_c / m_c / m_c
        n = n_c + n_t
        pooled_mean = (n_c * m_c + n_t * m_t) / n
        between = n_c * n_t / n * (m_t - m_c) ** 2
        pooled_variance = (n_c * v_c + n_t * v_t + between) / n
        var = np.maximum(delta, pooled_variance / pooled_mean / pooled_mean * (1 / n_c + 1 / n_t))
    ok &= np.isfinite(theta) & np.isfinite(var)
    return np.where(ok, theta, 0.0), np.where(ok, var, 1.0), np.where(ok, delta, 1.0), ok


def half_width_array(var, design: SequentialDesign, level: float):
    """`half_width` vectorised (var > 0 here; 0 where var is 0)."""
    tau2 = design.mixture_variance
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = tau2 / var
        w = np.sqrt(var * (var + tau2) / tau2 * (2 * math.log(1 / level) + np.log1p(ratio)))
    return np.where((var <= 0) | np.isinf(ratio), 0.0, w)


def mixture_decisions(n_c, m_c, v_c, n_t, m_t, v_t, design: SequentialDesign):
    """`evaluate(...).decision` vectorised, as codes (CONTINUE, BETTER, NOT_BETTER, WORSE)."""
    theta, var, ok = log_ratio_arrays(n_c, m_c, v_c, n_t, m_t, v_t, design.direction)
    w = half_width_array(var, design, design.alpha)
    futile = theta + half_width_array(var, design, 2 * (1 - design.power)) < design.min_log_effect
    code = np.full(theta.shape, CONTINUE)
    code = np.where(futile, NOT_BETTER, code)
    code = np.where(theta - w > 0, BETTER, code)
    code = np.where(theta + w < 0, WORSE, code)
    enough = np.minimum(n_c, n_t) >= design.min_samples
    return np.where(ok & enough, code, CONTINUE)


def gs_decisions(n_c, m_c, v_c, n_t, m_t, v_t, plan: GroupSequentialPlan, looks_done):
    """`evaluate_look(...)` vectorised: (decision codes, looks done after this read)."""
    theta, var, delta, ok = log_ratio_variance_arrays(n_c, m_c, v_c, n_t, m_t, v_t, plan.direction)
    with np.errstate(divide="ignore"):
        info = np.where(var == 0, np.inf, 1 / var)
        fraction = np.where(delta == 0, np.inf, 1 / delta) / plan.max_information  # the look clock
    due = np.array(looks_done, copy=True)
    enough = ok & (np.minimum(n_c, n_t) >= plan.min_samples)
    for k, t in enumerate(plan.fractions):
        due = np.where(enough & (due == k) & (fraction >= t * (1 - 1e-9)), k + 1, due)
    look = due > looks_done
    index = np.maximum(due - 1, 0)
    e, f = np.asarray(plan.efficacy)[index], np.asarray(plan.futility)[index]
    with np.errstate(invalid="ignore"):
        z = np.where(np.isinf(info), np.sign(theta) * np.inf, theta * np.sqrt(info))
        z = np.where(np.isinf(info) & (theta == 0), 0.0, z)
        upper = theta + np.where(np.isinf(info), 0.0, e / np.sqrt(info))
    code = np.where(z >= e, BETTER, np.where(z <= f, np.where(upper < 0, WORSE, NOT_BETTER), CONTINUE))
    return np.where(look, code, CONTINUE), np.where(look, due, looks_done)


# ------------------------------------------------------------------------------------ simulation
@dataclass
class Outcome:
    """One method's results over the runs: decision codes and total samples at the decision."""

    codes: np.ndarray
    samples: np.ndarray

    def rate(self, code: int) -> float:
        return float(np.mean(self.codes == code))


@dataclass
class Simulation:
    metric: Metric
    effect: float
    share: float
    runs: int
    fixed_total: int  # the fixed horizon's samples, both arms
    batch: int  # samples per read, both arms
    mixture: Outcome
    group: Outcome
    fixed: Outcome


def simulate(
    metric: Metric,
    effect: float,
    share: float,
    runs: int,
    seed: int,
    design: SequentialDesign,
    plan: GroupSequentialPlan,
    reads_per_fixed: int = 20,
    cap: float = 4.0,
    methods: tuple[str, ...] = ("mixture", "group", "fixed"),
) -> Simulation:
    """`runs` tests read every batch (`reads_per_fixed` reads per fixed horizon) until every method asked
    for has decided (the mixture design at most `cap` × the fixed horizon)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be within (0, 1), got {share!r}")
    rng = np.random.default_rng(seed)
    total = fixed_total(metric, design, share)
    per_t = max(1, round(share * math.ceil(total / reads_per_fixed)))
    per_c = max(1, math.ceil(total / reads_per_fixed) - per_t)
    batch = per_t + per_c
    fixed_reads = math.ceil(total / batch)
    max_reads = max(fixed_reads, math.ceil(cap * total / batch))
    p_t = metric.mean * (1 + effect)
    scale_t = 1 - effect
    s1 = np.zeros((2, runs))
    s2 = np.zeros((2, runs))
    want = {m: m in methods for m in ("mixture", "group", "fixed")}
    codes = {m: np.full(runs, CONTINUE) for m in want}
    samples = {m: np.full(runs, max_reads * batch) for m in want}
    decided = {m: np.full(runs, not want[m]) for m in want}
    looks = np.zeros(runs, dtype=int)
    z_fixed = NormalDist().inv_cdf(1 - design.alpha / 2)
    for read in range(1, max_reads + 1):
        live = ~(decided["mixture"] & decided["group"] & decided["fixed"])
        idx = np.flatnonzero(live)
        if idx.size == 0:
            break
        for arm, size in ((0, per_c), (1, per_t)):
            if metric.kind == "binary":
                s = rng.binomial(size, p_t if arm else metric.mean, idx.size).astype(float)
                s1[arm, idx] += s
                s2[arm, idx] += s
            else:
                # float32 draws halve the time; sums of <= a few thousand are exact enough, totals float64.
                x = rng.standard_normal((idx.size, size), dtype=np.float32)
                x *= np.float32(metric.log_sd)
                np.exp(x, out=x)
                x *= np.float32(metric.mean * (scale_t if arm else 1.0))
                s1[arm, idx] += x.sum(axis=1, dtype=np.float64)
                s2[arm, idx] += np.einsum("ij,ij->i", x, x, dtype=np.float64)
        n_c, n_t = read * per_c, read * per_t
        stats = []
        for arm, n in ((0, n_c), (1, n_t)):
            m = s1[arm, idx] / n
            if metric.kind == "binary":
                v = m * (1 - m)
            else:
                v = np.maximum(s2[arm, idx] - s1[arm, idx] * m, 0) / (n - 1)
            stats += [np.full(idx.size, n), m, v]
        n_now = read * batch
        if want["mixture"]:
            open_ = ~decided["mixture"][idx]
            c = mixture_decisions(*stats, design)
            hit = open_ & (c != CONTINUE)
            codes["mixture"][idx[hit]] = c[hit]
            samples["mixture"][idx[hit]] = n_now
            decided["mixture"][idx[hit]] = True
        if want["group"]:
            open_ = ~decided["group"][idx]
            c, new_looks = gs_decisions(*stats, plan, looks[idx])
            looks[idx] = np.where(open_, new_looks, looks[idx])
            hit = open_ & (c != CONTINUE)
            codes["group"][idx[hit]] = c[hit]
            samples["group"][idx[hit]] = n_now
            decided["group"][idx[hit]] = True
        if want["fixed"] and read == fixed_reads:
            theta, var, ok = log_ratio_arrays(*stats, metric.direction)
            better = ok & (theta - z_fixed * np.sqrt(var) > 0)
            codes["fixed"][idx] = np.where(better, BETTER, NOT_BETTER)
            samples["fixed"][idx] = n_now
            decided["fixed"][idx] = True
    out = {m: Outcome(codes[m], samples[m]) for m in want}
    return Simulation(metric, effect, share, runs, total, batch, out["mixture"], out["group"], out["fixed"])
