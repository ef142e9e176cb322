"""Findings: what the autopilot (or another capability reporting to it) noticed, with the evidence."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

# ---------------------------------------------------------------------------------------- analysis


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Finding(BaseModel):
    """Something the Analyze stage noticed, with the evidence for it."""

    kind: str  # e.g. "cpu_high"; the planner maps kinds to candidate actions
    metric: str
    value: float
    threshold: float  # for anomalies the score threshold; for early warnings the limit
    severity: Severity = Severity.WARNING
    message: str
    observed_at: datetime
    # Evidence from the detectors (None for plain threshold rules).
    score: float | None = None  # anomaly score in [0, 1]
    expected_low: float | None = None  # the range the detector expected the value in
    expected_high: float | None = None
    subject: str | None = None  # e.g. the leaking process, "pool member 4242"
    host: str | None = None  # the host it was seen on
    slope_per_hour: float | None = None  # trend findings: growth per hour in the metric's unit
    time_to_limit_seconds: float | None = None
    params: dict[str, str] = Field(default_factory=dict)  # passed on to the remedy (e.g. a capacity)
