"""From raw anomaly scores to alerts that mean the same on every metric (round 3, pure code).

Two steps over a detector's raw score r (anomaly.py):

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

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

from pydantic import BaseModel, Field

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
    earlier events like it; else 0."""

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
        # The bar: the highest raw score of the last `collapse_hours` among values like this one, or a
        # little under the highest of all.
        peaks = [p for p in self._peaks if p[0] > now - self._collapse]
        near_bar = max((r for _, r, v in peaks if abs(v - value) <= near), default=0.0)
        bar = max(near_bar, GLOBAL_SHARE * max((r for _, r, _ in peaks), default=0.0))
        is_event = raw > bar
        if raw > 0:
            # An older peak close by in value and no higher adds little to any bar: it goes (small state).
            peaks = [p for p in peaks if not (p[1] <= raw + MERGE and abs(p[2] - value) <= near / 2)]
            peaks.append((now, raw, value))
        self._peaks = peaks[-MAX_PEAKS:]
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
