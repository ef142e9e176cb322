"""Replay: recorded histories must replay with today's workflow code (determinism).

`python -m tests.test_replay NAME [FILE]` records a fresh history into tests/histories/FILE.json. When a
workflow changes on purpose, guard the change with `workflow.patched()` and record a new history; the
histories kept are those of runs that may still be live, and docs/patches.md says when each goes (the
lifecycle of a patch: patched, deprecated, deleted).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.infra.scaling_requests import ScalingRequestActivities
from autarky.autopilot.types import AutopilotStatus
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.approval import ApprovalDecision, ApprovalRequest, ApprovalSignal
from autarky.core.settings import AutarkySettings
from autarky.models.types import UntestedVariant
from autarky.research.types import CycleInput, CycleOutcome
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.settings import ScalingSettings
from autarky.selfmod.agents import ANOMALY_DETECTOR, default_parameters
from autarky.selfmod.types import ActiveAgentInput, ActivePointer, AgentShortfall, ShortfallInput
from tests.fakes import FakeHost
from tests.replay_abtest import record_abtest_history, record_abtest_promotion_history
from tests.replay_pool import record_pool_watcher_history
from tests.replay_scaler import record_scaler_history
from tests.scaler_fakes import FakePool
from tests.test_autopilot import Harness, _first, actions, eventually, fast_settings, pending
from tests.test_patches import code_patches
from workflows.ab_test import ModelABTestWorkflow
from workflows.autopilot import AutopilotWorkflow
from workflows.autopilot_host import AutopilotHostWorkflow
from workflows.experiment import ExperimentWorkflow
from workflows.housekeeping import HousekeepingWorkflow
from workflows.research import ResearchCycleWorkflow
from workflows.scaling import ScalerWorkflow
from workflows.self_modify import SelfModificationWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record_autopilot_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """The first run of an autopilot: monitor, findings, an approval, executed actions, continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
    harness.workflow_id = workflow_id or harness.workflow_id
    async with harness.running(fast_settings(iterations_per_run=30)) as handle:
        first_run = (await handle.describe()).run_id
        request = (await eventually(lambda: pending(handle)))[0]
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=request.approval_id, approver="recorder", reason="replay test"),
            result_type=ApprovalRequest,
        )

        async def finished() -> bool:
            done = sum(1 for r in await actions(handle) if r.status.value == "succeeded") >= 3
            return done and (await handle.query("status", result_type=AutopilotStatus)).runs >= 1

        await eventually(finished)
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


async def record_reads_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """The autopilot reading other capabilities: a model variant never A/B tested gets its test, an agent
    short of its goal its evolution, the anomaly detector's promoted version is applied; besides, an
    approval, host remedies and continue-as-new."""
    started: list[str] = []

    @activity.defn(name="untested_model_variants")
    async def untested() -> list[UntestedVariant]:
        return [] if "start_abtest" in started else [UntestedVariant(slot="summaries", variant="b")]

    @activity.defn(name="agent_shortfalls")
    async def shortfalls(request: ShortfallInput) -> list[AgentShortfall]:
        agent = ANOMALY_DETECTOR.name
        return [AgentShortfall(agent=agent, commit="shipped", figure=50.0, goal=60.0, metric="nab_score")]

    @activity.defn(name="active_agent_parameters")
    async def active(request: ActiveAgentInput) -> ActivePointer | None:
        parameters = {**default_parameters(request.agent), "window": 256.0}
        promoted = datetime(2026, 12, 1, tzinfo=UTC)
        return ActivePointer(
            agent=request.agent, commit="promoted", parameters=parameters, changed_at=promoted, changed_by="r"
        )

    @activity.defn(name="start_model_abtest")
    async def start_abtest(request: ActionRequest) -> ActionResult:
        started.append(request.action_type)
        return ActionResult(success=True, improvement_measured=False, detail="test started")

    @activity.defn(name="start_agent_evolution")
    async def start_evolution(request: ActionRequest) -> ActionResult:
        started.append(request.action_type)
        return ActionResult(success=True, improvement_measured=False, detail="evolution started")

    harness = Harness(client, data_dir, FakeHost(disk=90.0, memory=90.0))
    harness.workflow_id = workflow_id or harness.workflow_id
    harness.main_activities += [untested, shortfalls, active, start_abtest, start_evolution]
    every = timedelta(milliseconds=200)
    settings = fast_settings(
        iterations_per_run=20,
        abtest_new_variants=True,
        evolved_agents=True,
        model_variant_check_interval=every,
        agent_version_check_interval=every,
        agent_goal_check_interval=every,
    )
    async with harness.running(settings) as handle:
        first_run = (await handle.describe()).run_id
        request = (await eventually(lambda: pending(handle)))[0]
        await handle.execute_update(
            "approve",
            ApprovalDecision(approval_id=request.approval_id, approver="recorder", reason="replay test"),
            result_type=ApprovalRequest,
        )

        async def finished() -> bool:
            done = sum(1 for r in await actions(handle) if r.status.value == "succeeded") >= 4
            status = await handle.query("status", result_type=AutopilotStatus)
            return done and set(started) == {"start_abtest", "evolve_agent"} and status.runs >= 1

        await eventually(finished, timeout=120)
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


