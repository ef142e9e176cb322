"""Streaming anomaly detection for one metric: each value in, an anomaly score in [0, 1] out.

Pure code (no I/O, no clock, no numpy), so the autopilot workflow, the NAB benchmark (bench/nab.py) and
the tests share it. A value is anomalous when it is both

- rare: its level (one of `levels` equal bins over the range seen so far) has seldom or never been seen
  — a new high or low is the rarest of all; and
- far from the recent normal: its robust z-score against the median and MAD of a sliding window.

raw = rarity × z / (z + z_half), where rarity = 1 / (1 + times the level was seen before). Either view
alone raises false alarms: a rare level reached by a slow drift is not a surprise (small z), and a
large z in a noisy series that has visited that level many times before is not one either.
The score is the raw score passed through `EventFilter` (round 3): it counts only when it beats every raw
score of the last `collapse_hours`, so a lasting change is reported once, at its start, and it is
discounted by the metric's earlier events at least as strong, so a bursty metric's routine bursts stop
alerting while a calm metric keeps its raw score.

A detector lives for months on a host, so it forgets (`memory_hours`): the range is that of the last
`memory_hours` to 1.25 × that (kept per quarter), and level counts halve every `memory_hours` (spread
over the new levels whenever the range changes). Without it one 100 % CPU burst would make every later
spike look ordinary for good. Memory and warm-up are in hours, converted with the sampling interval the
detector learns from its timestamps, so a 30 s host metric and a 5-minute series mean the same.

The evaluation on NAB (bench/nab.py) chose this design. A first version took the strongest of a robust
z-score, EWMA residuals and a time-of-day baseline and scored about 30 (standard profile): in many real
series big deviations are common, so distance alone alarms too often. Rarity × distance scores 66 (round
2, memory in values, "beat the last 50"); round 3's memory in hours and event layer 70, and 67.0 left
out by category against round 2's 62.0 (`make bench-nab` prints every table). Its defaults were chosen
by leave-one-category-out cross-validation (bench/nab_tables.py), which also prints how a detector that
runs through many series back to back fares; round 2 is kept in anomaly_round2.py for replay.

Cost per update: O(window). One sorted-list insert and delete (bisect; the list moves are memmoves), and
the MAD: the deviations from the median of a sorted window are two sorted runs (below the median read
backwards, above it read forwards), which Python's sort (Timsort) merges in one linear pass. `make
bench-nab` prints µs per update at several window sizes.
Memory per metric: the window, `levels` + 1 counts and a few floats (`state_size_bytes()`).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, insort
from collections import deque
from datetime import UTC, datetime

from pydantic import BaseModel, Field

MAD_TO_SIGMA = 1.4826  # MAD × this estimates σ for normal data
MEAN_DEV_TO_SIGMA = 1.2533  # mean absolute deviation × this estimates σ for normal data
QUARTERS = 4  # with `memory`, the range is kept per quarter of it, and counts decay once per quarter
# Without timestamps, values are taken to come at the autopilot's default monitor interval.
DEFAULT_INTERVAL = 30.0
INTERVAL_GAPS = 8  # gaps between timestamps the sampling interval is learnt from
SIMILAR_EVENTS = 0.25  # share of the range within which an earlier event is "like" a new one (EventFilter)
FORGOTTEN = 0.01  # a decayed level count below this is dropped, so the state stays small


# ------------------------------------------------------------------ round 3's alerting layer
MERGE = 0.01  # a newer peak this close below an older one (and close by in value) replaces it
MAX_PEAKS = 48  # peaks kept for the collapse (the oldest go first)
GLOBAL_SHARE = 0.9  # a peak unlike the value still bars what is under this share of it
MAX_EVENTS = 64  # events kept for rarity; beyond that the oldest go (a metric this busy is discounted)
PRUNE_HALF_LIVES = 5  # an event older than this weighs under 1/32: dropped


class EventState(BaseModel):
    """The layer's state: small and JSON-serialisable."""

    clock: float = 0.0  # seconds of stream seen
    step: float | None = None  # the last positive gap between timestamps
    last_at: float | None = None  # the previous timestamp (epoch seconds)
    peaks: list[tuple[float, float, float]] = Field(default_factory=list)  # (clock, raw, value)
    events: list[tuple[float, float, float]] = Field(
        default_factory=list
    )  # (clock, raw, value), oldest first


