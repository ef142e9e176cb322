"""NAB scoring, written from the description in the NAB paper (not from NAB's code).

Everything that does not depend on the threshold is computed once per file (`label_rows`): which window
each row is in, what a detection there is worth. The best threshold over a whole corpus can then be
found exactly with one sort of "events" (`best_threshold`) instead of a sweep over candidate thresholds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

PROBATION_PERCENT = 15
PROBATION_MAX_ROWS = 750


@dataclass(frozen=True)
class Profile:
    """Weights of a true positive, a false positive and a false negative (missed window)."""

    name: str
    tp: float
    fp: float
    fn: float


STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
REWARD_LOW_FP = Profile("reward_low_fp", tp=1.0, fp=0.22, fn=1.0)
REWARD_LOW_FN = Profile("reward_low_fn", tp=1.0, fp=0.11, fn=2.0)
PROFILES = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def scaled_sigmoid(y: float) -> float:
    """S(y) = 2 / (1 + e^(5y)) - 1: 0.987 at y=-1, 0 at y=0, towards -1 for large y (exactly -1 past 3)."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file where detections are ignored: 15 % of the file, at most 750.

    Integer arithmetic, so that e.g. 0.15 * 100 cannot round to just below 15.
    """
    return min(PROBATION_PERCENT * n_rows // 100, PROBATION_MAX_ROWS)


def window_rows(timestamps: Sequence[Any], windows: Iterable[tuple[Any, Any]]) -> list[tuple[int, int]]:
    """Convert [start, end] timestamp windows to inclusive row ranges [left, right].

    left is the first row, in file order, whose timestamp is in [start, end]; right is the last row before
    the first one after left that is later than end. Timestamps may repeat or step back (a clock set back
    an hour): rows are scored in file order, and a window is one stretch of rows, as in NAB (whose
    windows start and end at rows with exactly those timestamps, the first such rows). Sorted timestamps
    are found by bisection, others by a scan.
    """
    ordered = all(a <= b for a, b in pairwise(timestamps))
    rows = []
    for start, end in windows:
        if ordered:
            left = bisect.bisect_left(timestamps, start)
            right = bisect.bisect_right(timestamps, end) - 1
        else:
            left = next((i for i, t in enumerate(timestamps) if start <= t <= end), len(timestamps))
            right = left - 1
            while right + 1 < len(timestamps) and timestamps[right + 1] <= end:
                right += 1
        if left > right:
            raise ValueError(f"window [{start}, {end}] contains no rows")
        rows.append((left, right))
    return rows


@dataclass(frozen=True)
class Labels:
    """Threshold-independent facts about one file's rows.

    window_of[i] is the index of the window containing row i, or -1 outside all windows.
    tp_value[i] (inside a window) is what the window is worth if row i is its first detection, as a
    fraction of the TP weight; fp_value[i] (outside windows) is in [-1, 0), the fraction of the FP weight
    a detection there costs. Both are 0.0 where they do not apply.
    """

    n_rows: int
    probation: int
    windows: tuple[tuple[int, int], ...]
    window_of: tuple[int, ...]
    tp_value: tuple[float, ...]
    fp_value: tuple[float, ...]


def label_rows(n_rows: int, windows: Iterable[tuple[int, int]]) -> Labels:
    """Precompute per-row window membership and TP/FP values for a file of n_rows rows."""
    ordered = sorted(windows)
    for k, (left, right) in enumerate(ordered):
        if not 0 <= left <= right < n_rows:
            raise ValueError(f"window rows [{left}, {right}] outside the file's {n_rows} rows")
        if k and left <= ordered[k - 1][1]:
            raise ValueError(f"windows {ordered[k - 1]} and {(left, right)} overlap")

    window_of = [-1] * n_rows
    tp_value = [0.0] * n_rows
    fp_value = [-1.0] * n_rows  # before the first window: full FP cost
    s_left_edge = scaled_sigmoid(-1.0)
    for k, (left, right) in enumerate(ordered):
        span = right - left
        for i in range(left, right + 1):
            window_of[i] = k
            # As NAB: -1 at the left edge, rising by 1 / (span + 1) per row (so -1 / (span + 1) at the right
            # edge; a one-row window's only row is its left edge).
            y = -(right - i + 1) / (span + 1)
            tp_value[i] = scaled_sigmoid(y) / s_left_edge
            fp_value[i] = 0.0
        after_end = ordered[k + 1][0] if k + 1 < len(ordered) else n_rows
        for i in range(right + 1, after_end):
            fp_value[i] = scaled_sigmoid((i - right) / max(span, 1))
    return Labels(
        n_rows=n_rows,
        probation=probation_rows(n_rows),
        windows=tuple(ordered),
        window_of=tuple(window_of),
        tp_value=tuple(tp_value),
        fp_value=tuple(fp_value),
    )


@dataclass(frozen=True)
class FileScore:
    """Raw score and counts of one file (or a sum of files) at a fixed threshold."""

    raw: float
    tp: int
    fp: int
    fn: int

    def __add__(self, other: FileScore) -> FileScore:
        return FileScore(self.raw + other.raw, self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def score_file(labels: Labels, scores: Sequence[float], threshold: float, profile: Profile) -> FileScore:
    """Score one file's anomaly scores: a detection is a non-probationary row with score >= threshold.

    Each detection outside windows costs fp * fp_value; each window earns tp * tp_value of its first
    detection (later ones count for nothing) or costs fn if it has none. NaN scores never detect.
    """
    if len(scores) != labels.n_rows:
        raise ValueError(f"{len(scores)} scores for {labels.n_rows} rows")
    raw = 0.0
    false_positives = 0
    first: list[int | None] = [None] * len(labels.windows)
    for i in range(labels.probation, labels.n_rows):
        if not scores[i] >= threshold:
            continue
        k = labels.window_of[i]
        if k < 0:
            raw += profile.fp * labels.fp_value[i]
            false_positives += 1
        elif first[k] is None:
            first[k] = i
    true_positives = 0
    for i in first:
        if i is None:
            raw -= profile.fn
        else:
            raw += profile.tp * labels.tp_value[i]
            true_positives += 1
    return FileScore(raw, true_positives, false_positives, len(first) - true_positives)


def best_threshold(files: Iterable[tuple[Labels, Sequence[float]]], profile: Profile) -> tuple[float, float]:
    """The threshold maximising the summed raw score over files, exactly, in O(N log N).

    As the threshold t falls, each row's contribution switches on at t = its score. Outside windows that
    is a plain FP cost. A window's value is that of its first row with score >= t; as t falls, that row
    changes only at strict running maxima of the score along the window (scanned left to right), each
    moving the first detection earlier. Each change is an event (score, delta); sorting events by score
    descending and summing gives the raw score at every distinct threshold. Starting from "nothing
    detected" (the null detector, threshold = inf) keeps it as a candidate.

    Returns (threshold, raw score); detections are scores >= threshold.
    """
    null_raw = 0.0
    events: list[tuple[float, float]] = []
    for labels, scores in files:
        if len(scores) != labels.n_rows:
            raise ValueError(f"{len(scores)} scores for {labels.n_rows} rows")
        null_raw -= profile.fn * len(labels.windows)
        for i in range(labels.probation, labels.n_rows):
            if labels.window_of[i] < 0 and not math.isnan(scores[i]):
                events.append((scores[i], profile.fp * labels.fp_value[i]))
        for left, right in labels.windows:
            records: list[int] = []
            running_max = -math.inf
            for i in range(max(left, labels.probation), right + 1):
                if scores[i] > running_max:  # False for NaN: a NaN row never detects
                    running_max = scores[i]
                    records.append(i)
            value = -profile.fn
            for i in reversed(records):  # highest score (latest record) switches on first
                new_value = profile.tp * labels.tp_value[i]
                events.append((scores[i], new_value - value))
                value = new_value

    events.sort(key=lambda event: event[0], reverse=True)
    best_t, best_raw = math.inf, null_raw
    raw = null_raw
    for k, (score, delta) in enumerate(events):
        raw += delta
        if (k + 1 == len(events) or events[k + 1][0] != score) and raw > best_raw:
            best_t, best_raw = score, raw
    return best_t, best_raw


def null_and_perfect(n_windows: int, profile: Profile) -> tuple[float, float]:
    """Raw scores of the null detector (misses every window) and the perfect one (each left edge)."""
    return -profile.fn * n_windows, profile.tp * n_windows


def normalised(raw: float, n_windows: int, profile: Profile) -> float:
    """100 * (raw - null) / (perfect - null): null detector 0, perfect detector 100."""
    null_raw, perfect_raw = null_and_perfect(n_windows, profile)
    if perfect_raw == null_raw:
        raise ValueError("cannot normalise a score without windows")
    return 100.0 * (raw - null_raw) / (perfect_raw - null_raw)
