"""Agent genesis (issue 30) on the real Temporal server with the real activities: the generated agent's
tests and benchmark run in the real sandbox (bubblewrap), the judge outside it, the approval gate, the
registration in the knowledge base, then an evolution of the new agent. The LLM path talks to a local
server speaking OpenAI's wire format."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.selfmod import genesis_registry
from activities.selfmod.genesis import GenesisActivities
from activities.selfmod.genesis_store import save
from activities.selfmod.shipped import PROJECT_ROOT
from activities.storage.handle import KnowledgeBaseHandle
from autarky.cli.main import app
from autarky.core.approval import ApprovalDecision, ApprovalRequest
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.selfmod import client as evo
from autarky.selfmod.agents import AGENTS, agent_spec
from autarky.selfmod.genesis import (
    SOURCE_SHOWN,
    GenesisSpecError,
    check_paths,
    parse_labelled_csv,
    parse_spec,
    registry,
)
from autarky.selfmod.genesis_templates import from_template, render_threshold
from autarky.selfmod.genesis_types import (
    GenerateInput,
    GenesisInput,
    GenesisResult,
    RegisterInput,
    genesis_workflow_id,
)
from autarky.selfmod.types import SandboxLimits
from tests.genesis_probe_workflow import DefaultsProbe
from tests.llm_servers import OpenAIServer, Reply, openai_completion
from tests.test_autopilot import eventually
from tests.test_cli import cli, table_rows
from workers.registry import selfmod_activities
from workflows.agent_genesis import AgentGenesisWorkflow, shown_code
from workflows.self_modify import SelfModificationWorkflow

# Wall time far above an idle run's: on busy CI every sandbox of every test worker shares two cores.
LIMITS = SandboxLimits(cpu_seconds=60, wall_seconds=180, memory_mib=2048)
SPEC = """
name = "{name}"
kind = "threshold"
purpose = "Alerts when the job queue's latency spikes far above its recent level."
metric_name = "queue latency (ms)"
alert_on = "high"
goal = 80
data = "latency.csv"
blocks = 20
generator = "{generator}"
"""


def latency_csv(rows: int = 1200, seed: int = 3) -> str:
    """Latency around 100 ms (σ 3 ms) with labelled spikes of +10 ms in 3 % of the rows: the template's
    defaults (alert at 4 spreads) catch few of them, an alert line nearer 2 spreads most (a real gain
    for the evolution to find)."""
    rng = random.Random(seed)
    lines = ["value,label"]
    for i in range(rows):
        spike = i > 20 and rng.random() < 0.03
        lines.append(f"{100 + rng.gauss(0, 3) + (10 if spike else 0):.3f},{int(spike)}")
    return "\n".join(lines) + "\n"


def genesis_input(name: str, generator: str = "template", queue: str = "") -> GenesisInput:
    request = parse_spec(SPEC.format(name=name, generator=generator))
    return GenesisInput(
        request=request, data=parse_labelled_csv(latency_csv()), limits=LIMITS, activity_task_queue=queue
    )


class genesis_stack:
    def __init__(
        self,
        client: Client,
        tmp_path: Path,
        llm: LlmSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = AutarkySettings(
            data_dir=tmp_path / "data", llm=llm or LlmSettings(provider="offline")
        )
        self.client, self.environ = client, environ or {}
        self.queue = f"genesis-{uuid.uuid4().hex[:8]}"

    async def __aenter__(self) -> genesis_stack:
        own = f"{self.queue}@test-host"
        acts = selfmod_activities(self.settings, self.environ, host_task_queue=own)
        self.worker = Worker(
            self.client,
            task_queue=self.queue,
            workflows=[AgentGenesisWorkflow, SelfModificationWorkflow],
            activities=acts,
        )
        self.host_worker = Worker(self.client, task_queue=own, activities=acts)
        await self.worker.__aenter__()
        await self.host_worker.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.host_worker.__aexit__(*exc)
        await self.worker.__aexit__(*exc)

    async def start(self, request: GenesisInput) -> WorkflowHandle:
        return await self.client.start_workflow(
            AgentGenesisWorkflow.run,
            request,
            id=genesis_workflow_id(request.request.name),
            task_queue=self.queue,
        )


async def pending_approval(handle: WorkflowHandle) -> list[ApprovalRequest]:
    for _ in range(600):  # the sandbox runs take a while on a busy machine; no timed assertion
        pending = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
        if pending:
            return pending
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            raise AssertionError(f"ended before asking: {await handle.result()}")
        await asyncio.sleep(0.5)
    raise AssertionError("no approval was asked for")


def approve(name: str) -> ApprovalDecision:
    return ApprovalDecision(approval_id=f"register-{name}", approver="tester", reason="looks right")


# ---------------------------------------------------------------------- bad specs


def test_a_bad_spec_names_the_field_to_fix(tmp_path: Path) -> None:
    with pytest.raises(GenesisSpecError, match="field goal"):
        parse_spec(
            SPEC.format(name="queue-latency", generator="template").replace("goal = 80", 'goal = "high"')
        )
    with pytest.raises(GenesisSpecError, match="field name"):
        parse_spec(SPEC.format(name="Queue Latency!", generator="template"))
    with pytest.raises(GenesisSpecError, match="unknown field 'treshold'"):
        parse_spec(SPEC.format(name="queue-latency", generator="template") + "treshold = 3\n")
    with pytest.raises(GenesisSpecError, match="field name: an agent 'anomaly-detector' exists already"):
        parse_spec(SPEC.format(name="anomaly-detector", generator="template"), taken=AGENTS)
    with pytest.raises(GenesisSpecError, match="line 3"):
        parse_labelled_csv("value,label\n1.0,0\nabc,1\n")
    # From the CLI: exit 2 and the field in the message, before anything is started.
    (tmp_path / "spec.toml").write_text(SPEC.format(name="queue-latency", generator="tmpl"))
    (tmp_path / "latency.csv").write_text(latency_csv())
    result = CliRunner().invoke(app, ["agents", "create", str(tmp_path / "spec.toml")])
    assert result.exit_code == 2, result.output
    assert "field generator" in result.output


def test_the_approval_shows_code_that_cannot_break_out_of_its_block() -> None:
    shown = shown_code('x = 1\n"""```\n# **not markdown**\n```"""\n')
    fence = shown.splitlines()[0].removesuffix("python")
    assert len(fence) == 4 and shown.endswith("\n" + fence)


async def test_a_name_whose_files_the_project_has_is_refused(tmp_path: Path) -> None:
    """A generated agent's files are served before the project's: a spec named `genesis` would shadow
    this very file (tests/test_agent_genesis.py). The activity refuses it, naming the field."""
    assert (PROJECT_ROOT / "tests/test_agent_genesis.py").is_file()
    clashing = parse_spec(SPEC.format(name="genesis", generator="template"))
    with pytest.raises(GenesisSpecError, match=r"field name: .*tests/test_agent_genesis\.py"):
        check_paths(clashing, lambda path: (PROJECT_ROOT / path).exists())
    check_paths(genesis_input("queue-fresh").request, lambda path: (PROJECT_ROOT / path).exists())

    acts = GenesisActivities(AutarkySettings(data_dir=tmp_path), {})
    data = parse_labelled_csv(latency_csv())
    with pytest.raises(ApplicationError, match=r"field name: .*tests/test_agent_store\.py") as raised:
        await ActivityEnvironment().run(
            acts.generate_agent,
            GenerateInput(
                request=parse_spec(SPEC.format(name="store", generator="template")),
                data=data,
                use_llm=False,
                run_id="genesis/store@1",
            ),
        )
    assert raised.value.non_retryable and raised.value.type == "BadAgent"


async def test_a_retried_registration_is_this_runs_own(tmp_path: Path) -> None:
    """The registration commits, then making the agent's version repository fails; Temporal retries the
    activity. The retry finds the row its own run wrote: registered (not "registered meanwhile"). Another
    run's registration of the same name still finds it taken."""
    name = f"queue-retry-{uuid.uuid4().hex[:4]}"
    settings = AutarkySettings(data_dir=tmp_path)
    acts = GenesisActivities(settings, {})
    agent = from_template(genesis_input(name).request, parse_labelled_csv(latency_csv()))
    attempt = RegisterInput(agent=agent, by="tester", run_id=f"genesis/{name}@aaaa1111")
    blocker = tmp_path / "agents" / name  # a file where its repository's directory goes: the first fails
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    with pytest.raises(Exception):  # noqa: B017 - whatever the failure, the row was committed first
        await ActivityEnvironment().run(acts.register_generated_agent, attempt)
    assert registry.get(name) is not None  # committed before the failure
    blocker.unlink()
    retried = await ActivityEnvironment().run(acts.register_generated_agent, attempt)
    assert not retried.already and retried.commit
    other = RegisterInput(agent=agent, by="someone else", run_id=f"genesis/{name}@bbbb2222")
    assert (await ActivityEnvironment().run(acts.register_generated_agent, other)).already