@dataclass
class BrokenPool:
    """A pool restart that fails for good, so the recording holds a failed action."""

    @activity.defn(name="restart_worker_pool")
    async def restart_worker_pool(self, request: ActionRequest) -> ActionResult:
        raise ApplicationError("the pool's supervisor is unreachable", non_retryable=True)


async def record_round2_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """An approval that expires, one approved by signal whose action fails (in its own workflow), a child
    workflow action (prune_cache), host discovery and watchers reporting by signal, continue-as-new."""
    host = FakeHost(disk=90.0, memory=90.0)
    harness = Harness(client, data_dir, host)
    harness.pool_activities["test-host"] = [BrokenPool().restart_worker_pool]
    # The file's name is the id replay uses, and child workflow ids derive from it.
    harness.workflow_id = workflow_id or harness.workflow_id
    settings = fast_settings(
        iterations_per_run=12,
        approval_timeout=timedelta(seconds=1),
        rejection_snooze=timedelta(0),  # the expired remedy is asked for again at once
        action_cooldown=timedelta(0),
    )
    async with harness.running(settings) as handle:
        first_run = (await handle.describe()).run_id
        first = (await eventually(lambda: pending(handle)))[0]
        second = await eventually(
            lambda: _first(pending(handle), lambda ps: [p for p in ps if p.approval_id != first.approval_id])
        )
        handled = {first.approval_id}  # left alone: it expires
        remedy = second[0].subject.split()[0]  # its action type ("restart_worker_pool (risk 0.60)")

        async def approve(requests: list) -> None:
            for request in requests:
                if request.subject.split()[0] == remedy and request.approval_id not in handled:
                    handled.add(request.approval_id)
                    signal = ApprovalSignal(
                        approval_id=request.approval_id, approve=True, approver="recorder", reason="go"
                    )
                    await handle.signal("decide_approval", signal)

        await approve(second[:1])

        async def finished() -> bool:
            # A busy machine can let a 1 s approval expire before the signal lands: approve its next ask.
            await approve(await pending(handle))
            records = await actions(handle)
            failed = any(r.status.value == "failed" for r in records)
            child = any(r.decision.candidate.action_type == "prune_cache" and r.finished_at for r in records)
            return failed and child and (await handle.query("status", result_type=AutopilotStatus)).runs >= 1

        await eventually(finished, timeout=120)
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


