"""The product runs each agent's active version: a promotion by self-modification (and a rollback)
reaches the running autopilot's anomaly detector and the research cycle's offline scorer without a
restart."""

from __future__ import annotations

import asyncio
import difflib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client

from activities.research.analysis import AnalysisActivities
from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities
from activities.selfmod.versions import AgentRepository
from activities.storage.handle import KnowledgeBaseHandle
from autarky.autopilot.detectors.anomaly import AnomalyConfig
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER, anomaly_config, default_parameters
from autarky.selfmod.types import ActiveAgentInput, CandidateOrigin
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, eventually, fast_settings, status

AGENT = ANOMALY_DETECTOR.name


def promote(data_dir: Path, parameters: dict[str, float], agent: str = AGENT) -> str:
    repo = AgentRepository(data_dir / "agents", agent)
    now = datetime.now(UTC)
    source = {AGENT: ANOMALY_DETECTOR, RELEVANCE_SCORER.name: RELEVANCE_SCORER}[agent].source_files[0]
    repo.ensure({source: (PROJECT_ROOT / source).read_text()}, default_parameters(agent), now)
    candidate = repo.create_candidate(
        repo.active().commit, "c1", "test", parameters, None, CandidateOrigin.MUTATION, "wider window"
    )
    return repo.promote(candidate.commit, "test", "a test promotion", None, now).commit


async def test_a_promoted_version_reaches_the_running_autopilot(client: Client, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    harness = Harness(client, tmp_path, FakeHost())
    # The real activity, reading the pointer file in the data directory the self-modification writes.
    harness.main_activities += [SelfModActivities(AutarkySettings(data_dir=data_dir)).active_agent_parameters]
    settings = fast_settings(evolved_agents=True, agent_version_check_interval=timedelta(milliseconds=200))
    async with harness.running(settings) as handle:
        await eventually(lambda: status(handle))
        assert (await status(handle)).agent_versions == {}  # never evolved: the shipped parameters
        first = promote(data_dir, {**default_parameters(AGENT), "window": 256.0})
        seen = await eventually(lambda: _version(handle))
        assert seen == first
        rolled_back = AgentRepository(data_dir / "agents", AGENT).rollback("test", "undo", datetime.now(UTC))
        assert await eventually(lambda: _version(handle, unless=first)) == rolled_back.commit


async def test_a_version_only_bootstrapped_leaves_the_shipped_parameters(tmp_path: Path) -> None:
    # A repository bootstrapped by an older release holds that release's defaults; this release ships
    # its own, and only a promotion (or a rollback someone asked for) overrides them.
    selfmod = SelfModActivities(AutarkySettings(data_dir=tmp_path))
    source = ANOMALY_DETECTOR.source_files[0]
    old_defaults = {**default_parameters(AGENT), "window": 128.0, "z_half": 3.0}
    repo = AgentRepository(tmp_path / "agents", AGENT)
    repo.ensure({source: (PROJECT_ROOT / source).read_text()}, old_defaults, datetime.now(UTC))
    assert repo.active().changed_by == "bootstrap"
    assert await selfmod.active_agent_parameters(ActiveAgentInput(agent=AGENT)) is None
    promoted = promote(tmp_path, {**default_parameters(AGENT), "window": 256.0})
    pointer = await selfmod.active_agent_parameters(ActiveAgentInput(agent=AGENT))
    assert pointer is not None and pointer.commit == promoted


async def _version(handle, unless: str | None = None) -> str | None:
    version = (await status(handle)).agent_versions.get(AGENT)
    return None if version == unless else version


def test_an_evolved_version_changes_only_its_parameters() -> None:
    base = AnomalyConfig(resolution=0.1)
    evolved = anomaly_config({"window": 256.0, "z_half": 4.5, "suppression": 10.0}, base)
    assert (evolved.window, evolved.z_half, evolved.suppression, evolved.resolution) == (256, 4.5, 10, 0.1)
    assert isinstance(evolved.window, int)


def test_the_research_analyser_scores_with_the_active_relevance_version(tmp_path: Path) -> None:
    settings = AutarkySettings(data_dir=tmp_path)
    analysis = AnalysisActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))
    title = "Speculative decoding for faster large language model inference"
    shipped = analysis._offline_scorer().score(title).score
    assert analysis._offline_scorer().params.half == default_parameters(RELEVANCE_SCORER.name)["half"]

    promote(tmp_path, {**default_parameters(RELEVANCE_SCORER.name), "half": 12.0}, RELEVANCE_SCORER.name)
    assert analysis._offline_scorer().params.half == 12.0
    assert analysis._offline_scorer().score(title).score < shipped

    AgentRepository(tmp_path / "agents", RELEVANCE_SCORER.name).rollback("test", "undo", datetime.now(UTC))
    assert analysis._offline_scorer().score(title).score == shipped