# ---------------------------------------------------------------------- end to end


@pytest.mark.slow
async def test_offline_genesis_from_the_cli_registers_after_approval_and_the_agent_evolves(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    """As a person: `autarky agents create SPEC.toml`, `autarky approve`, `autarky agents`, `autarky
    evolve NEW-AGENT --offline`, against a worker with the real activities and sandbox."""
    name = f"queue-latency-{uuid.uuid4().hex[:4]}"
    queue = f"cli-genesis-{uuid.uuid4().hex[:8]}"
    settings = AutarkySettings(data_dir=tmp_path, task_queue=queue, research_task_queue=queue)
    environ = {
        "AUTARKY_DATA_DIR": str(tmp_path),
        "AUTARKY_TASK_QUEUE": queue,
        "AUTARKY_RESEARCH_TASK_QUEUE": queue,
    }
    (tmp_path / "spec.toml").write_text(SPEC.format(name=name, generator="template"))
    (tmp_path / "latency.csv").write_text(latency_csv())
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[AgentGenesisWorkflow, SelfModificationWorkflow],
        activities=selfmod_activities(settings, os.environ),
    )
    async with worker:
        code, out = await cli(env, "agents", "create", str(tmp_path / "spec.toml"), "--no-wait", **environ)
        assert code == 0 and f"started genesis/{name}" in out, out
        handle = client.get_workflow_handle(genesis_workflow_id(name))
        [asked] = await pending_approval(handle)
        # Waiting: not listed, not evolvable, until a person approves.
        code, out = await cli(env, "agents", **environ)
        assert code == 0 and name not in out, out
        assert "```python" in asked.why and "class Detector" in asked.why
        assert "decision part" in asked.why and "tests passed in the sandbox" in asked.why
        code, out = await cli(
            env,
            "approve",
            f"register-{name}",
            "--workflow",
            handle.id,
            "--reason",
            "ok",
            "--approver",
            "erin",
            **environ,
        )
        assert code == 0, out
        result = GenesisResult.model_validate(await handle.result())
        assert result.status == "registered", result.message
        assert result.origin == "template" and 50.0 < result.figures["decision"] < 80.0  # its goal is 80

        code, out = await cli(env, "agents", **environ)
        rows = {row[0]: row for row in table_rows(out) if row and row[0]}
        assert code == 0 and name in rows, out
        assert rows[name][1] == result.commit[:10], out
        described = await handle.describe()
        assert described.search_attributes.get("AutarkyKind") == ["genesis"]
        assert described.search_attributes.get("AutarkyDecision") == ["registered"]

        # Evolvable like the declared agents: a full offline search, judged on the decision part. It
        # usually finds the planted gain (an alert line nearer 2 spreads) and promotes it; the search is
        # random (Temporal seeds it per run), so a run that finds too little is refused, honestly.
        code, out = await cli(
            env, "evolve", name, "--offline", "--generations", "3", "--population", "4", **environ
        )
        assert code == 0 and f"started evolve/{name}/" in out and "generation 3/3" in out, out
        pointer = evo.repository(settings, name).active()
        if "not promoted" in out:
            assert pointer.commit == result.commit, out  # refused: the registered version stays
        else:
            assert "promoted" in out, out
            assert pointer.parameters["z_half"] < 4.0 and pointer.metric is not None and pointer.metric > 80.0