async def record_scaling_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """Pool scaling on: a backlog on the pool's queue → pool_overloaded → scale_pool actions through the
    real scaler, continue-as-new."""
    host = FakeHost(cpu=95.0, pool_members=1, pool_backlog=25, pool_backlog_age_seconds=40)
    pool = FakePool(desired=1, host=host)
    harness = Harness(client, data_dir, host, host_id=f"replay-{uuid.uuid4().hex[:8]}")
    harness.workflow_id = workflow_id or harness.workflow_id
    settings = fast_settings(iterations_per_run=15, pool_scaling=True, pool_policy=SCALING_POLICY)
    product = AutarkySettings(
        task_queue=harness.task_queue,
        control_task_queue=harness.control_queue,
        host_id=next(iter(harness.hosts)),
        autopilot=settings,
        scaling=ScalingSettings(health_poll_interval=timedelta(milliseconds=200)),
    )
    harness.main_activities = [ScalingRequestActivities(product).request_scaling]
    harness.pool_activities[product.host_id] = [pool.read_pool, pool.set_pool]
    async with harness.running(settings) as handle:
        first_run = (await handle.describe()).run_id

        async def finished() -> bool:
            records = await actions(handle)
            scaled = any(r.decision.candidate.action_type == "scale_pool" and r.finished_at for r in records)
            return scaled and (await handle.query("status", result_type=AutopilotStatus)).runs >= 1

        await eventually(finished, timeout=120)
        await client.get_workflow_handle(f"scaler/local-pool/{product.host_id}").terminate("recorded")
        return await client.get_workflow_handle(harness.workflow_id, run_id=first_run).fetch_history()


async def record_research_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """A research cycle (offline analyser) where arXiv answers 503 and GitHub answers: one source failed,
    items analysed, experiments started as children, the digest written."""
    histories = await _research_histories(client, data_dir, workflow_id)
    return histories[0]


async def record_experiment_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """An experiment planned offline, then approved through the gate's update."""
    histories = await _research_histories(client, data_dir, None, experiment_history_id=workflow_id)
    return histories[1]


async def _research_histories(
    client: Client, data_dir: Path, cycle_id: str | None, experiment_history_id: str | None = None
) -> tuple[WorkflowHistory, WorkflowHistory]:
    from tests.research_servers import ArxivServer, GitHubServer
    from tests.test_research_cycle import github_repos, make_settings, on_topic_papers
    from workers.registry import research_activities

    queue = f"research-replay-{uuid.uuid4().hex[:8]}"
    with ArxivServer(on_topic_papers()) as arxiv, GitHubServer(github_repos(), limit=100) as github:
        arxiv.mode = "unavailable"
        settings = make_settings(data_dir, arxiv, github)
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[ResearchCycleWorkflow, ExperimentWorkflow],
            activities=research_activities(settings, {}),
        )
        async with worker:
            outcome = await client.execute_workflow(
                ResearchCycleWorkflow.run,
                CycleInput(trigger="recorder", source_attempts=1),
                id=cycle_id or f"research-replay-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                result_type=CycleOutcome,
            )
            assert outcome.experiments, outcome
            experiment = client.get_workflow_handle(outcome.experiments[0])
            waiting = await eventually(lambda: pending(experiment))
            await experiment.execute_update(
                "approve",
                ApprovalDecision(approval_id=waiting[0].approval_id, approver="recorder", reason="replay"),
                result_type=ApprovalRequest,
            )
            await experiment.result()
            for other in outcome.experiments[1:]:
                await client.get_workflow_handle(other).terminate("recorded")
            cycle_history = await client.get_workflow_handle(outcome.cycle_id).fetch_history()
            experiment_history = await experiment.fetch_history()
    if experiment_history_id:  # replay names a history by its file
        experiment_history = WorkflowHistory(experiment_history_id, experiment_history.events)
    return cycle_history, experiment_history


async def record_self_modify_history(
    client: Client, data_dir: Path, workflow_id: str | None = None
) -> WorkflowHistory:
    """An offline evolution of the relevance scorer from a degraded incumbent: candidates checked and
    measured in the sandbox, compared on the decision part, promoted, watched once (a timer, and since
    release 30 the live metric's counts before and after)."""
    from autarky.selfmod.types import SelfModifyInput
    from tests.test_self_modify import AGENT, LIMITS, make_stack

    async with make_stack(client, data_dir) as stack:
        handle = await client.start_workflow(
            SelfModificationWorkflow.run,
            SelfModifyInput(
                agent=AGENT,
                generations=2,
                population=4,
                offline=True,
                threshold=-1.0,  # about the history's shape: the best on the search part is promoted
                watch_runs=1,
                watch_interval=timedelta(milliseconds=100),
                watch_settle=timedelta(0),
                limits=LIMITS,
                activity_task_queue=stack.queue,
            ),
            id=f"evolve/{AGENT}/replay-{uuid.uuid4().hex[:6]}",
            task_queue=stack.queue,
        )
        await handle.result()
        history = await handle.fetch_history()
    if workflow_id:  # replay names a history by its file
        history = WorkflowHistory(workflow_id, history.events)
    return history


