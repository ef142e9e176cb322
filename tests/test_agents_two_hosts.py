"""Two hosts, one truth (issue 25): two self-modification workers with their own data directories share one
knowledge base. An offline evolution started and promoted on host A is what host B's
`active_agent_parameters` (the autopilot's read) and `autarky agents` on host B show; a rollback from host
B is what host A's read and its export of the promoted code (live_code.py) return then. The run's steps
after the snapshot all ran on host A's own queue."""

from __future__ import annotations

import shutil
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.selfmod.activities import SelfModActivities
from activities.selfmod.agent_store import AgentStore
from activities.selfmod.live_code import export_code, verify_code
from activities.selfmod.versions import AgentRepository
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.selfmod.types import ActiveAgentInput, SelfModifyInput, SelfModifyResult
from tests.test_cli import cli, table_rows
from tests.test_self_modify import AGENT, LIMITS, SOURCE, degrade
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("git") is None, reason="needs bubblewrap and git"
)


def host_settings(tmp_path: Path, name: str, shared_db: str) -> AutarkySettings:
    return AutarkySettings(
        data_dir=tmp_path / name,
        host_id=name,
        knowledge_base_url=shared_db,  # type: ignore[arg-type]
        llm=LlmSettings(provider="offline"),
    )


@pytest.mark.slow
async def test_a_promotion_on_host_a_is_seen_on_host_b_and_a_rollback_from_b_acts_on_a(
    client: Client, tmp_path: Path
) -> None:
    shared_db = f"sqlite:///{tmp_path / 'shared-knowledge.db'}"
    a, b = host_settings(tmp_path, "host-a", shared_db), host_settings(tmp_path, "host-b", shared_db)
    queue = f"two-hosts-{uuid.uuid4().hex[:8]}"
    _, incumbent = degrade(a)  # a release-24 style repository on host A: migrated into the store on first use

    async with AsyncExitStack() as running:
        for settings in (a, b):
            own = f"{queue}@{settings.host_id}"
            acts = selfmod_activities(settings, {}, host_task_queue=own)
            await running.enter_async_context(Worker(client, task_queue=own, activities=acts))
        # Only host A takes the shared queue while the run starts: the evolution is started there.
        acts_a = selfmod_activities(a, {}, host_task_queue=f"{queue}@host-a")
        await running.enter_async_context(
            Worker(client, task_queue=queue, workflows=[SelfModificationWorkflow], activities=acts_a)
        )
        handle = await client.start_workflow(
            SelfModificationWorkflow.run,
            SelfModifyInput(
                agent=AGENT,
                offline=True,
                generations=2,
                population=4,
                threshold=-1.0,  # about where the truth lives: the best on the search part is promoted
                watch_runs=1,
                watch_interval=timedelta(milliseconds=100),
                limits=LIMITS,
                activity_task_queue=queue,
            ),
            id=f"evolve/{AGENT}/two-hosts-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        result: SelfModifyResult = await handle.result()
        history = await handle.fetch_history()

    assert result.status == "promoted", result.message
    promoted = result.promoted_commit
    assert promoted and result.incumbent_commit == incumbent
    queues = [
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert queues[0] == queue and set(queues[1:]) == {f"{queue}@host-a"}, queues  # one host

    # Host B never ran a step of it, and has nothing of it on disk: what it reads is the store's.
    assert not (b.data_dir / "agents" / AGENT / "active.json").exists()
    read_b = await SelfModActivities(b, {}).active_agent_parameters(ActiveAgentInput(agent=AGENT))
    assert read_b is not None and read_b.commit == promoted and read_b.changed_by == handle.id
    store = AgentStore.at(shared_db)
    repo_a = AgentRepository(a.data_dir / "agents", AGENT, store)
    repo_b = AgentRepository(b.data_dir / "agents", AGENT, store)
    assert repo_b.blob_ids(promoted) == repo_a.blob_ids(promoted)  # fetched by hash: the same commit

    env_b = {"AUTARKY_DATA_DIR": str(b.data_dir), "AUTARKY_KNOWLEDGE_BASE_URL": shared_db}
    code, out = await cli(None, "agents", **env_b)
    assert code == 0, out
    rows = {row[0]: row for row in table_rows(out) if row[0]}
    assert rows[AGENT][1] == promoted[:10] and rows[AGENT][4].startswith("evolve/"), out

    code, out = await cli(None, "agents", "rollback", AGENT, "--reason", "worse here", **env_b)
    assert code == 0 and f"{promoted[:10]} → {incumbent[:10]}" in out, out

    read_a = await SelfModActivities(a, {}).active_agent_parameters(ActiveAgentInput(agent=AGENT))
    assert read_a is not None and read_a.commit == incumbent and read_a.reason == "worse here"
    tree, blobs = export_code(repo_a, read_a.commit, [SOURCE])
    verify_code(tree, blobs)
    assert (tree / SOURCE).read_text() == repo_b.read_file(incumbent, SOURCE)
    code, out = await cli(None, "agents", "history", AGENT, **env_b)
    assert [row[1] for row in table_rows(out) if row[1]][-2:] == [promoted[:10], incumbent[:10]], out