def epoch_seconds(at: datetime) -> float:
    # Naive datetimes count as UTC: converting from local time would depend on the host's zone.
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


class EventFilter:
    """`score(raw, at, value, near)`: the raw score when it is a new event, discounted by the rarity of
    earlier events like it; else 0.

    Two steps over the raw score r (it lives here, not in a module of its own, so the evolvable agent
    anomaly-detector stays one file):

    1. Collapse repeats in time: r is an *event* only when it beats every raw score of the last
       `collapse_hours` at values like this one (within `near`), and GLOBAL_SHARE of every other. A lasting
       change is reported once, at its start; a glitch to 100 % bars what is under 90 % of its score, not a
       later jump to 60 % of about that strength. Round 2 asked r to beat the last 50 values, whatever they
       were: 25 minutes at the autopilot's 30 s, four hours on a 5-minute series; hours mean the same at
       every sampling interval.
    2. Event rarity: the raw detector's own idea (rarity = 1 / (1 + times seen)) applied to its events. With
       n = the metric's earlier events at least as strong as r and of about the same size (their values
       within `near` of this one; the detector passes a quarter of the range seen), each weighted
       0.5 ** (age / `half_life_hours`), score = r / sqrt(1 + n). A metric whose bursts are routine (a bursty
       request count, a disk that fills every night) stops alerting on them; a metric that never had such an
       event keeps its raw score. The factor is never above 1, so no metric is made more sensitive than its
       raw score. A calibration by the metric's own score distribution (HTM's anomaly likelihood, a rank, a
       tail probability) does the opposite to a calm metric, whose first small score becomes an alarm;
       measured on NAB, each of those lost to the raw scores (bench/nab_likelihood.py), and this gained
       (`make bench-nab`). The square root keeps the discount gentle (one like event of the last hours costs
       about 30 %), and only events of about the same size count, so one glitch to 100 % does not mute a jump
       to 60 % for a day (NAB: 69.1 at the best threshold either way, within half a point).

    Time is a clock of the stream's own: each value advances it by its gap from the previous timestamp, or
    by the last good gap when the timestamp is missing or goes backwards (a host clock set back), so the
    clock never runs backwards. State: the recent peaks (time, raw, value), an older one dropped when a newer
    one at least as high lies close by in value (at most MAX_PEAKS), and the recent events (at most
    MAX_EVENTS): about 5 KB serialised.
    """

    def __init__(
        self,
        collapse_hours: float,
        half_life_hours: float,
        default_step: float,
        state: EventState | None = None,
    ) -> None:
        state = state or EventState()
        self._collapse = collapse_hours * 3600
        self._half_life = half_life_hours * 3600
        self._default_step = default_step
        self._clock, self._step, self._last_at = state.clock, state.step, state.last_at
        self._peaks = [(p[0], p[1], p[2]) for p in state.peaks]
        self._events: deque[tuple[float, float, float]] = deque(
            ((e[0], e[1], e[2]) for e in state.events), maxlen=MAX_EVENTS
        )

    def score(self, raw: float, at: datetime | None, value: float = 0.0, near: float = math.inf) -> float:
        now = self._tick(at)
        # One pass over the peaks of the last `collapse_hours` (this runs for every value): the bar is
        # the highest among values like this one, or a little under the highest of all; an older peak
        # close by in value and no higher than this one adds little to any bar and goes (small state).
        horizon, near_bar, top, kept = now - self._collapse, 0.0, 0.0, []
        for peak in self._peaks:
            t, r, v = peak
            if t <= horizon:
                continue
            distance = abs(v - value)
            if distance <= near and r > near_bar:
                near_bar = r
            top = max(top, r)
            if not (raw > 0 and r <= raw + MERGE and distance <= near / 2):
                kept.append(peak)
        is_event = raw > max(near_bar, GLOBAL_SHARE * top)
        if raw > 0:
            kept.append((now, raw, value))
        self._peaks = kept[-MAX_PEAKS:]
        if not is_event:
            return 0.0
        events = self._events
        while events and events[0][0] <= now - PRUNE_HALF_LIVES * self._half_life:
            events.popleft()
        stronger = sum(
            0.5 ** ((now - t) / self._half_life) for t, r, v in events if r >= raw and abs(v - value) <= near
        )
        events.append((now, raw, value))
        return raw / math.sqrt(1 + stronger)

    def _tick(self, at: datetime | None) -> float:
        if at is not None:
            t = epoch_seconds(at)
            if self._last_at is not None and t > self._last_at:
                self._step = t - self._last_at
            self._last_at = t
        self._clock += self._step or self._default_step
        return self._clock

    @property
    def state(self) -> EventState:
        return EventState(
            clock=self._clock,
            step=self._step,
            last_at=self._last_at,
            peaks=list(self._peaks),
            events=list(self._events),
        )