def test_a_damaged_pointer_leaves_research_on_the_shipped_version(tmp_path: Path) -> None:
    settings = AutarkySettings(data_dir=tmp_path)
    promote(tmp_path, {**default_parameters(RELEVANCE_SCORER.name), "half": 12.0}, RELEVANCE_SCORER.name)
    pointer = tmp_path / "agents" / RELEVANCE_SCORER.name / "active.json"
    pointer.write_text("{not json")
    analysis = AnalysisActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))
    assert analysis._offline_scorer().params.half == default_parameters(RELEVANCE_SCORER.name)["half"]
    assert pointer.read_text() == "{not json"  # left for a person to see and fix


@pytest.mark.slow
async def test_agents_short_of_their_goals_get_one_evolution_each(client: Client, tmp_path: Path) -> None:
    """The real shortfall check (the sandboxed benchmark of each active version, judged outside); the
    action's activity is replaced by a recorder (its own test starts real evolutions: test_cli_agents)."""
    data_dir = tmp_path / "shared-data"
    started: list[ActionRequest] = []

    @activity.defn(name="start_agent_evolution")
    async def start(request: ActionRequest) -> ActionResult:
        started.append(request)
        return ActionResult(success=True, improvement_measured=False, detail="started")

    harness = Harness(client, tmp_path, FakeHost())
    selfmod = SelfModActivities(AutarkySettings(data_dir=data_dir))
    harness.main_activities += [selfmod.agent_shortfalls, selfmod.active_agent_parameters, start]
    settings = fast_settings(
        evolved_agents=True,
        agent_version_check_interval=timedelta(milliseconds=200),
        agent_goal_check_interval=timedelta(milliseconds=300),
    )
    async with harness.running(settings):
        await eventually(lambda: asyncio.sleep(0, result=len(started) >= 2), timeout=60)
        await asyncio.sleep(1.0)  # more goal checks and plan rounds: no second start for either agent
    agents = sorted(r.params["agent"] for r in started)
    assert agents == ["anomaly-detector", "relevance-scorer"]  # both are short of their goals today
    assert all(r.action_type == "evolve_agent" for r in started)
    assert "short of its goal" in started[0].reason
    figures = {a: json.loads((data_dir / "agents" / a / "figure.json").read_text()) for a in agents}
    assert figures["relevance-scorer"]["figure"] < 90.0 and figures["anomaly-detector"]["figure"] < 50.0


def test_a_promoted_version_that_changed_the_code_runs_its_code_in_research(tmp_path: Path) -> None:
    settings = AutarkySettings(data_dir=tmp_path)
    source = RELEVANCE_SCORER.source_files[0]
    shipped = (PROJECT_ROOT / source).read_text()
    label = '_LABEL = "Offline lexical match (BM25 on keywords, no LLM):"'
    assert label in shipped
    evolved = shipped.replace(label, '_LABEL = "Evolved lexical match:"')
    patch = "".join(
        difflib.unified_diff(
            shipped.splitlines(keepends=True), evolved.splitlines(keepends=True), f"a/{source}", f"b/{source}"
        )
    )
    repo = AgentRepository(tmp_path / "agents", RELEVANCE_SCORER.name)
    now = datetime.now(UTC)
    params = default_parameters(RELEVANCE_SCORER.name)
    repo.ensure({source: shipped}, params, now)
    candidate = repo.create_candidate(
        repo.active().commit, "c1", "t", params, patch, CandidateOrigin.LLM, "x"
    )
    repo.promote(candidate.commit, "test", "", None, now, code_changed=True)

    analysis = AnalysisActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))
    title = "Speculative decoding for faster large language model inference"
    assert analysis._offline_scorer().score(title).rationale.startswith("Evolved lexical match:")
    repo.rollback("test", "undo", now)
    assert analysis._offline_scorer().score(title).rationale.startswith("Offline lexical match")