SCALING_POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=3,
    cooldown=timedelta(seconds=1),
    stabilisation_window=timedelta(seconds=1),
    warmup=timedelta(0),
    backlog_age_limit=timedelta(seconds=1),  # a change's effect is judged this long after it
    blast_radius=5.0,
)
RECORDERS = {
    "autopilot": record_autopilot_history,
    "autopilot-round2": record_round2_history,
    "autopilot-scaling": record_scaling_history,
    "autopilot-reads": record_reads_history,
    "scaler": record_scaler_history,
    "pool-watcher": record_pool_watcher_history,
    "research-cycle": record_research_history,
    "experiment": record_experiment_history,
    "abtest": record_abtest_history,
    "abtest-promotes": record_abtest_promotion_history,
    "self-modify": record_self_modify_history,
}
# Long-running loops must show timers and continue-as-new; a research cycle and an experiment have
# neither (an experiment waits on a condition with a timeout, its approval's expiry).
LOOP = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_TIMER_FIRED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}
# What each recording must hold to be worth replaying (beyond activities, timers and continue-as-new).
# Every autopilot history holds patch markers; which ones, and until when it is kept: docs/patches.md.
REQUIRED = {
    # The autopilot-round2 recorder (release 26, a deprecated marker of `autopilot-hosts-apart`): watchers
    # and actions are children reporting by signal (the failed action fails in its own workflow, not here).
    "autopilot-release26": {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
    },
    # The reads of other capabilities (an approval by update, an evolved agent's version for the watchers).
    "autopilot-reads-release26": {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
    },
    # Pool scaling (`autopilot-plan-on-new-size`: a settled scale_pool plans again at once, its marker):
    # the scale_pool action's outcome is told to the host's watcher (a signal it sends).
    "autopilot-scaling-release28": {
        EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
    },
    "scaler": {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    },
    "research-cycle": {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,  # the unavailable source
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    },
    "experiment": {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    },
}
# The same recorder under `research-round-2` (docs/patches.md): its marker, deprecated (release 27).
REQUIRED["research-cycle-release27"] = REQUIRED["research-cycle"] | {EventType.EVENT_TYPE_MARKER_RECORDED}
NOT_LOOPS = {"research-cycle", "research-cycle-release27", "experiment"}
NOT_LOOPS |= {"self-modify", "self-modify-release26"}
# The abtest recorder (its round-1 file, abtest.json, deleted in 28): a pause and a resume.
REQUIRED["abtest"] = {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED}
# The scaler recorder under release 27's and 28's patches (their markers; scaler-release27 deleted in 29).
REQUIRED["scaler-release28"] = REQUIRED["scaler"] | {EventType.EVENT_TYPE_MARKER_RECORDED}
# A host's watcher (`pool-scaling-round-2`): it hears of the pool's change by signal.
REQUIRED["pool-watcher"] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
}
# `abtest-round-2`'s marker, deprecated (abtest-round2, its plain marker, deleted in 29).
REQUIRED["abtest-release28"] = REQUIRED["abtest"] | {EventType.EVENT_TYPE_MARKER_RECORDED}
# Release 29's recordings: release 28's patches deprecated (their markers), the A/B test's none.
REQUIRED["scaler-release29"] = REQUIRED["scaler-release28"]
REQUIRED["autopilot-scaling-release29"] = REQUIRED["autopilot-scaling-release28"]
REQUIRED["pool-watcher-release29"] = REQUIRED["pool-watcher"]
REQUIRED["abtest-release29"] = REQUIRED["abtest"]
REQUIRED["self-modify"] = {EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_TIMER_FIRED}
# Under `selfmod-one-host` (release 26's deprecated marker): the steps after the snapshot on the host's
# own queue.
REQUIRED["self-modify-release26"] = REQUIRED["self-modify"] | {EventType.EVENT_TYPE_MARKER_RECORDED}
# Release 30: `selfmod-meaningful-bar` and `selfmod-live-watch` (their markers), the watch's live counts.
REQUIRED["self-modify-release30"] = REQUIRED["self-modify-release26"]
NOT_LOOPS.add("self-modify-release30")
# Release 30's A/B recording is the run that promotes (the last: no continue-as-new), through a guardrail
# margin scored with evidence (`abtest-margin-evidence`'s marker).
REQUIRED["abtest-release30"] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_TIMER_FIRED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
}
NOT_LOOPS.add("abtest-release30")
# The same run recorded with release 29's code: the margin's old path (point estimates), no marker.
REQUIRED["abtest-promotes-release29"] = REQUIRED["abtest-release30"] - {EventType.EVENT_TYPE_MARKER_RECORDED}
NOT_LOOPS.add("abtest-promotes-release29")