# ------------------------------------------------------------------ the detector
class AnomalyConfig(BaseModel):
    """One configuration for every metric: the NAB evaluation scores all series with these defaults.
    Memory, warm-up and the alerting layer are in hours (the same at the autopilot's 30 s and on NAB's
    mostly 5-minute rows); the window is in values: 64 is 32 minutes at 30 s and 5 hours on NAB. Warm-up is
    the longer of `warmup_hours` and `min_history` values (the window's statistics need those): 75
    minutes at 30 s, 12.5 hours at 5 minutes."""

    window: int = Field(64, ge=8, le=4096, description="values in the robust median/MAD window")
    levels: int = Field(16, ge=2, le=256, description="bins over the range seen, for rarity")
    min_history: int = Field(150, ge=2, description="values learnt before any score is given")
    z_half: float = Field(2.0, gt=0, description="robust z at which the distance factor is 0.5")
    # Round 3's alerting (EventFilter): a raw score is an event when it beats every raw score of the last
    # `collapse_hours`, and is discounted by the metric's earlier events at least as strong (weighted
    # by a half-life), so routine bursts of a bursty metric stop alerting.
    collapse_hours: float = Field(12.0, ge=0, description="a score must beat every one of this many hours")
    event_half_life_hours: float = Field(48.0, gt=0, description="half-life of earlier events' weight")
    suppression: int = Field(50, ge=0, description="round 2: a score must beat this many previous ones")
    # The metric's quantum (psutil reports percentages to 0.1): one step of it is never a big z.
    resolution: float = Field(0.0, ge=0)
    # Forgetting, for a detector that lives for months: the range is that of the last `memory_hours`
    # (roughly: it is kept per quarter of that) and level counts halve every `memory_hours`, so one
    # burst or glitch does not dull it for good, and a nightly spike is not new every night. In time, not
    # in values, so a 30 s host metric and a 5-minute series mean the same (the interval is learnt from
    # the timestamps). 0 never forgets.
    memory_hours: float = Field(
        168.0, ge=0, description="hours after which the range and level counts forget"
    )
    # No score before this much history, nor before `min_history` values (the window's statistics).
    warmup_hours: float = Field(1.0, ge=0, description="hours learnt before any score is given")
    # Round 2 (anomaly_round2.py) only: its memory in values.
    memory: int = Field(1000, ge=0, description="round 2: values after which the range and counts forget")


class AnomalyState(BaseModel):
    """Everything a detector needs to resume: small and JSON-serialisable."""

    seen: int = 0
    low: float | None = None  # range seen so far
    high: float | None = None
    level_counts: dict[int, float] = Field(default_factory=dict)  # decayed when `memory` is set
    # With `memory`: min and max of each completed quarter of it (oldest first), and of the current one.
    quarters: list[tuple[float, float]] = Field(default_factory=list)
    quarter_low: float | None = None
    quarter_high: float | None = None
    quarter_fill: int = 0
    window: list[float] = Field(default_factory=list)  # oldest first
    recent_scores: list[float] = Field(default_factory=list)  # round 2: raw scores, for suppression
    events: EventState = Field(default_factory=EventState)  # round 3: the alerting layer (EventFilter)
    skipped: int = 0  # NaN and ±inf values seen: counted, never learnt (one inf would blind the range)
    # The sampling interval, learnt from the first gaps between timestamps (round 3); None until then.
    interval_seconds: float | None = None
    last_at: float | None = None  # the previous value's timestamp (epoch seconds)
    gaps: list[float] = Field(default_factory=list)  # the last gaps, the interval's evidence


