"""`live_counts` (activities/selfmod/live_metrics.py, issue 30 item 2): a promoted agent's live metric from
what the product recorded, on both databases: the person's verdicts on the research items the relevance
scorer's version called relevant, and the anomaly alerts per metric-day. Written through the product's own
store APIs (versions, analyses, experiments, ratings, notifications); then the live metric changes and
the watch's verdict flips."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.infra.notifications import store_notification
from activities.research.analysis import AnalysisActivities
from activities.research.offline_analyser import base_label
from activities.selfmod.agent_store import AgentStore
from activities.selfmod.live_metrics import LiveMetricsActivities
from activities.selfmod.live_queries import ANOMALY_REASON
from activities.selfmod.versions import AgentRepository
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.ratings import Ratings
from activities.storage.schema import utc_now
from autarky.autopilot.actions import NOTIFY
from autarky.autopilot.detectors.anomaly import AnomalyConfig
from autarky.autopilot.policy.detection import detector_findings
from autarky.autopilot.policy.remediation import candidates_for
from autarky.autopilot.settings import AnalysisSettings
from autarky.core.settings import AutarkySettings
from autarky.research.items import OFFLINE_MODEL, AnalysisIn, ExperimentUpdate, ItemIn
from autarky.research.relevance import MODEL
from autarky.research.types import AnalyseInput
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER, default_parameters
from autarky.selfmod.live_types import LiveCountsInput
from autarky.selfmod.live_watch import live_regression
from autarky.selfmod.types import CandidateOrigin
from tests.test_detection import feed, point
from tests.test_knowledge_base import db_url  # noqa: F401  (the fixture: sqlite, postgresql)
from tests.test_research_learning import PROOF

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
ROOT = Path(__file__).resolve().parents[1]
AGENT = RELEVANCE_SCORER.name
TOLERANCE = 0.1


@dataclass
class World:
    settings: AutarkySettings
    handle: KnowledgeBaseHandle
    kb: KnowledgeBase
    repo: AgentRepository
    live: LiveMetricsActivities
    incumbent: str
    promoted: str
    items: int = 0

    def item(self, title: str = "", abstract: str = "") -> int:
        self.items += 1
        n = self.items
        found = ItemIn(
            kind="paper",
            source="arxiv",
            source_id=f"2612.{n:05d}",
            title=title or f"Item {n}",
            abstract=abstract,
        )
        return self.kb.upsert_item(found).item_id

    def called(self, model: str, score: float = 0.85, provider: str = OFFLINE_MODEL) -> int:
        """An item the analyser scored (under `model`), as the research cycle stores it."""
        item = self.item()
        analysis = AnalysisIn(
            item_id=item, provider=provider, model=model, prompt_version="research-1", score=score
        )
        self.kb.record_analysis(analysis)
        return item

    def decide(self, item: int, state: str) -> None:
        """The experiment the call started, and the person's decision on it (or none yet)."""
        workflow_id = f"experiment/{item}"
        self.kb.create_or_get_experiment(workflow_id, item)
        self.kb.update_experiment(ExperimentUpdate(workflow_id=workflow_id, state=state))  # type: ignore[arg-type]

    def verdicts(self, model: str, approved: int, rejected: int) -> list[int]:
        items = []
        for state in ["approved"] * approved + ["rejected"] * rejected:
            items.append(self.called(model))
            self.decide(items[-1], state)
        return items

    async def counts(self, version: str, since: datetime, until: datetime, agent: str = AGENT):
        return await self.live.live_counts(
            LiveCountsInput(agent=agent, version=version, since=since, until=until)
        )


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:  # noqa: F811
    settings = AutarkySettings(data_dir=tmp_path / "data", knowledge_base_url=db_url)
    handle = KnowledgeBaseHandle(db_url)
    kb = handle.get()
    repo = AgentRepository(settings.data_dir / "agents", AGENT, AgentStore(kb))
    source = RELEVANCE_SCORER.source_files[0]
    parameters = default_parameters(AGENT)
    incumbent = repo.ensure({source: (ROOT / source).read_text()}, parameters, utc_now()).commit
    promoted = repo.create_candidate(
        incumbent, "g1c1", "run-1", parameters | {"half": 2.0}, None, CandidateOrigin.MUTATION, "half 2"
    ).commit
    yield World(settings, handle, kb, repo, LiveMetricsActivities(settings, handle), incumbent, promoted)
    kb.close()


def after(moment: datetime) -> datetime:
    """A time strictly later than `moment` on this clock (stored times resolve to the microsecond)."""
    while (now := utc_now()) <= moment:
        pass
    return now