@pytest.mark.slow
async def test_a_rejected_genesis_registers_nothing(client: Client, tmp_path: Path) -> None:
    name = f"queue-reject-{uuid.uuid4().hex[:4]}"
    async with genesis_stack(client, tmp_path) as stack:
        handle = await stack.start(genesis_input(name, queue=stack.queue))
        await pending_approval(handle)
        await handle.execute_update("reject", approve(name))
        result = GenesisResult.model_validate(await handle.result())
    assert result.status == "rejected"
    assert name not in {row.spec.name for row in evo.list_agents(stack.settings)}


def llm_settings(server: OpenAIServer) -> LlmSettings:
    return LlmSettings(
        provider="openai", openai_base_url=server.base_url, request_timeout=timedelta(seconds=10)
    )


@pytest.mark.slow
async def test_llm_genesis_uses_the_llms_module_with_the_templates_tests(
    client: Client, tmp_path: Path
) -> None:
    name = f"queue-llm-{uuid.uuid4().hex[:4]}"
    request = genesis_input(name, generator="llm").request
    # The LLM's module: the template's interface, a median-free detector of its own (mean and stdev).
    source = render_threshold(request)[0].replace(
        "centre = statistics.median(self.history)", "centre = statistics.fmean(self.history)  # LLM-written"
    )
    with OpenAIServer() as server:
        server.script(Reply(body=openai_completion(json.dumps({"summary": "mean-based", "source": source}))))
        async with genesis_stack(
            client, tmp_path, llm_settings(server), {"OPENAI_API_KEY": "sk-test"}
        ) as stack:
            handle = await stack.start(genesis_input(name, generator="llm", queue=stack.queue))
            [asked] = await pending_approval(handle)
            assert "LLM-written" in asked.why and "(llm)" in asked.subject
            await handle.execute_update("approve", approve(name))
            result = GenesisResult.model_validate(await handle.result())
    assert result.status == "registered" and result.origin == "llm", result.message
    prompt = json.dumps(server.requests[0].body)
    assert "class Detector" in prompt and "queue latency (ms)" in prompt
    assert "LLM-written" in registry.get(name).files[agent_spec(name).source_files[0]]