class AnomalyDetector:
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
        self._interval = state.interval_seconds
        self._last_at = state.last_at
        self._gaps = list(state.gaps)
        self._quarter_size, self._min_history = self._counts_for(self._interval or DEFAULT_INTERVAL)
        self._quarters: deque[tuple[float, float]] = deque(state.quarters, maxlen=QUARTERS)
        self._quarter_low = math.inf if state.quarter_low is None else state.quarter_low
        self._quarter_high = -math.inf if state.quarter_high is None else state.quarter_high
        self._quarter_fill = state.quarter_fill
        self._window: deque[float] = deque(state.window[-c.window :], maxlen=c.window)
        self._sorted = sorted(self._window)
        self._events = EventFilter(c.collapse_hours, c.event_half_life_hours, DEFAULT_INTERVAL, state.events)
        # Evidence for the last value: the range the window expected it in, and its robust z.
        self.expected: tuple[float, float] | None = None
        self.z: float = 0.0

    def update(self, value: float, at: datetime | None = None) -> float:
        """The anomaly score of `value` given everything before it. `at` (the value's time) teaches the
        detector its sampling interval; without it, DEFAULT_INTERVAL is assumed."""
        c = self.config
        raw = 0.0
        self.expected, self.z = None, 0.0
        if at is not None:
            self._learn_interval(at)
        if not math.isfinite(value):  # a broken probe says nothing about the metric: skip, count
            self._skipped += 1
            return self._events.score(0.0, at)
        if self._sorted:
            median, scale = self._median_and_scale()
            self.z = abs(value - median) / scale
            self.expected = (median - 3 * scale, median + 3 * scale)
        level = self._level(value)
        if self._seen >= self._min_history:
            rarity = 1.0 if level is None else 1.0 / (1 + self._counts.get(level, 0))
            raw = rarity * self.z / (self.z + c.z_half)
        # Earlier events count against this one only when of about its size: within a quarter of the range.
        near = SIMILAR_EVENTS * (self._high - self._low) if self._high > self._low else math.inf
        self._learn(value, level)
        return self._events.score(raw, at, value, near)

    def _level(self, value: float) -> int | None:
        """The bin of `value` over the range seen so far; None for a new high or low (always rare)."""
        if not self._low <= value <= self._high:
            return None
        span = self._high - self._low
        level = math.floor((value - self._low) / span * self.config.levels) if span > 0 else 0
        # The high itself is the top level's (round 1 gave it a level of its own, `levels`, which a
        # forgetting range cannot keep: the high moves and that level's values fall into another).
        return min(level, self.config.levels - 1) if self.config.memory_hours else level

    def _learn_interval(self, at: datetime) -> None:
        """The sampling interval: the median of the last INTERVAL_GAPS gaps between timestamps (a clock
        step or a missed sample among them does not move it). Memory and warm-up are counted in values
        at that interval, learnt again when all the recent gaps are over twice or under half of it (the
        monitor interval reconfigured)."""
        t = epoch_seconds(at)
        if self._last_at is not None and t > self._last_at:
            self._gaps.append(t - self._last_at)
            del self._gaps[:-INTERVAL_GAPS]
        self._last_at = t
        if len(self._gaps) < INTERVAL_GAPS:
            return
        interval = self._interval
        # Learnt again only when every recent gap says so: irregular sampling keeps the interval it has.
        if (
            interval is None
            or all(g > 2 * interval for g in self._gaps)
            or all(g < interval / 2 for g in self._gaps)
        ):
            self._interval = statistics.median(self._gaps)
            self._quarter_size, self._min_history = self._counts_for(self._interval)

    def _counts_for(self, interval: float) -> tuple[int, int]:
        """Values per quarter of the memory, and values of warm-up, at `interval` seconds per value."""
        c = self.config
        per_hour = 3600 / interval
        quarter = max(1, round(c.memory_hours * per_hour / QUARTERS))
        return quarter, max(c.min_history, math.ceil(c.warmup_hours * per_hour))

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
        if level is not None and self._seen > self._min_history:
            # Levels are counted once the range has settled: early counts would be of other bins.
            self._counts[level] = self._counts.get(level, 0) + 1
        if self.config.memory_hours:
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
            events=self._events.state,
            skipped=self._skipped,
            quarters=list(self._quarters),
            quarter_low=None if math.isinf(self._quarter_low) else self._quarter_low,
            quarter_high=None if math.isinf(self._quarter_high) else self._quarter_high,
            quarter_fill=self._quarter_fill,
            interval_seconds=self._interval,
            last_at=self._last_at,
            gaps=list(self._gaps),
        )

    def state_size_bytes(self) -> int:
        """Size of the serialised state: what the autopilot carries per metric."""
        return len(self.state.model_dump_json())
