"""SelfModificationWorkflow end to end on the real Temporal server, with the real activities: real sandbox
runs (bubblewrap), the real judge outside the sandbox, the real version repository. The LLM path talks to a
local server speaking OpenAI's wire format.

The relevance scorer is the agent here (its benchmark takes well under a second); each test starts from a
degraded incumbent (parameters that judge almost nothing relevant), so that a real improvement exists.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer, Worker

from activities.research.offline_analyser import base_label
from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities, safe_name
from activities.selfmod.versions import AgentRepository
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from autarky.core.approval import ApprovalDecision
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.research.items import OFFLINE_MODEL, AnalysisIn, ExperimentUpdate, ItemIn
from autarky.selfmod.agents import RELEVANCE_SCORER, default_parameters
from autarky.selfmod.types import (
    ActivePointer,
    CandidateOrigin,
    MeasureInput,
    PromoteInput,
    SandboxLimits,
    SelfModifyInput,
    SelfModifyResult,
)
from tests.llm_servers import OpenAIServer, Reply, openai_completion
from tests.test_autopilot import eventually
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow

AGENT = RELEVANCE_SCORER.name
SOURCE = RELEVANCE_SCORER.source_files[0]
DEGRADED = {**default_parameters(AGENT), "half": 12.0, "steepness": 6.0}
# Wall time far above an idle run's: on busy CI every sandbox of every test worker shares two cores.
LIMITS = SandboxLimits(cpu_seconds=60, wall_seconds=180, memory_mib=2048)
LATE_REPORT = timedelta(seconds=5)


@dataclass
class Stack:
    client: Client
    settings: AutarkySettings
    queue: str
    repo: AgentRepository
    incumbent: str

    async def evolve(self, **fields: object) -> WorkflowHandle:
        defaults: dict[str, object] = {"limits": LIMITS, "watch_interval": timedelta(milliseconds=100)}
        request = SelfModifyInput(
            agent=AGENT,
            activity_task_queue=self.queue,
            **{**defaults, **fields},  # type: ignore[arg-type]
        )
        return await self.client.start_workflow(
            SelfModificationWorkflow.run,
            request,
            id=f"evolve/{AGENT}/{uuid.uuid4().hex[:6]}",
            task_queue=self.queue,
        )

    def run_dir(self, handle: WorkflowHandle) -> Path:
        """The run's storage: named by workflow id and run (a reused id never meets an old run's)."""
        runs = self.settings.data_dir / "agents" / AGENT / "runs"
        [found] = runs.glob(f"{safe_name(handle.id)}-*")
        return found


def degrade(settings: AutarkySettings) -> tuple[AgentRepository, str]:
    """Bootstrap the agent's repository and make a poor version the active one."""
    repo = AgentRepository(settings.data_dir / "agents", AGENT)
    now = datetime.now(UTC)
    repo.ensure({SOURCE: (PROJECT_ROOT / SOURCE).read_text()}, default_parameters(AGENT), now)
    poor = repo.create_candidate(
        repo.active().commit, "poor", "setup", DEGRADED, None, CandidateOrigin.MUTATION, "degraded"
    )
    repo.promote(poor.commit, "test", "a poor incumbent", None, now)
    return repo, poor.commit


@pytest.fixture
async def stack(client: Client, tmp_path: Path) -> AsyncIterator[Stack]:
    async with make_stack(client, tmp_path) as s:
        yield s


