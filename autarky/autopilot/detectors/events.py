"""From raw anomaly scores to alerts that mean the same on every metric (round 3, pure code).

Two steps over a detector's raw score r (anomaly.py):

1. Collapse repeats in time: r is an *event* only when it beats every raw score of the last
   `collapse_hours`. A lasting change is reported once, at its start. Round 2 asked r to beat the last 50
   values: 25 minutes at the autopilot's 30 s, four hours on a 5-minute series; hours mean the same at
   every sampling interval.
2. Event rarity: the raw detector's own idea (rarity = 1 / (1 + times seen)) applied to its events. With
   n = the metric's earlier events at least as strong as r, each weighted 0.5 ** (age / `half_life_hours`),
   score = r / sqrt(1 + n). A metric whose bursts are routine (a bursty request count, a disk that fills
   every night) stops alerting on them; a metric that never had such an event keeps its raw score. The
   factor is never above 1, so no metric is made more sensitive than its raw score. A calibration by the
   metric's own score distribution (HTM's anomaly likelihood, a rank, a tail probability) does the
   opposite to a calm metric, whose first small score becomes an alarm; measured on NAB, each of those
   lost to the raw scores (bench/nab_likelihood.py), and this gained (`make bench-nab`). The square root
   keeps one earlier event from halving the next.

Time is a clock of the stream's own: each value advances it by its gap from the previous timestamp, or
by the last good gap when the timestamp is missing or goes backwards (a host clock set back), so the
clock never runs backwards. State: a decreasing run of (time, raw) for the sliding maximum (near-equal
raws merged, so at most ~1/MERGE entries) and the recent events (at most MAX_EVENTS).
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

from pydantic import BaseModel, Field

MERGE = 0.01  # raws closer than this share one entry of the sliding maximum (bounds its length to ~100)
MAX_EVENTS = 64  # events kept for rarity; beyond that the oldest go (a metric this busy is discounted)
PRUNE_HALF_LIVES = 5  # an event older than this weighs under 1/32: dropped


class EventState(BaseModel):
    """The layer's state: small and JSON-serialisable."""

    clock: float = 0.0  # seconds of stream seen
    step: float | None = None  # the last positive gap between timestamps
    last_at: float | None = None  # the previous timestamp (epoch seconds)
    peaks: list[tuple[float, float]] = Field(default_factory=list)  # (clock, raw), raw decreasing
    events: list[tuple[float, float]] = Field(default_factory=list)  # (clock, raw), oldest first


def epoch_seconds(at: datetime) -> float:
    # Naive datetimes count as UTC: converting from local time would depend on the host's zone.
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


class EventFilter:
    """`score(raw, at)`: the raw score when it is a new event, discounted by the event's rarity; else 0."""

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
        self._peaks: deque[tuple[float, float]] = deque(tuple(p) for p in state.peaks)
        self._events: deque[tuple[float, float]] = deque((tuple(e) for e in state.events), maxlen=MAX_EVENTS)

    def score(self, raw: float, at: datetime | None) -> float:
        now = self._tick(at)
        peaks = self._peaks
        while peaks and peaks[0][0] <= now - self._collapse:
            peaks.popleft()
        is_event = raw > 0 and (not peaks or raw > peaks[0][1])
        # Sliding maximum: an entry no higher than the new raw can never be the maximum again; a
        # near-equal older one lives on at the new time.
        merged = raw
        while peaks and peaks[-1][1] <= raw + MERGE:
            merged = max(merged, peaks.pop()[1])
        if merged > 0:
            peaks.append((now, merged))
        if not is_event:
            return 0.0
        events = self._events
        while events and events[0][0] <= now - PRUNE_HALF_LIVES * self._half_life:
            events.popleft()
        stronger = sum(0.5 ** ((now - t) / self._half_life) for t, r in events if r >= raw)
        events.append((now, raw))
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
