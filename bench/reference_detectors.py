"""Baseline detectors for the NAB runner, to check our numbers against NAB's published baselines.

Interface shared with `AnomalyDetector` (autarky.autopilot.detectors): `update(value, at) -> score in [0, 1]`,
seeing only the past. A zero-argument callable (e.g. the class) makes a fresh detector per file.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from datetime import datetime

SQRT2 = math.sqrt(2.0)


class WindowedGaussian:
    """Two-sided Gaussian tail of the value against the mean and std of the previous `window` values.

    score = erf(z / sqrt 2) with z = |x - mean| / std: the probability that a normal value is less
    extreme than x. Mean and variance slide with Welford-style add/remove updates (O(1) per row) and are
    recomputed from scratch every `window` rows so rounding errors cannot pile up.
    """

    def __init__(self, window: int = 6400) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self.window = window
        self._values: deque[float] = deque()
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean
        self._since_recompute = 0

    def update(self, value: float, at: datetime | None = None) -> float:
        score = self._score(value)
        self._add(value)
        return score

    def _score(self, value: float) -> float:
        n = len(self._values)
        if n < 2:
            return 0.0
        std = math.sqrt(max(self._m2, 0.0) / n)
        if std == 0.0:
            return 0.0 if value == self._mean else 1.0
        return math.erf(abs(value - self._mean) / std / SQRT2)

    def _add(self, value: float) -> None:
        self._values.append(value)
        n = len(self._values)
        delta = value - self._mean
        self._mean += delta / n
        self._m2 += delta * (value - self._mean)
        if n > self.window:
            old = self._values.popleft()
            n -= 1
            delta = old - self._mean
            self._mean -= delta / n
            self._m2 -= delta * (old - self._mean)
        self._since_recompute += 1
        if self._since_recompute >= self.window:
            self._since_recompute = 0
            self._mean = math.fsum(self._values) / n
            self._m2 = math.fsum((v - self._mean) ** 2 for v in self._values)

    def state_size_bytes(self) -> int:
        """8 bytes per remembered value plus mean, M2 and a counter (not CPython's object overhead)."""
        return 8 * len(self._values) + 3 * 8


class RandomDetector:
    """Uniform random scores: NAB's 'random' baseline.

    The factory is zero-argument, so the detector does not know its file's name; it seeds itself from
    `seed` and the file's first row (timestamp and value) through zlib.crc32, which is deterministic per
    file and across runs (unlike hash()) and independent of which other files are scored.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng: random.Random | None = None

    def update(self, value: float, at: datetime | None = None) -> float:
        if self._rng is None:
            first_row = f"{self.seed}|{at.isoformat() if at else ''}|{value!r}"
            self._rng = random.Random(zlib.crc32(first_row.encode()))
        return self._rng.random()

    def state_size_bytes(self) -> int:
        """The Mersenne Twister state: 624 32-bit words."""
        return 624 * 4
