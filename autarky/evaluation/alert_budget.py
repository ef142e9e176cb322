"""False alarms per day of a detector on labelled data, at a given sampling interval (pure code).

A false alarm is a detection (score >= threshold) outside every labelled window, after the file's
probation (while the detector is still learning, the product gives no scores either: `min_history`).
Per day means per day of samples at `sample_seconds`: the product samples every 30 s by default, so a
rate per sample becomes a rate per day of one metric on one host.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import STANDARD, FileScore, Profile, normalised, score_file

DAY_SECONDS = 86400.0
# The thresholds the budget rule chooses among: 0.5 to 0.995 in steps of 0.005 (a number a person can read).
THRESHOLD_STEPS = tuple(round(0.5 + 0.005 * i, 3) for i in range(100))


@dataclass(frozen=True)
class AlertRate:
    threshold: float
    false_alarms: int
    sample_days: float  # scored rows outside windows, as days of samples
    nab_score: float  # normalised NAB score at this fixed threshold

    @property
    def per_day(self) -> float:
        return self.false_alarms / self.sample_days if self.sample_days else 0.0


def alert_rates(
    scores: Mapping[str, Sequence[float]],
    files: Sequence[NabFile],
    thresholds: Sequence[float],
    sample_seconds: float = 30.0,
    profile: Profile = STANDARD,
) -> list[AlertRate]:
    """One row per threshold: false alarms per day of one metric, and the NAB score there."""
    quiet_rows = sum(
        sum(1 for i in range(f.labels.probation, f.labels.n_rows) if f.labels.window_of[i] < 0) for f in files
    )
    n_windows = sum(len(f.labels.windows) for f in files)
    rates = []
    for threshold in thresholds:
        total = FileScore(0.0, 0, 0, 0)
        for f in files:
            total += score_file(f.labels, scores[f.key], threshold, profile)
        rates.append(
            AlertRate(
                threshold=threshold,
                false_alarms=total.fp,
                sample_days=quiet_rows * sample_seconds / DAY_SECONDS,
                nab_score=normalised(total.raw, n_windows, profile),
            )
        )
    return rates


def budget_threshold(
    scores: Mapping[str, Sequence[float]],
    files: Sequence[NabFile],
    candidates: Sequence[float] = THRESHOLD_STEPS,
    per_day: float = 1.0,
    sample_seconds: float = 30.0,
) -> float:
    """The lowest candidate threshold with at most `per_day` false alarms per day of samples (the rule
    that chooses the product's `anomaly_threshold`); inf when none of them keeps to it."""
    quiet = sorted(
        scores[f.key][i]
        for f in files
        for i in range(f.labels.probation, f.labels.n_rows)
        if f.labels.window_of[i] < 0 and not math.isnan(scores[f.key][i])
    )
    allowed = per_day * len(quiet) * sample_seconds / DAY_SECONDS
    for threshold in sorted(candidates):
        if len(quiet) - bisect_left(quiet, threshold) <= allowed:  # rows with score >= threshold
            return threshold
    return math.inf


def false_alarms_per_day(
    scores: Mapping[str, Sequence[float]],
    files: Sequence[NabFile],
    threshold: float,
    sample_seconds: float = 30.0,
) -> float:
    """False alarms per day of samples at `threshold` (files without windows included)."""
    quiet = alarms = 0
    for f in files:
        for i in range(f.labels.probation, f.labels.n_rows):
            if f.labels.window_of[i] < 0:
                quiet += 1
                alarms += scores[f.key][i] >= threshold
    return alarms / (quiet * sample_seconds / DAY_SECONDS) if quiet else 0.0
