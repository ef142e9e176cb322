"""Round 2's streaming anomaly detector (releases 17-28), kept unchanged so that host watchers begun
before release 29 replay (patch `detection-round-3`, docs/patches.md). New code uses `anomaly.py`.

It shares its settings and state types with round 3 (`AnomalyConfig`, `AnomalyState`), whose newer
fields it ignores: `memory` and `min_history` count samples here, and there is no time.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from datetime import datetime

from autarky.autopilot.detectors.anomaly import (
    FORGOTTEN,
    MAD_TO_SIGMA,
    MEAN_DEV_TO_SIGMA,
    QUARTERS,
    AnomalyConfig,
    AnomalyState,
)


class AnomalyDetectorRound2:
    """Scores a stream of values; `update` sees one value at a time and only the past."""

    def __init__(self, config: AnomalyConfig | None = None, state: AnomalyState | None = None) -> None:
        self.config = c = config or AnomalyConfig()
        state = state or AnomalyState()
        # Plain Python structures on the hot path; the `state` property converts back.
        self._seen = state.seen
        self._skipped = state.skipped
        self._low = math.inf if state.low is None else state.low
        self._high = -math.inf if state.high is None else state.high
        self._counts = dict(state.level_counts)
        self._quarter_size = max(1, c.memory // QUARTERS)
        self._quarters: deque[tuple[float, float]] = deque(state.quarters, maxlen=QUARTERS)
        self._quarter_low = math.inf if state.quarter_low is None else state.quarter_low
        self._quarter_high = -math.inf if state.quarter_high is None else state.quarter_high
        self._quarter_fill = state.quarter_fill
        self._window: deque[float] = deque(state.window[-c.window :], maxlen=c.window)
        self._sorted = sorted(self._window)
        self._recent: deque[float] = deque(
            state.recent_scores[-c.suppression :] if c.suppression else [], maxlen=max(c.suppression, 1)
        )
        # Evidence for the last value: the range the window expected it in, and its robust z.
        self.expected: tuple[float, float] | None = None
        self.z: float = 0.0

    def update(self, value: float, at: datetime | None = None) -> float:
        """The anomaly score of `value` given everything before it. `at` is accepted for the common
        detector interface; this detector does not use time."""
        c = self.config
        raw = 0.0
        self.expected, self.z = None, 0.0
        if not math.isfinite(value):  # a broken probe says nothing about the metric: skip, count
            self._skipped += 1
            return 0.0
        if self._sorted:
            median, scale = self._median_and_scale()
            self.z = abs(value - median) / scale
            self.expected = (median - 3 * scale, median + 3 * scale)
        level = self._level(value)
        if self._seen >= c.min_history:
            rarity = 1.0 if level is None else 1.0 / (1 + self._counts.get(level, 0))
            raw = rarity * self.z / (self.z + c.z_half)
        score = raw if not self._recent or raw > max(self._recent) else 0.0
        self._learn(value, level)
        if c.suppression:
            self._recent.append(raw)
        return score

    def _level(self, value: float) -> int | None:
        """The bin of `value` over the range seen so far; None for a new high or low (always rare)."""
        if not self._low <= value <= self._high:
            return None
        span = self._high - self._low
        level = math.floor((value - self._low) / span * self.config.levels) if span > 0 else 0
        # The high itself is the top level's (round 1 gave it a level of its own, `levels`, which a
        # forgetting range cannot keep: the high moves and that level's values fall into another).
        return min(level, self.config.levels - 1) if self.config.memory else level

    def _median_and_scale(self) -> tuple[float, float]:
        s = self._sorted
        n = len(s)
        median = (s[(n - 1) // 2] + s[n // 2]) / 2
        deviations = sorted(abs(v - median) for v in s)
        mad = (deviations[(n - 1) // 2] + deviations[n // 2]) / 2
        # When most values are equal the MAD is 0 though the series does vary; the mean absolute
        # deviation still sees the spread. A perfectly flat window gets a floor that scales with the
        # series' level, so a change from it is very unusual but a rounding error is not.
        mean_dev = sum(deviations) / n
        floor = max(1e-6 * abs(median), 1e-9, self.config.resolution)
        return median, max(MAD_TO_SIGMA * mad, MEAN_DEV_TO_SIGMA * mean_dev, floor)

    def _learn(self, value: float, level: int | None) -> None:
        self._seen += 1
        if level is not None and self._seen > self.config.min_history:
            # Levels are counted once the range has settled: early counts would be of other bins.
            self._counts[level] = self._counts.get(level, 0) + 1
        if self.config.memory:
            self._forget(value)
        else:
            self._low, self._high = min(self._low, value), max(self._high, value)
        if len(self._window) == self._window.maxlen:
            del self._sorted[bisect_left(self._sorted, self._window[0])]
        self._window.append(value)
        insort(self._sorted, value)

    def _forget(self, value: float) -> None:
        """Learn `value` into the current quarter; at a quarter's end, decay the level counts and let the
        range shrink to that of the quarters kept. Counts follow a changed range (`_rebin`)."""
        self._quarter_low = min(self._quarter_low, value)
        self._quarter_high = max(self._quarter_high, value)
        self._quarter_fill += 1
        low, high = min(self._low, value), max(self._high, value)
        if self._quarter_fill >= self._quarter_size:
            self._quarters.append((self._quarter_low, self._quarter_high))
            self._quarter_low, self._quarter_high, self._quarter_fill = math.inf, -math.inf, 0
            low = min(q[0] for q in self._quarters)
            high = max(q[1] for q in self._quarters)
            factor = 0.5 ** (1 / QUARTERS)
            self._counts = {k: n * factor for k, n in self._counts.items() if n * factor >= FORGOTTEN}
        if (low, high) != (self._low, self._high):
            self._rebin(low, high)
            self._low, self._high = low, high

    def _rebin(self, low: float, high: float) -> None:
        """Spread each level's count over the new levels in proportion to how much of it each covers;
        whatever lies outside the new range goes. Levels of a range of zero width (and round 1's level
        `levels`, the high itself) are points, moved whole; a new range of zero width takes the whole of
        the old level that holds it."""
        if not self._counts or math.isinf(self._low):
            return
        levels = self.config.levels
        old_width = (self._high - self._low) / levels
        new_span = high - low
        moved: dict[int, float] = {}

        def add(level: int, n: float) -> None:
            moved[level] = moved.get(level, 0.0) + n

        for k, n in self._counts.items():
            start = self._low + k * old_width
            end = start + old_width if k < levels else start
            if end <= start:  # a point
                if low <= start <= high:
                    add(
                        min(math.floor((start - low) / new_span * levels), levels - 1) if new_span > 0 else 0,
                        n,
                    )
                continue
            if new_span <= 0:
                if start <= low < end or (low == end and k >= levels - 1):
                    add(0, n)
                continue
            a, b = max(start, low), min(end, high)
            if a >= b:
                continue
            first = math.floor((a - low) / new_span * levels)
            last = min(math.floor((b - low) / new_span * levels), levels - 1)
            for j in range(first, last + 1):
                lo, hi = low + j * new_span / levels, low + (j + 1) * new_span / levels
                share = (min(hi, b) - max(lo, a)) / (end - start)
                if share > 0:
                    add(j, n * share)
        self._counts = moved

    @property
    def state(self) -> AnomalyState:
        return AnomalyState(
            seen=self._seen,
            low=None if math.isinf(self._low) else self._low,
            high=None if math.isinf(self._high) else self._high,
            level_counts=dict(self._counts),
            window=list(self._window),
            recent_scores=list(self._recent) if self.config.suppression else [],
            skipped=self._skipped,
            quarters=list(self._quarters),
            quarter_low=None if math.isinf(self._quarter_low) else self._quarter_low,
            quarter_high=None if math.isinf(self._quarter_high) else self._quarter_high,
            quarter_fill=self._quarter_fill,
        )

    def state_size_bytes(self) -> int:
        """Size of the serialised state: what the autopilot carries per metric."""
        return len(self.state.model_dump_json())