class make_stack:
    def __init__(
        self,
        client: Client,
        tmp_path: Path,
        llm: LlmSettings | None = None,
        environ: Mapping[str, str] | None = None,
        extra: list | None = None,
    ) -> None:
        self.settings = AutarkySettings(
            data_dir=tmp_path / "data", llm=llm or LlmSettings(provider="offline")
        )
        self.client, self.environ, self.extra = client, environ or {}, extra or []

    async def __aenter__(self) -> Stack:
        queue = f"selfmod-{uuid.uuid4().hex[:8]}"
        # As a full worker: the shared queue, and this host's own, where a run's later steps go.
        own = f"{queue}@test-host"
        acts = selfmod_activities(self.settings, self.environ, host_task_queue=own)
        replaced = {getattr(a, "__temporal_activity_definition").name for a in self.extra}
        acts = [a for a in acts if getattr(a, "__temporal_activity_definition").name not in replaced]
        self.worker = Worker(
            self.client,
            task_queue=queue,
            workflows=[SelfModificationWorkflow],
            activities=[*acts, *self.extra],
        )
        self.host_worker = Worker(self.client, task_queue=own, activities=[*acts, *self.extra])
        await self.worker.__aenter__()
        await self.host_worker.__aenter__()
        repo, incumbent = degrade(self.settings)
        return Stack(self.client, self.settings, queue, repo, incumbent)

    async def __aexit__(self, *exc: object) -> None:
        await self.host_worker.__aexit__(*exc)
        await self.worker.__aexit__(*exc)


@pytest.mark.slow
async def test_offline_evolution_promotes_a_real_improvement_judged_on_unseen_data(stack: Stack) -> None:
    handle = await stack.evolve(offline=True, generations=4, population=4, watch_runs=1)
    result: SelfModifyResult = await handle.result()

    assert result.status == "promoted", result.message
    assert result.baseline_search is not None and result.best_search is not None
    assert result.best_search > result.baseline_search
    # Decided on the decision part, which the search never measured.
    assert result.improvement is not None and result.improvement.low >= RELEVANCE_SCORER.threshold
    assert result.best_decision is not None and result.baseline_decision is not None
    assert result.best_decision > result.baseline_decision
    pointer = stack.repo.active()
    assert pointer.commit == result.promoted_commit != stack.incumbent
    assert pointer.previous == stack.incumbent
    assert pointer.parameters != DEGRADED and not pointer.code_changed
    assert result.sandbox_runs > result.candidates  # tests and benchmarks, each in the sandbox
    described = await handle.describe()
    assert described.search_attributes.get("AutarkyDecision") == ["promoted"]
    assert described.search_attributes.get("AutarkyAgent") == [AGENT]


@pytest.mark.slow
async def test_a_promoted_version_whose_live_metric_regresses_is_rolled_back(
    client: Client, tmp_path: Path
) -> None:
    """Issue 30, item 2: the watch reads the live metric (the person's verdicts on the research items the
    scorer's version called relevant), not the benchmark, which never changes.

    The worker reports the promotion late (a busy host): the product already uses the new version, and the
    verdicts on its calls in that gap count (CI once saw "after 0/0" when the watch began at the workflow's
    next task instead of when the version became active)."""
    settings = AutarkySettings(data_dir=tmp_path / "data", llm=LlmSettings(provider="offline"))
    real = SelfModActivities(settings, {}, KnowledgeBaseHandle(settings.knowledge_db_url))

    @activity.defn(name="promote_version")
    async def promote_reported_late(request: PromoteInput) -> ActivePointer:
        pointer = await real.promote_version(request)
        await asyncio.sleep(LATE_REPORT.total_seconds())
        return pointer

    async with make_stack(client, tmp_path, extra=[promote_reported_late]) as stack:
        kb = KnowledgeBaseHandle(stack.settings.knowledge_db_url).get()
        threshold = stack.settings.research.experiment_threshold
        # Before: the person approved 30 of the 35 items the incumbent sent on.
        _verdicts(kb, base_label(stack.incumbent), threshold, approved=30, rejected=5)
        # No threshold: this test is about the watch, not about how sure the promotion was.
        handle = await stack.evolve(
            offline=True,
            generations=2,
            population=4,
            threshold=-1.0,
            watch_runs=60,
            watch_interval=timedelta(seconds=1),
            watch_settle=timedelta(0),
            watch_baseline=timedelta(hours=1),
        )
        await eventually(lambda: _promoted(stack), timeout=240)
        # After, while the worker has not reported yet: the new version's calls are mostly rejected.
        _verdicts(kb, base_label(stack.repo.active().commit), threshold, approved=6, rejected=24)
        result: SelfModifyResult = await handle.result()

    assert result.status == "rolled_back", (result.message, result.watch)
    assert "live watch" in result.message and "6/30" in result.message and "30/35" in result.message
    assert stack.repo.active().commit == stack.incumbent