@pytest.mark.slow
async def test_an_llm_module_that_fails_its_tests_is_not_registered(client: Client, tmp_path: Path) -> None:
    name = f"queue-bad-{uuid.uuid4().hex[:4]}"
    request = genesis_input(name, generator="llm").request
    broken = render_threshold(request)[0].replace(
        "return min(max(score, 0.0), 1.0)", "return min(max(score, 0.0), 1.0) * 3.0"
    )
    with OpenAIServer() as server:
        server.script(Reply(body=openai_completion(json.dumps({"summary": "broken", "source": broken}))))
        async with genesis_stack(
            client, tmp_path, llm_settings(server), {"OPENAI_API_KEY": "sk-test"}
        ) as stack:
            handle = await stack.start(genesis_input(name, generator="llm", queue=stack.queue))
            result = GenesisResult.model_validate(await handle.result())
            asked = await handle.query("approvals", result_type=list[ApprovalRequest])
    assert result.status == "failed" and "tests" in result.message, result.message
    assert asked == []  # nobody was asked to register an agent that fails its tests
    assert registry.get(name) is None


async def test_a_workflow_finds_a_generated_agent_its_process_never_met(
    client: Client, tmp_path: Path
) -> None:
    """A worker process that has not loaded the registry since the agent was registered reads it from
    the workflow (the sandbox restricts what the knowledge base's driver calls)."""
    name = f"queue-cold-{uuid.uuid4().hex[:4]}"
    kb = KnowledgeBaseHandle(f"sqlite:///{tmp_path}/kb.db")
    request = genesis_input(name).request
    made = from_template(request, parse_labelled_csv(latency_csv())).model_copy(
        update={"registered_at": datetime.now(UTC)}
    )
    assert save(kb, made)
    genesis_registry.install(KnowledgeBaseHandle(f"sqlite:///{tmp_path}/kb.db"))  # a fresh engine
    registry._known.clear()  # as in a process that never met it
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[DefaultsProbe]):
        found = await client.execute_workflow(
            DefaultsProbe.run,
            name,
            id=f"probe-{name}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )
    assert found == made.defaults


async def test_an_llm_module_longer_than_the_approval_shows_is_refused(
    client: Client, tmp_path: Path
) -> None:
    """The approval shows SOURCE_SHOWN characters of the module; a person must not approve code past a
    cut, so a longer one fails before anyone is asked (and before the sandbox)."""
    name = f"queue-long-{uuid.uuid4().hex[:4]}"
    request = genesis_input(name, generator="llm").request
    source = render_threshold(request)[0] + "\n# an innocent-looking comment\n" * (SOURCE_SHOWN // 30)
    assert len(source) > SOURCE_SHOWN
    with OpenAIServer() as server:
        server.script(Reply(body=openai_completion(json.dumps({"summary": "long", "source": source}))))
        async with genesis_stack(
            client, tmp_path, llm_settings(server), {"OPENAI_API_KEY": "sk-test"}
        ) as stack:
            handle = await stack.start(genesis_input(name, generator="llm", queue=stack.queue))

            async def ended_or_asking() -> bool:
                asking = await handle.query("pending_approvals", result_type=list[ApprovalRequest])
                return bool(asking) or (await handle.describe()).status.name != "RUNNING"

            await eventually(ended_or_asking, timeout=600)
            asked = await handle.query("approvals", result_type=list[ApprovalRequest])
            assert asked == []  # nobody is asked to approve code they cannot see whole
            result = GenesisResult.model_validate(await handle.result())
    assert result.status == "failed", result.message
    assert f"more than the {SOURCE_SHOWN} the approval shows" in result.message, result.message
    assert registry.get(name) is None
    assert f"at most {SOURCE_SHOWN} characters" in json.dumps(server.requests[0].body)
