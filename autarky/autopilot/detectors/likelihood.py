"""Anomaly likelihood: a raw anomaly score turned into a calibrated tail probability (issue 29).

The idea is HTM's anomaly likelihood (Ahmad, Lavin, Purdy, Agha 2017, "Unsupervised real-time anomaly
detection for streaming data"), written from the paper's description: a detector's raw scores mean
different things on different metrics (a noisy metric scores 0.4 all day, a calm one never above 0.05),
so one threshold cannot serve both. Instead, keep the distribution of the recent raw scores and ask how
unusual the current evidence is *for this metric*:

- the short-term evidence is the mean of the last `short_samples` raw scores (one outlier value is
  weaker evidence than a few in a row, and a lasting change keeps it up);
- the long-term distribution is a Gaussian fit (mean and variance) of that short-term mean over the
  last `history_hours`, exponentially weighted so the state is a few floats and the cost O(1) — a plain
  running average until that many samples have been seen, so the start is not biased to the first value;
- the likelihood is P(evidence below the current one) = 1 - Gaussian upper tail of its z-score against
  the distribution *before* it is learnt (only the past judges the present), in [0, 1]; for a stationary
  raw score it exceeds 1 - p about a fraction p of the time, whatever the metric.

Memory and warm-up are in time (hours), converted to samples with the metric's sampling interval, so a
30 s host metric and a 5-minute NAB series mean the same thing. During the warm-up the likelihood is 0.

Pure code (no I/O, no clock, no numpy). State: `LikelihoodState`, a few floats and at most
`short_samples` recent scores, JSON-serialisable.

Status: a measured first step, not used by the autopilot. On the NAB development data
(`bench/nab_likelihood.py`) it loses to the raw scores (left-out categories 58.9 vs 62.0 at each one's
own threshold; far worse at a fixed tail): the detector's raw scores are mostly zero with a heavy tail,
which a Gaussian does not describe, and averaging dilutes single-value spikes.
"""

from __future__ import annotations

import math
from collections import deque

from pydantic import BaseModel, Field

SECONDS_PER_HOUR = 3600.0


class LikelihoodConfig(BaseModel):
    """One configuration for every metric; the times are converted with each metric's interval."""

    history_hours: float = Field(24.0, gt=0, description="memory of the raw-score distribution, in hours")
    warmup_hours: float = Field(2.0, ge=0, description="time learnt before any likelihood is given")
    short_samples: int = Field(5, ge=1, le=64, description="raw scores averaged into the short-term evidence")
    # Raw scores are often exactly 0 for hours (a suppressed detector): without a floor the first small
    # score after that would be infinitely unlikely. In raw-score units (scores are in [0, 1]).
    min_std: float = Field(0.01, gt=0, description="floor of the distribution's standard deviation")


class LikelihoodState(BaseModel):
    """Everything needed to resume: small and JSON-serialisable."""

    seen: int = 0  # finite raw scores learnt
    mean: float = 0.0  # of the short-term average, exponentially weighted
    variance: float = 0.0
    recent: list[float] = Field(default_factory=list)  # last `short_samples` raw scores, oldest first
    skipped: int = 0  # non-finite raw scores: counted, never learnt


def samples_for(hours: float, interval_seconds: float) -> int:
    """How many samples `hours` spans at one sample every `interval_seconds` (at least 1)."""
    return max(1, math.ceil(hours * SECONDS_PER_HOUR / interval_seconds))


def gaussian_upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z; erfc keeps precision far into the tail (no 1 - x rounding)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class AnomalyLikelihood:
    """Feeds on one metric's raw anomaly scores, one at a time; `update` returns the likelihood."""

    def __init__(
        self,
        interval_seconds: float,
        config: LikelihoodConfig | None = None,
        state: LikelihoodState | None = None,
    ) -> None:
        if not (math.isfinite(interval_seconds) and interval_seconds > 0):
            raise ValueError(
                f"interval_seconds must be a positive number of seconds between samples (the metric's "
                f"sampling interval, e.g. the monitor interval), got {interval_seconds!r}"
            )
        self.config = c = config or LikelihoodConfig()
        self.interval_seconds = interval_seconds
        self.history = samples_for(c.history_hours, interval_seconds)
        # The short-term average needs its window full before it means what the distribution learnt.
        self.warmup = max(
            samples_for(c.warmup_hours, interval_seconds) if c.warmup_hours else 0, c.short_samples
        )
        state = state or LikelihoodState()
        self._seen = state.seen
        self._mean = state.mean
        self._variance = state.variance
        self._skipped = state.skipped
        self._recent: deque[float] = deque(state.recent[-c.short_samples :], maxlen=c.short_samples)
        # Evidence for the last score, for explanations and a log-scale threshold: the upper tail
        # probability (1 - likelihood, without its rounding to 0 beyond z ≈ 8) and the z-score.
        self.tail: float = 1.0
        self.z: float = 0.0

    def update(self, raw: float) -> float:
        """The likelihood in [0, 1] that the recent raw scores are higher than this metric's usual ones."""
        self.tail, self.z = 1.0, 0.0
        if not math.isfinite(raw):
            self._skipped += 1
            return 0.0
        self._recent.append(raw)
        average = sum(self._recent) / len(self._recent)
        likelihood = 0.0
        if self._seen >= self.warmup:
            std = max(math.sqrt(self._variance), self.config.min_std)
            self.z = (average - self._mean) / std
            self.tail = gaussian_upper_tail(self.z)
            likelihood = 1.0 - self.tail
        self._learn(average)
        return likelihood

    def _learn(self, average: float) -> None:
        # Exponentially weighted mean and variance (the incremental form of West 1979): weight 1/(n+1)
        # is an exact running average and population variance until `history` samples, then 1/history.
        self._seen += 1
        alpha = 1.0 / min(self._seen, self.history)
        delta = average - self._mean
        self._mean += alpha * delta
        self._variance = (1.0 - alpha) * (self._variance + alpha * delta * delta)

    @property
    def state(self) -> LikelihoodState:
        return LikelihoodState(
            seen=self._seen,
            mean=self._mean,
            variance=self._variance,
            recent=list(self._recent),
            skipped=self._skipped,
        )

    def state_size_bytes(self) -> int:
        return len(self.state.model_dump_json())