async def _promoted(stack: Stack) -> bool:
    return stack.repo.active().commit != stack.incumbent


def _verdicts(kb: KnowledgeBase, label: str, threshold: float, approved: int, rejected: int) -> None:
    """Items the offline analyser's version `label` called relevant, each with the person's verdict on the
    experiment it started, written as the research cycle and the experiment workflow write them."""
    for state in ["approved"] * approved + ["rejected"] * rejected:
        item = kb.upsert_item(
            ItemIn(kind="paper", source="arxiv", source_id=uuid.uuid4().hex[:12], title=f"item {state}")
        ).item_id
        kb.record_analysis(
            AnalysisIn(
                item_id=item,
                provider=OFFLINE_MODEL,
                model=label,
                prompt_version="research-1",
                score=min(1.0, threshold + 0.1),
            )
        )
        workflow_id = f"experiment/{item}"
        kb.create_or_get_experiment(workflow_id, item)
        kb.update_experiment(ExperimentUpdate(workflow_id=workflow_id, state=state))  # type: ignore[arg-type]


def patch_of(old: str, new: str) -> str:
    text = (PROJECT_ROOT / SOURCE).read_text()
    assert old in text
    changed = text.replace(old, new, 1)
    lines = difflib.unified_diff(
        text.splitlines(keepends=True), changed.splitlines(keepends=True), f"a/{SOURCE}", f"b/{SOURCE}"
    )
    return "".join(lines)


# The LLM's patch: the saturation ignores the (degraded) parameters and uses the shipped constants.
GOOD_PATCH = patch_of(
    "    n = params.steepness\n    return x**n / (x**n + params.half**n)",
    "    n = STEEPNESS  # the tuned constants: the parameters were set too strictly\n"
    "    return x**n / (x**n + HALF**n)",
)
# A patch that hangs the scorer: its tests run into the sandbox's limits.
HANGING_PATCH = patch_of(
    "    if x <= 0:\n        return 0.0\n", "    while x <= 0 or x > 0:\n        x += 0.0\n"
)


def llm_stack(client: Client, tmp_path: Path, server: OpenAIServer) -> make_stack:
    llm = LlmSettings(
        provider="openai", openai_base_url=server.base_url, request_timeout=timedelta(seconds=10)
    )
    return make_stack(client, tmp_path, llm=llm, environ={"OPENAI_API_KEY": "sk-test-not-real"})


def proposal(diff: str, summary: str) -> Reply:
    return Reply(body=openai_completion(json.dumps({"summary": summary, "diff": diff})))


