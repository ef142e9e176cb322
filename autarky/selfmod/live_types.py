"""The live watch's activity, typed for workflows: a version's live metric over a time window, as counts
(autarky/selfmod/live_watch.py judges them). The implementation is activities/selfmod/live_metrics.py;
tests/test_activity_contract.py keeps the name and types equal to the registered one."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, model_validator
from temporalio import activity

from autarky.selfmod.live_watch import LiveCounts

NO_LIVE_METRIC = "NoLiveMetric"  # the error type of an agent the product records no live metric of


class LiveCountsInput(BaseModel):
    """The agent's live metric over [since, until) for `version` (a commit of the agent's repository).

    What the product recorded in that window is the version's: a promotion's time separates the
    incumbent's window (before) from the promoted version's (after). Where the data names the version
    (the relevance scorer's analyses do), only that version's records count."""

    agent: str
    version: str
    since: datetime
    until: datetime

    @model_validator(mode="after")
    def _window(self) -> LiveCountsInput:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("live window bounds need a timezone (UTC)")
        if self.until <= self.since:
            raise ValueError(
                f"empty live window: until {self.until.isoformat()} ≤ since {self.since.isoformat()}"
            )
        return self


@activity.defn(name="live_counts")
async def live_counts(request: LiveCountsInput) -> LiveCounts:
    raise NotImplementedError("activities/selfmod/live_metrics.py (LiveMetricsActivities)")
