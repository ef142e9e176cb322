"""Issue 30: a planted real improvement of the anomaly detector is found and promoted by an offline evolution
started as `autarky evolve anomaly-detector --offline` starts it (`start_evolution`, its default budget of
3 generations × 4 candidates), on the real server with the real sandbox and judge.

The data is NAB-format (the judge reads any such directory: `evolution.nab_data_dir`), generated with a
known truth: 48 calm series, each with one spike after about 40 hours. The incumbent is planted poor (it
warms up for 600 values, 50 hours at 5 minutes, so it misses every spike); the shipped detector finds
them. On the development NAB set the decision part (24 files) cannot confirm a gain below about 12 points
(bench/selfmod.py); here each of 48 files shows the gain, as new labelled data would.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.selfmod.activities import PROJECT_ROOT
from activities.selfmod.versions import AgentRepository
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.selfmod.agents import ANOMALY_DETECTOR, default_parameters
from autarky.selfmod.evolutions import start_evolution
from autarky.selfmod.settings import EvolutionSettings
from autarky.selfmod.types import CandidateOrigin, SandboxLimits
from tests.test_autopilot import eventually
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow

AGENT = ANOMALY_DETECTOR.name
ROWS = 1000
START = datetime(2026, 1, 1)
POOR = {**default_parameters(AGENT), "min_history": 600.0}


def write_corpus(root: Path, seed: int = 30) -> tuple[Path, Path]:
    """48 files (24 categories of 2: one for each part) of 5-minute values, each with one spike."""
    rng = random.Random(seed)
    data, windows = root / "data", {}
    for c in range(24):
        for f in range(2):
            key = f"cat{c:02d}/series{f}.csv"
            values = [20 + rng.gauss(0, 1) for _ in range(ROWS)]
            spike = rng.randrange(480, 560)
            values[spike : spike + 3] = [60.0, 62.0, 58.0]
            path = data / key
            path.parent.mkdir(parents=True, exist_ok=True)
            stamps = [START + timedelta(minutes=5 * i) for i in range(ROWS)]
            path.write_text(
                "timestamp,value\n"
                + "".join(f"{t:%Y-%m-%d %H:%M:%S},{v:.4f}\n" for t, v in zip(stamps, values, strict=True))
            )
            windows[key] = [
                [f"{stamps[spike - 40]:%Y-%m-%d %H:%M:%S}", f"{stamps[spike + 60]:%Y-%m-%d %H:%M:%S}"]
            ]
    (root / "windows.json").write_text(json.dumps(windows))
    return data, root / "windows.json"


@pytest.mark.slow
async def test_an_offline_evolution_finds_and_promotes_a_planted_improvement(
    client: Client, tmp_path: Path
) -> None:
    data, windows = write_corpus(tmp_path / "nab")
    queue = f"planted-{uuid.uuid4().hex[:8]}"
    settings = AutarkySettings(
        data_dir=tmp_path / "data",
        llm=LlmSettings(provider="offline"),
        task_queue=queue,
        research_task_queue=queue,
        evolution=EvolutionSettings(
            nab_data_dir=data,
            nab_windows_file=windows,
            limits=SandboxLimits(cpu_seconds=120, wall_seconds=120, memory_mib=2048),
        ),
    )
    repo = AgentRepository(settings.data_dir / "agents", AGENT)
    now = datetime.now(UTC)
    source = ANOMALY_DETECTOR.source_files[0]
    repo.ensure({source: (PROJECT_ROOT / source).read_text()}, default_parameters(AGENT), now)
    poor = repo.create_candidate(
        repo.active().commit, "poor", "setup", POOR, None, CandidateOrigin.MUTATION, ""
    )
    repo.promote(poor.commit, "test", "a planted poor incumbent", None, now)

    own = f"{queue}@test-host"
    acts = selfmod_activities(settings, {}, host_task_queue=own)
    async with (
        Worker(client, task_queue=queue, workflows=[SelfModificationWorkflow], activities=acts),
        Worker(client, task_queue=own, activities=acts),
    ):
        handle = await start_evolution(client, settings, AGENT, offline=True)  # the CLI's defaults
        # As `autarky evolve` does: done once the promoted version's watch begins (it takes days).
        await eventually(lambda: _watching_or_ended(handle), timeout=600)
        await handle.terminate("the test saw what it needs")
    pointer = repo.active()
    assert pointer.commit != poor.commit, "nothing was promoted"
    assert pointer.parameters["min_history"] < 480  # it warms up before the spikes
    assert pointer.metric is not None and pointer.reason.startswith("g")
    assert "look 1 at this data" in pointer.reason, pointer.reason


async def _watching_or_ended(handle) -> bool:  # type: ignore[no-untyped-def]
    description = await handle.describe()
    if description.status is not None and description.status.name != "RUNNING":
        raise AssertionError(f"the evolution ended before promoting: {await handle.result()}")
    progress = await handle.query("progress")
    return str(progress["step"]).startswith("watching the live metric")
