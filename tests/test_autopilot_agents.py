"""The autopilot runs the anomaly detector's active version: a promotion by self-modification (and a
rollback) reaches the running autopilot without a restart, its detectors' learnt state kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities
from activities.selfmod.versions import AgentRepository
from autarky.agents import ANOMALY_DETECTOR, anomaly_config, default_parameters
from autarky.config import AutarkySettings
from autarky.detectors.anomaly import AnomalyConfig
from autarky.evolution_types import CandidateOrigin
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, eventually, fast_settings, status

AGENT = ANOMALY_DETECTOR.name


def promote(data_dir: Path, parameters: dict[str, float]) -> str:
    repo = AgentRepository(data_dir / "agents", AGENT)
    now = datetime.now(UTC)
    source = ANOMALY_DETECTOR.source_files[0]
    repo.ensure({source: (PROJECT_ROOT / source).read_text()}, default_parameters(AGENT), now)
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


async def _version(handle, unless: str | None = None) -> str | None:
    version = (await status(handle)).agent_versions.get(AGENT)
    return None if version == unless else version


def test_an_evolved_version_changes_only_its_parameters() -> None:
    base = AnomalyConfig(resolution=0.1)
    evolved = anomaly_config({"window": 256.0, "z_half": 4.5, "suppression": 10.0}, base)
    assert (evolved.window, evolved.z_half, evolved.suppression, evolved.resolution) == (256, 4.5, 10, 0.1)
    assert isinstance(evolved.window, int)
