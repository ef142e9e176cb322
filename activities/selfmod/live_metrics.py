"""`live_counts`: an evolvable agent's live metric over a time window, from what the product recorded in the
knowledge base, for the watch after a promotion (autarky/selfmod/live_watch.py judges the counts).

- relevance-scorer: of the research items this version called relevant (an offline analysis above
  `research.experiment_threshold`, the score that starts an experiment), the share the person judged good
  afterwards: a rating (`autarky research rate`), else the experiment it started approved or rejected.
  Offline analyses name the scorer's version in their model label (``offline-bm25-v1@<commit>``), so only
  this version's count; a label without a version (analyses made before the agent's first version) counts
  for its first version, the shipped one. Items not judged yet are `pending`, not failures.
- anomaly-detector: anomaly alerts per metric-day, attributed by time (a notification does not record the
  detector's version): the notifications an anomaly finding raised (its message, built by
  autarky/autopilot/policy/detection.py), over the window's days × the watched metrics
  (`autopilot.analysis.anomaly_metrics`); the hosts are assumed the same before and after, so they cancel.
  No way exists yet for a person to mark an alert useful or false, so the rate is the evidence: more alerts
  than the tolerated ratio is a regression (the alert budget allows about one false alert per metric-day).

The queries are in activities/selfmod/live_queries.py (SQLAlchemy, loaded when first needed).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER
from autarky.selfmod.live_types import NO_LIVE_METRIC, LiveCountsInput
from autarky.selfmod.live_watch import LiveCounts


class LiveMetricsActivities:
    def __init__(self, settings: AutarkySettings, kb: KnowledgeBaseHandle) -> None:
        self.settings = settings
        self.kb = kb

    @activity.defn(name="live_counts")
    async def live_counts(self, request: LiveCountsInput) -> LiveCounts:
        """The agent's live metric for `request.version` over [since, until)."""
        # SQLAlchemy loads on first use (activities/storage/handle.py), not when a worker starts.
        from activities.selfmod.live_queries import alert_counts, relevance_counts

        if request.agent == RELEVANCE_SCORER.name:
            threshold = self.settings.research.experiment_threshold
            return await self.kb.run(
                lambda: relevance_counts(
                    self.kb.get(), request.version, request.since, request.until, threshold
                )
            )
        if request.agent == ANOMALY_DETECTOR.name:
            metrics = self.settings.autopilot.analysis.anomaly_metrics
            if not metrics:  # nothing watched: no alerts to count, whatever the version
                raise ApplicationError(
                    "no metric is watched for anomalies (AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY_METRICS is "
                    "empty): the detector has no live metric",
                    type=NO_LIVE_METRIC,
                    non_retryable=True,
                )
            return await self.kb.run(
                lambda: alert_counts(self.kb.get(), request.since, request.until, metrics)
            )
        raise ApplicationError(
            f"agent {request.agent!r} has no live metric (known: {RELEVANCE_SCORER.name}, "
            f"{ANOMALY_DETECTOR.name}): its watch can only re-run the benchmark",
            type=NO_LIVE_METRIC,
            non_retryable=True,
        )