async def test_the_promoted_versions_approvals_regress_and_the_verdict_flips(world: World) -> None:
    incumbent, promoted = base_label(world.incumbent), base_label(world.promoted)
    since = utc_now()
    # The incumbent's weeks: 24 of 30 approved under its label, 2 of 3 under the shipped label (before the
    # agent had versions: its first version's), and what is not the scorer's or not called relevant.
    world.verdicts(incumbent, approved=24, rejected=6)
    world.verdicts(MODEL, approved=2, rejected=1)
    world.decide(world.called(incumbent, provider="openai"), "approved")  # an LLM's call, not the scorer's
    world.decide(world.called(incumbent, score=0.6), "rejected")  # below the experiment threshold
    promoted_at = after(utc_now())
    world.repo.promote(world.promoted, "evolve/relevance-scorer/1", "test", 88.0, promoted_at)

    good = world.verdicts(promoted, approved=22, rejected=3)
    for _ in range(2):  # awaiting the person
        world.decide(world.called(promoted), "awaiting_approval")
    world.called(promoted)  # no experiment yet (the cycle's cap)
    judged_before = world.item()
    Ratings(world.kb).rate(judged_before, good=False)  # judged before this version called it: not its
    world.kb.record_analysis(
        AnalysisIn(
            item_id=judged_before, provider=OFFLINE_MODEL, model=promoted, prompt_version="r1", score=0.9
        )
    )
    world.decide(world.called(incumbent), "rejected")  # a worker still on the old version: not the new one's
    world.decide(world.called(MODEL), "rejected")  # nor the shipped label's
    until = after(utc_now())

    before = await world.counts(world.incumbent, since, promoted_at)
    assert (before.kind, before.better, before.events, before.exposure) == ("proportion", "higher", 26, 33)
    now = await world.counts(world.promoted, promoted_at, until)
    assert (now.events, now.exposure, now.pending) == (22, 25, 3)
    verdict = live_regression(before, now, TOLERANCE)
    assert verdict.status == "holds", verdict.reason

    # The person now rates 12 of the items the new version sent as approved bad after all (a rating says
    # more than an experiment's fate), and rejects the two awaiting ones: the live metric drops.
    ratings = Ratings(world.kb)
    for item in good[:12]:
        ratings.rate(item, good=False)
    for experiment in [e for e in world.kb.experiments(100) if e["state"] == "awaiting_approval"]:
        world.kb.update_experiment(ExperimentUpdate(workflow_id=experiment["workflow_id"], state="rejected"))
    now = await world.counts(world.promoted, promoted_at, until)
    assert (now.events, now.exposure, now.pending) == (10, 27, 1)
    verdict = live_regression(before, now, TOLERANCE)
    assert verdict.status == "regressed", verdict.reason
    assert "10/27 (37.0%)" in verdict.reason and "26/33 (78.8%)" in verdict.reason
    # The incumbent's own window is untouched by what happened after.
    assert (await world.counts(world.incumbent, since, promoted_at)).exposure == 33


async def test_the_product_labels_its_offline_analyses_with_the_version_that_made_them(world: World) -> None:
    # The research analyser itself (offline: no LLM) scores an item after the promotion; the new version's
    # counts see it, the incumbent's do not.
    world.repo.promote(world.promoted, "evolve/relevance-scorer/1", "test", 88.0, utc_now())
    since = after(utc_now())
    item = world.item(*PROOF)
    analysis = AnalysisActivities(world.settings, world.handle, environ={})
    result = await analysis.analyse_item(AnalyseInput(cycle_id="c1", item_id=item))
    assert result.model == base_label(world.promoted)
    assert result.score > world.settings.research.experiment_threshold
    world.decide(item, "approved")
    until = after(utc_now())
    assert (await world.counts(world.promoted, since, until)).events == 1
    assert (await world.counts(world.incumbent, since, until)).exposure == 0


def anomaly_reason() -> str:
    """The reason a real anomaly finding gives its notification (detection, then the remediation plan)."""
    settings = AnalysisSettings(anomaly=AnomalyConfig(min_history=20), anomaly_threshold=0.9)
    rng = random.Random(2)
    points = [point(i, cpu_percent=20 + rng.gauss(0, 1)) for i in range(60)] + [point(60, cpu_percent=70.0)]
    state = feed(points, settings)
    [notify] = candidates_for(detector_findings(state, points, settings, points[-1].at))
    assert notify.action_type == NOTIFY
    return notify.reason


async def test_anomaly_alerts_per_metric_day_rise_and_the_verdict_flips(world: World) -> None:
    reason = anomaly_reason()
    match = ANOMALY_REASON.match(reason)
    assert match is not None and match["metric"] == "cpu_percent"
    metrics = len(world.settings.autopilot.analysis.anomaly_metrics)
    keys = iter(range(1000))

    def alert(n: int, text: str = reason, action: str = NOTIFY) -> None:
        for _ in range(n):
            store_notification(world.kb, f"act-{next(keys)}", action, text, "host-a")

    start = utc_now()
    alert(22)
    alert(3, "disk_percent 97 % ≥ 90 %")  # another finding's notification: not an anomaly alert
    promoted_at = after(utc_now())
    world.repo.promote(world.promoted, "evolve/anomaly-detector/1", "test", 66.0, promoted_at)
    alert(6)
    # Windows of fixed length around the promotion: 28 days before, 7 after (the notifications are now).
    baseline = (promoted_at - timedelta(days=28), promoted_at)
    watched = (promoted_at, promoted_at + timedelta(days=7))
    assert start > baseline[0]

    before = await world.counts(world.incumbent, *baseline, agent=ANOMALY_DETECTOR.name)
    assert (before.kind, before.better, before.events, before.exposure) == ("rate", "lower", 22, 28 * metrics)
    now = await world.counts(world.promoted, *watched, agent=ANOMALY_DETECTOR.name)
    assert (now.events, now.exposure, now.unit) == (6, 7 * metrics, "metric-days")
    assert live_regression(before, now, TOLERANCE).status == "holds"

    alert(20)  # the promoted detector keeps alerting
    now = await world.counts(world.promoted, *watched, agent=ANOMALY_DETECTOR.name)
    assert now.events == 26
    verdict = live_regression(before, now, TOLERANCE)
    assert verdict.status == "regressed", verdict.reason
    assert f"26 in {7 * metrics} metric-days" in verdict.reason


async def test_an_agent_without_a_live_metric_is_refused_by_name(world: World) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ApplicationError, match="has no live metric") as raised:
        await world.counts("abc", now - timedelta(days=1), now, agent="spell-checker")
    assert raised.value.type == "NoLiveMetric" and raised.value.non_retryable
    with pytest.raises(ValueError, match="empty live window"):
        LiveCountsInput(agent=AGENT, version="abc", since=now, until=now)
