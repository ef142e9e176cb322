"""`autarky research run|list` and `autarky experiments` as a person runs them (subprocesses), against the
test server, with a worker of this test serving the research queue and local arXiv and GitHub servers."""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from autarky.client import AutarkyClient
from tests.research_servers import ArxivServer, GitHubServer
from tests.test_cli import cli, table_rows
from tests.test_research_cycle import (  # noqa: F401 (fixtures)
    OFF_TOPIC,
    ON_TOPIC,
    arxiv_server,
    github_server,
    make_settings,
)
from workers.registry import research_activities
from workflows.experiment import ExperimentWorkflow
from workflows.research import ResearchCycleWorkflow


async def test_research_run_list_and_experiments(
    env: WorkflowEnvironment,
    client: Client,
    tmp_path: Path,
    arxiv_server: ArxivServer,  # noqa: F811
    github_server: GitHubServer,  # noqa: F811
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = make_settings(tmp_path, arxiv_server, github_server).model_copy(
        update={"task_queue": f"cli-research-{suffix}", "research_task_queue": f"cli-research-act-{suffix}"}
    )
    environ = {
        "AUTARKY_DATA_DIR": str(tmp_path),
        "AUTARKY_TASK_QUEUE": settings.task_queue,
        "AUTARKY_RESEARCH_TASK_QUEUE": settings.research_task_queue,
    }
    code, out = await cli(env, "research", "list", **environ)
    assert code == 1 and "no research cycle has run" in out, out

    workflows = Worker(
        client, task_queue=settings.task_queue, workflows=[ResearchCycleWorkflow, ExperimentWorkflow]
    )
    activities = Worker(
        client, task_queue=settings.research_task_queue, activities=research_activities(settings, {})
    )
    async with workflows, activities:
        code, out = await cli(env, "research", "run", **environ)
        assert code == 0, out
        assert "completed; 6 new, 6 analysed by offline analyser (no LLM configured)" in out, out
        assert "experiments proposed: experiment-arxiv-" in out

        code, out = await cli(env, "research", "list", "--min-score", "0.7", **environ)
        assert code == 0, out
        titles = " ".join(row[3] for row in table_rows(out))
        assert ON_TOPIC[0][0][:40] in titles and OFF_TOPIC[0][0][:20] not in titles, out
        code, out = await cli(env, "research", "list", "--min-score", "0", **environ)
        assert len(table_rows(out)) == 6, out
        code, out = await cli(env, "research", "list", "--min-score", "2", **environ)
        assert code == 2 and "less than or equal to 1" in out, out

        code, out = await cli(env, "experiments", **environ)
        assert code == 0, out
        rows = table_rows(out)
        assert rows and all(row[0].startswith("experiment-") for row in rows), out

        # The client sees the cycle as `autarky status` does.
        last = await AutarkyClient(client, settings).last_research_cycle()
        assert last is not None and last.outcome is not None and last.outcome.analysed == 6
        for row in rows:
            await client.get_workflow_handle(row[0]).terminate("test over")
