"""The knowledge-base queries behind `live_counts` (activities/selfmod/live_metrics.py says what each agent's
live metric is). Blocking (SQLAlchemy); the activity runs them in a thread."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from activities.infra.notifications import NotificationRow
from activities.selfmod.agent_store import AgentStore
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.ratings import VERDICTS, ItemRating
from activities.storage.schema import Analysis, Experiment
from autarky.autopilot.actions import NOTIFY
from autarky.research.items import OFFLINE_MODEL
from autarky.research.relevance import MODEL
from autarky.selfmod.agents import RELEVANCE_SCORER
from autarky.selfmod.live_watch import LiveCounts

RELEVANCE_METRIC = "approved share of the items called relevant"
ALERT_METRIC = "anomaly alerts per metric-day"
# An anomaly finding's message (autarky/autopilot/policy/detection.py `_anomaly_finding`), which is the
# notification's reason: "<metric> = <value> is unusual for this host (expected …; anomaly score …)".
ANOMALY_REASON = re.compile(r"^(?P<metric>\S+) = \S+ is unusual for this host \(expected .*anomaly score ")
_ANOMALY_MARK = " is unusual for this host (expected "
FINAL_EXPERIMENTS = ("approved", "rejected", "expired", "failed")
_CHUNK = 500  # ids per IN (…): below SQLite's bound-parameter limit


def relevance_counts(
    kb: KnowledgeBase, version: str, since: datetime, until: datetime, threshold: float
) -> LiveCounts:
    """Items the relevance scorer's `version` called relevant in [since, until), and the person's verdicts
    on them given after that call (blocking)."""
    history = AgentStore(kb).history(RELEVANCE_SCORER.name)
    shipped = not history or history[0].commit[:12] == version[:12]
    labelled = Analysis.model.startswith(f"{MODEL}@{version[:12]}", autoescape=True)
    if shipped:  # a label without a version was the shipped scorer's (with or without what people taught)
        unlabelled = sa.or_(Analysis.model == MODEL, Analysis.model.startswith(f"{MODEL}+", autoescape=True))
        labelled = sa.or_(labelled, unlabelled)
    called = (
        sa.select(Analysis.item_id, sa.func.min(Analysis.created_at))
        .where(
            Analysis.provider == OFFLINE_MODEL,
            labelled,
            Analysis.created_at >= since,
            Analysis.created_at < until,
            Analysis.score > threshold,  # as experiment_candidates: above, not at
        )
        .group_by(Analysis.item_id)
    )
    with kb.engine.connect() as connection:
        first_call: dict[int, datetime] = {i: _utc(at) for i, at in connection.execute(called)}
        ids = sorted(first_call)
        ratings: dict[int, tuple[bool, datetime]] = {}
        experiments: dict[int, list[tuple[str, datetime, datetime, int]]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = connection.execute(
                sa.select(ItemRating.item_id, ItemRating.good, ItemRating.rated_at).where(
                    ItemRating.item_id.in_(chunk)
                )
            )
            ratings.update({i: (bool(good), _utc(at)) for i, good, at in rows})
            rows = connection.execute(
                sa.select(
                    Experiment.item_id,
                    Experiment.state,
                    Experiment.created_at,
                    Experiment.updated_at,
                    Experiment.id,
                ).where(Experiment.item_id.in_(chunk))
            )
            for i, state, created, updated, eid in rows:
                experiments.setdefault(i, []).append((state, _utc(created), _utc(updated), eid))
    good = judged = pending = 0
    for item, at in first_call.items():
        verdict = _verdict(at, ratings.get(item), experiments.get(item, []), VERDICTS)
        if verdict is None:
            # Awaiting the person; an item judged before this call, or whose experiment expired, is neither.
            started = experiments.get(item, [])
            if any(e[0] not in FINAL_EXPERIMENTS for e in started) or (not started and item not in ratings):
                pending += 1
            continue
        judged += 1
        good += verdict
    return LiveCounts(
        metric=RELEVANCE_METRIC,
        kind="proportion",
        better="higher",
        events=good,
        exposure=judged,
        pending=pending,
        note=f"version {version[:12]}, items scored above {threshold:g} from {since.isoformat()} to "
        f"{until.isoformat()}, judged after",
    )


def _verdict(
    called_at: datetime,
    rating: tuple[bool, datetime] | None,
    experiments: list[tuple[str, datetime, datetime, int]],
    verdicts: dict[str, bool],
) -> bool | None:
    """The person's verdict on an item given after the scorer called it relevant: a rating says more than
    an experiment's fate (as the learning does); an experiment counts when this call started it."""
    if rating is not None and rating[1] >= called_at:
        return rating[0]
    decided = sorted(
        (updated, eid, verdicts[state])
        for state, created, updated, eid in experiments
        if state in verdicts and created >= called_at
    )
    return decided[-1][2] if decided else None


def alert_counts(kb: KnowledgeBase, since: datetime, until: datetime, metrics: list[str]) -> LiveCounts:
    """Anomaly alerts (notifications of anomaly findings) in [since, until) per watched metric-day
    (blocking)."""
    if not metrics:
        raise ValueError(
            "no metric is watched for anomalies: set AUTARKY_AUTOPILOT__ANALYSIS__ANOMALY_METRICS"
        )
    query = sa.select(NotificationRow.reason).where(
        NotificationRow.action_type == NOTIFY,
        NotificationRow.created_at >= since,
        NotificationRow.created_at < until,
        NotificationRow.reason.contains(_ANOMALY_MARK, autoescape=True),
    )
    with kb.engine.connect() as connection:
        alerts = sum(1 for (reason,) in connection.execute(query) if ANOMALY_REASON.match(reason))
    days = (until - since) / timedelta(days=1)
    return LiveCounts(
        metric=ALERT_METRIC,
        kind="rate",
        better="lower",
        events=alerts,
        exposure=days * len(metrics),
        unit="metric-days",
        note=f"{len(metrics)} metrics watched, {days:.3g} days from {since.isoformat()}; attributed by time",
    )


def _utc(at: datetime) -> datetime:
    """Timestamps read through a raw select keep the UtcDateTime conversion; this only guards naive ones."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
