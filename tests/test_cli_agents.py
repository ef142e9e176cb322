"""`autarky agents|evolve|sandbox` as a person runs them (subprocesses): the sandbox, the agents' version
stores in a temporary data directory, and evolution runs against the test server."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.selfmod.versions import AgentRepository
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import AGENTS, RELEVANCE_SCORER, default_parameters
from autarky.selfmod.types import CandidateOrigin
from tests.test_cli import cli, table_rows
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def data_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"AUTARKY_DATA_DIR": str(tmp_path)} | extra


def bootstrap(tmp_path: Path, agent: str = RELEVANCE_SCORER.name) -> AgentRepository:
    repo = AgentRepository(tmp_path / "agents", agent)
    files = {path: (PROJECT_ROOT / path).read_text() for path in AGENTS[agent].source_files}
    repo.ensure(files, default_parameters(agent), NOW)
    return repo


@needs_bwrap
async def test_sandbox_run_prints_output_and_exit(tmp_path: Path) -> None:
    code, out = await cli(None, "sandbox", "run", "--", "python", "-c", "print(1)", **data_env(tmp_path))
    assert code == 0, out
    assert out.splitlines()[0] == "1" and "sandbox: exit 0" in out, out

    code, out = await cli(
        None, "sandbox", "run", "--", "python", "-c", "import sys; sys.exit(3)", **data_env(tmp_path)
    )
    assert code == 3 and "sandbox: exit 3" in out, out


@needs_bwrap
async def test_sandbox_hides_the_host_and_the_data_dir(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    for path in ("/etc/hostname", str(secret)):
        code, out = await cli(None, "sandbox", "run", "--", "cat", path, **data_env(tmp_path))
        assert code != 0 and "No such file" in out and "do not read me" not in out, out


@needs_bwrap
async def test_sandbox_wall_limit_is_reported(tmp_path: Path) -> None:
    command = ("python", "-c", "import time; time.sleep(30)")
    code, out = await cli(None, "sandbox", "run", "--wall", "1", "--", *command, **data_env(tmp_path))
    assert code == 1 and "stopped by the wall clock limit" in out, out


@needs_git
async def test_agents_list_history_and_rollback(tmp_path: Path) -> None:
    env = data_env(tmp_path)
    code, out = await cli(None, "agents", **env)
    assert code == 0, out
    rows = {row[0]: row for row in table_rows(out) if row[0]}
    assert set(AGENTS) <= set(rows), out
    assert all(rows[name][1] == "not evolved yet" for name in AGENTS), out
    assert not (tmp_path / "agents").exists()  # listing creates nothing

    code, out = await cli(None, "agents", "rollback", RELEVANCE_SCORER.name, **env)
    assert code == 1 and "has not been evolved yet" in out, out

    repo = bootstrap(tmp_path)
    first = repo.active().commit
    code, out = await cli(None, "agents", **env)
    rows = {row[0]: row for row in table_rows(out) if row[0]}
    assert rows[RELEVANCE_SCORER.name][1] == first[:10], out
    assert rows[RELEVANCE_SCORER.name][4] == "bootstrap", out
    assert rows["anomaly-detector"][1] == "not evolved yet", out
    assert "autarky/research/relevance.py" in out, out

    code, out = await cli(None, "agents", "rollback", RELEVANCE_SCORER.name, **env)
    assert code == 1 and "nothing to roll back to" in out and first[:12] in out, out

    params = default_parameters(RELEVANCE_SCORER.name) | {"core_weight": 5.0}
    candidate = repo.create_candidate(
        first, "c1", "test-run", params, None, CandidateOrigin.MUTATION, "core_weight 5"
    )
    repo.promote(candidate.commit, "test", "better", 42.0, NOW)
    code, out = await cli(None, "agents", **env)
    rows = {row[0]: row for row in table_rows(out) if row[0]}
    assert rows[RELEVANCE_SCORER.name][1] == candidate.commit[:10] and "42" in rows[RELEVANCE_SCORER.name][5]

    code, out = await cli(None, "agents", "rollback", RELEVANCE_SCORER.name, "--reason", "worse", **env)
    assert code == 0, out
    assert f"{candidate.commit[:10]} → {first[:10]}" in out, out
    active = repo.active()
    assert active.commit == first and active.reason == "worse" and active.changed_by.startswith("cli")

    code, out = await cli(None, "agents", "rollback", RELEVANCE_SCORER.name, **env)
    assert code == 1 and "nothing to roll back to" in out, out

    code, out = await cli(None, "agents", "history", RELEVANCE_SCORER.name, **env)
    assert code == 0, out
    assert [row[1] for row in table_rows(out) if row[1]] == [first[:10], candidate.commit[:10], first[:10]]


async def test_evolve_unknown_agent_is_bad_input(tmp_path: Path) -> None:
    code, out = await cli(None, "evolve", "nope", **data_env(tmp_path))
    assert code == 2, out
    assert "no evolvable agent 'nope'" in out and all(name in out for name in AGENTS), out
    code, out = await cli(None, "evolve", RELEVANCE_SCORER.name, "--generations", "0", **data_env(tmp_path))
    assert code == 2, out


async def eventually_count(client: Client, query: str, expected: int) -> None:
    for _ in range(100):
        if (await client.count_workflows(query)).count == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query}: never {expected}")


async def test_evolve_refuses_a_second_run_of_an_agent(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    agent = "anomaly-detector"
    queue = f"cli-evolve-nobody-{uuid.uuid4().hex[:8]}"  # no worker: runs stay running
    environ = data_env(tmp_path, AUTARKY_TASK_QUEUE=queue, AUTARKY_RESEARCH_TASK_QUEUE=queue)
    running = f'WorkflowId STARTS_WITH "evolve/{agent}/" AND ExecutionStatus = "Running"'
    code, out = await cli(env, "evolve", agent, "--no-wait", **environ)
    assert code == 0, out
    started = out.split("started ", 1)[1].split(";", 1)[0]
    assert started.startswith(f"evolve/{agent}/") and "watch it at" in out, out
    n = int(started.rsplit("/", 1)[1])
    await eventually_count(client, running, 1)

    code, out = await cli(env, "evolve", agent, "--no-wait", **environ)
    assert code == 2 and f"{started} is evolving {agent} already" in out, out

    await client.get_workflow_handle(started).terminate("test over")
    await eventually_count(client, running, 0)
    code, out = await cli(env, "evolve", agent, "--no-wait", **environ)
    assert code == 0 and f"started evolve/{agent}/{n + 1};" in out, out
    await client.get_workflow_handle(f"evolve/{agent}/{n + 1}").terminate("test over")


@needs_bwrap
@needs_git
async def test_evolve_offline_runs_to_an_end(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    queue = f"cli-evolve-{uuid.uuid4().hex[:8]}"
    settings = AutarkySettings(data_dir=tmp_path, task_queue=queue, research_task_queue=queue)
    environ = data_env(tmp_path, AUTARKY_TASK_QUEUE=queue, AUTARKY_RESEARCH_TASK_QUEUE=queue)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[SelfModificationWorkflow],
        activities=selfmod_activities(settings, os.environ),
    )
    async with worker:
        # A threshold no candidate can clear: the run ends honestly "not promoted", never in the watch.
        code, out = await cli(
            env,
            "evolve",
            RELEVANCE_SCORER.name,
            "--offline",
            "--generations",
            "1",
            "--population",
            "2",
            "--threshold",
            "100",
            **environ,
        )
    assert code == 0, out
    assert f"started evolve/{RELEVANCE_SCORER.name}/" in out, out
    assert "generation 1/1" in out or "measuring the incumbent" in out, out
    assert "relevance-scorer: not promoted" in out and "search part" in out, out
    assert "candidates" in out and "sandbox runs" in out, out
    assert AgentRepository(tmp_path / "agents", RELEVANCE_SCORER.name).active().changed_by == "bootstrap"