@pytest.mark.slow
async def test_llm_patch_is_sandbox_tested_approved_and_promoted(client: Client, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script(
            proposal(GOOD_PATCH, "use the tuned saturation constants"),
            proposal(patch_of("import re\n", "import re\nimport socket\n"), "a forbidden import"),
        )
        async with llm_stack(client, tmp_path, server) as stack:
            handle = await stack.evolve(generations=1, population=2, watch_runs=0)
            approval = await wait_for_pending(handle)
            assert approval["subject"].startswith(f"promote {AGENT}")
            assert "autarky approvals --diff" in approval["why"] and "decision part" in approval["why"]
            assert "+    n = STEEPNESS" in approval["why"]  # the patch itself, for the person deciding
            await handle.execute_update(
                "approve", ApprovalDecision(approval_id=approval["approval_id"], approver="ann", reason="ok")
            )
            result: SelfModifyResult = await handle.result()

    assert result.status == "promoted", result.message
    assert result.failed_candidates == 1  # the forbidden import: refused by the static check
    assert stack.repo.active().code_changed  # the research analyser will load this version's code
    version = stack.repo.version(stack.repo.active().commit)
    assert "the tuned constants" in stack.repo.read_file(version.commit, SOURCE)
    assert (
        "the relevance-scorer" in server.requests[0].body["messages"][-1]["content"]
        or SOURCE in (server.requests[0].body["messages"][-1]["content"])
    )


@pytest.mark.slow
async def test_a_candidate_failing_in_the_sandbox_is_never_benchmarked(
    client: Client, tmp_path: Path
) -> None:
    with OpenAIServer() as server:
        server.script(proposal(HANGING_PATCH, "a scorer that never returns"))
        async with llm_stack(client, tmp_path, server) as stack:
            stack_limits = SandboxLimits(cpu_seconds=5, wall_seconds=15)
            handle = await stack.evolve(generations=1, population=1, watch_runs=0, limits=stack_limits)
            result: SelfModifyResult = await handle.result()

    assert result.status == "not_promoted"
    assert result.failed_candidates == 1
    assert result.promoted_commit is None
    assert stack.repo.active().commit == stack.incumbent
    run_dir = stack.run_dir(handle)
    log = (run_dir / "g1p1-test.log").read_text()
    assert "limit" in log
    # Measured: only the incumbent's baseline; the failed candidate never reached a benchmark.
    assert sorted(p.name for p in run_dir.glob("*-search.json")) == ["baseline-search.json"]


@pytest.mark.slow
async def test_with_todays_budget_spent_the_run_evolves_offline_and_pays_nothing(
    client: Client, tmp_path: Path
) -> None:
    """Self-modification's LLM calls count against the same daily budget as research (issue 26, item 8):
    with nothing left today the gateway refuses before any request, and the run evolves parameters."""
    with OpenAIServer() as server:
        llm = LlmSettings(
            provider="openai",
            openai_base_url=server.base_url,
            request_timeout=timedelta(seconds=10),
            budget_per_day_usd=0.0,
        )
        environ = {"OPENAI_API_KEY": "sk-test-not-real"}
        async with make_stack(client, tmp_path, llm=llm, environ=environ) as stack:
            handle = await stack.evolve(generations=1, population=2, watch_runs=0)
            result: SelfModifyResult = await handle.result()
        assert server.requests == []  # refused before any call: nothing paid
    assert result.status in ("promoted", "not_promoted"), result.message
    assert result.candidates >= 1  # the offline mutations were measured instead


async def wait_for_pending(handle: WorkflowHandle) -> dict:
    import asyncio

    for _ in range(600):
        pending = await handle.query("pending_approvals")
        if pending:
            first = pending[0]
            return first if isinstance(first, dict) else first.model_dump()
        await asyncio.sleep(0.2)
    raise AssertionError("no approval was requested")


EVIL_OUTPUTS = {
    "fifo": "os.remove('outputs.json'); os.mkfifo('outputs.json')",
    "nested json": "open('outputs.json', 'w').write('[' * 200000)",
    "symlink to the host": "os.remove('outputs.json'); os.symlink('/etc/passwd', 'outputs.json')",
    "wrong shape": "open('outputs.json', 'w').write('{\"scores\": {\"x\": 2}}')",
}
KEPT_BY_THE_MOUNT = {"fifo", "symlink to the host"}


@pytest.mark.parametrize("how", sorted(EVIL_OUTPUTS))
async def test_outputs_that_attack_the_judge_fail_the_candidate_not_the_worker(
    tmp_path: Path, how: str
) -> None:
    """A candidate's code replaces the harness's outputs just before the process exits."""
    settings = AutarkySettings(data_dir=tmp_path / "data")
    repo, incumbent = degrade(settings)
    evil = (
        "import atexit\nimport os\n\n\ndef _tamper() -> None:\n"
        f"    {EVIL_OUTPUTS[how]}\n\n\natexit.register(_tamper)\n"
    )
    patch = patch_of("import re\n", f"import re\n{evil}")
    candidate = repo.create_candidate(
        incumbent, "evil", "judge-test", DEGRADED, patch, CandidateOrigin.LLM, how
    )
    acts = SelfModActivities(settings)
    measured = await acts.measure(
        MeasureInput(agent=AGENT, run_id="judge-test", part="search", commits=[incumbent, candidate.commit])
    )
    assert incumbent in measured.figures  # the incumbent is judged as usual
    if how in KEPT_BY_THE_MOUNT:
        # The declared output is a bind mount the candidate can neither remove nor replace: the tamper
        # fails, and the harness's own outputs are judged (the reader's refusal of links and FIFOs has its
        # own test in tests/test_sandbox_outputs.py).
        assert candidate.commit in measured.figures, measured.failures
        return
    assert candidate.commit not in measured.figures
    assert "benchmark outputs rejected" in measured.failures[candidate.commit]


@pytest.mark.slow
async def test_a_version_changed_while_waiting_for_approval_is_not_overwritten(
    client: Client, tmp_path: Path
) -> None:
    with OpenAIServer() as server:
        server.script(proposal(GOOD_PATCH, "use the tuned saturation constants"))
        async with llm_stack(client, tmp_path, server) as stack:
            handle = await stack.evolve(generations=1, population=1, watch_runs=0)
            approval = await wait_for_pending(handle)
            # Meanwhile a person promotes another version by hand.
            other = stack.repo.create_candidate(
                stack.incumbent,
                "by-hand",
                "manual",
                default_parameters(AGENT),
                None,
                CandidateOrigin.MUTATION,
                "x",
            )
            stack.repo.promote(other.commit, "cli:ann", "by hand", None, datetime.now(UTC))
            await handle.execute_update(
                "approve", ApprovalDecision(approval_id=approval["approval_id"], approver="ann", reason="ok")
            )
            result: SelfModifyResult = await handle.result()

    assert result.status == "not_promoted" and "active version is now" in result.message
    assert stack.repo.active().commit == other.commit


async def test_without_bubblewrap_the_run_fails_saying_how_to_install_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    handle = await stack.evolve(offline=True, generations=1, population=1, watch_runs=0)
    result: SelfModifyResult = await handle.result()

    assert result.status == "failed"
    assert "apt-get install bubblewrap" in result.message
    described = await handle.describe()
    assert described.search_attributes.get("AutarkyDecision") == ["failed"]
    assert stack.repo.active().commit == stack.incumbent


async def test_an_incumbent_written_before_a_knob_existed_evolves_with_the_knobs_shipped_value(
    client: Client, tmp_path: Path
) -> None:
    # Release 29 replaced the anomaly detector's `suppression` by two new knobs: versions written before
    # lack them. Their evolution used to fail its workflow task for good ("parent has no value for …").
    async with make_stack(client, tmp_path) as stack:
        old = {k: v for k, v in DEGRADED.items() if k != "half"}
        version = stack.repo.create_candidate(
            stack.incumbent, "old", "setup", old, None, CandidateOrigin.MUTATION, "before `half` existed"
        )
        stack.repo.promote(version.commit, "test", "a version of an older release", None, datetime.now(UTC))
        handle = await stack.evolve(offline=True, generations=1, population=2, watch_runs=1)
        result: SelfModifyResult = await asyncio.wait_for(handle.result(), timeout=240)
    assert result.candidates >= 1 and result.status in {"promoted", "not_promoted"}, result.message


@pytest.mark.slow
@pytest.mark.parametrize("search", ["archive", "cma"])
async def test_the_archive_and_cma_searches_evolve_and_replay(
    client: Client, tmp_path: Path, search: str
) -> None:
    """Issue 30, item 8: parameter children from a MAP-Elites archive (score and novelty) or from CMA-ES over
    every measured point, inside the workflow (deterministic: the history replays)."""
    async with make_stack(client, tmp_path) as stack:
        handle = await stack.evolve(offline=True, generations=2, population=3, watch_runs=0, search=search)
        result: SelfModifyResult = await handle.result()
        history = await handle.fetch_history()
    assert result.status in ("promoted", "not_promoted"), result.message
    assert result.candidates >= 4 and [g.generation for g in result.generations] == [1, 2]
    # From the degraded incumbent, each search finds something better on the search part.
    assert result.best_search is not None and result.baseline_search is not None
    assert result.best_search > result.baseline_search
    await Replayer(
        workflows=[SelfModificationWorkflow], data_converter=client.data_converter
    ).replay_workflow(history)