def replayer() -> Replayer:
    return Replayer(
        workflows=[
            AutopilotWorkflow,
            AutopilotHostWorkflow,
            HousekeepingWorkflow,
            ScalerWorkflow,
            ResearchCycleWorkflow,
            ExperimentWorkflow,
            ModelABTestWorkflow,
            SelfModificationWorkflow,
        ],
        data_converter=pydantic_data_converter,
    )


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    kinds = {event.event_type for event in history.events}
    # A real recording: activities, and for the loops timers and continue-as-new, and what REQUIRED says.
    assert (set() if path.stem in NOT_LOOPS else LOOP) | REQUIRED[path.stem] <= kinds
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def patch_markers(history: WorkflowHistory) -> dict[str, bool]:
    """The patch markers a history holds: id → whether it was recorded as deprecated."""
    markers = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                data = json.loads(details["patch-data"].payloads[0].data)
                markers[data["id"]] = data["deprecated"]
    return markers


def _recorded_with_deprecated_markers(path: Path) -> bool:
    """Recorded by a release that deprecated its patches: every deprecated patch's marker is deprecated."""
    deprecated = {i for i, states in code_patches().items() if states == {"deprecated"}}
    markers = patch_markers(WorkflowHistory.from_json(path.stem, path.read_text()))
    return any(markers.get(i) for i in deprecated) and all(markers[i] for i in deprecated if i in markers)


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(HISTORIES.glob("*.json")) if _recorded_with_deprecated_markers(p)],
    ids=lambda p: p.name,
)
async def test_deprecated_calls_can_be_deleted_for_runs_of_this_release(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Step 3 of docs/patches.md: once every run recorded the deprecated markers, the calls can go.
    monkeypatch.setattr(workflow, "deprecate_patch", lambda *args, **kwargs: None)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_is_a_recorded_history() -> None:
    assert (HISTORIES / "scaler.json").exists(), "record one with: python -m tests.test_replay scaler"
    assert list(HISTORIES.glob("autopilot*.json")), "record one with: python -m tests.test_replay autopilot"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECORDERS))
async def test_fresh_history_replays(client: Client, tmp_path: Path, name: str) -> None:
    history = await RECORDERS[name](client, tmp_path)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def _record_to_file(name: str, file_name: str | None = None) -> None:
    from temporalio.testing import WorkflowEnvironment

    from autarky.core import search_attributes as sa
    from autarky.core.temporal import temporal_binary

    with TemporaryDirectory() as tmp:
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()),
            data_converter=pydantic_data_converter,
            search_attributes=list(sa.ALL),
        ) as env:
            history = await RECORDERS[name](env.client, Path(tmp), file_name or name)
    out = HISTORIES / f"{file_name or name}.json"  # a new name keeps the history of older code
    out.write_text(history.to_json())
    print(f"wrote {out} ({len(history.events)} events)", file=sys.stderr)


if __name__ == "__main__":
    # python -m tests.test_replay [RECORDER [FILE_NAME]]
    asyncio.run(_record_to_file(*(sys.argv[1:3] or ["autopilot"])))
