"""Every activity a workflow schedules runs somewhere, with the types the workflow expects.

Workflows schedule typed stubs (`@activity.defn` functions in the capabilities' types modules, which keep
the activities' I/O libraries out of workflows), the action catalogue's names, and the odd name still
passed as a string. Each must be registered on the worker of the queue the workflows send it to
(workers/registry.py, built with everything enabled), and a stub must take and return exactly what its
implementation does, so the two cannot drift.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, get_origin

import pytest
from temporalio import activity, workflow

from activities.infra.worker_pool import LocalWorkerPool
from autarky.autopilot.actions import ACTIONS, QueueRole, Runner
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.scaling.settings import ScalableResource, ScalingSettings
from workers import registry

ROOT = Path(__file__).resolve().parents[1]
STARTS_ACTIVITY = {"execute_activity", "start_activity", "execute_local_activity", "start_local_activity"}
STARTS_CHILD = {"execute_child_workflow", "start_child_workflow"}
# Where the stubs are declared today: the discovery below must find at least these.
STUB_MODULES = {
    "autarky.autopilot.types",
    "autarky.core.hosts",
    "autarky.models.types",
    "autarky.research.types",
    "autarky.scaling.types",
    "autarky.selfmod.types",
    "autarky.selfmod.genesis_types",
}

Definition = activity._Definition
# The research queue (`research_task_queue`): full workers only; no QueueRole, the autopilot sends no action
# there.
RESEARCH = "research"
MAIN, HOST, CONTROL = QueueRole.MAIN, QueueRole.HOST, QueueRole.CONTROL

# The queue each stub is sent to, from the `task_queue=` of the workflows scheduling it. A new stub must be
# added here, with where it runs.
ROUTES: dict[str, QueueRole | str] = {
    # The autopilot's Monitor (workflows/autopilot_reads.py) and housekeeping: the host's own queue
    # (`host_queue(task_queue, host)`).
    "probe_host": HOST,
    "probe_network": HOST,
    "prune_cache": HOST,
    # Pollers of the shared queue are the hosts: asked on the workflow's own (main) queue.
    "discover_hosts": MAIN,
    # The scaler (workflows/scaling.py, `provider_task_queue` from autarky/scaling/scalers.py): the local
    # pool on its host's control queue, AWS on the main queue.
    "read_capacity_local_pool": CONTROL,
    "set_capacity_local_pool": CONTROL,
    "read_capacity_aws": MAIN,
    "set_capacity_aws": MAIN,
    # The autopilot's periodic reads (`on_research_queue`) and the research cycle, experiment, A/B test and
    # self-modification workflows (their `activity_task_queue`, set to `research_task_queue`).
    "untested_model_variants": RESEARCH,
    "active_agent_parameters": RESEARCH,
    "agent_shortfalls": RESEARCH,
    "live_counts": RESEARCH,  # the self-modification watch (its run's host queue serves it too)
    **dict.fromkeys(
        [
            "open_research_cycle",
            "gather_source",
            "count_unanalysed_items",
            "unanalysed_items",
            "analyse_item",
            "record_analysis_failure",
            "experiment_candidates",
            "write_research_digest",
            "close_research_cycle",
        ],
        RESEARCH,
    ),
    **dict.fromkeys(["open_experiment", "plan_experiment", "update_experiment", "start_evolution"], RESEARCH),
    **dict.fromkeys(
        [
            "describe_model_slot",
            "set_model_split",
            "promote_model_variant",
            "restore_model_incumbent",
            "model_arm_stats",
            "evaluate_offline_batch",
            "renew_model_split",
            "model_window_stats",
            "evaluate_offline_paired",
            "plan_model_abtest",
        ],
        RESEARCH,
    ),
    **dict.fromkeys(
        [
            "snapshot_agent",
            "make_candidates",
            "propose_patches",
            "check_candidate",
            "measure",
            "compare",
            "review_promotion",
            "promote_version",
            "rollback_version",
        ],
        RESEARCH,
    ),
    # Agent genesis (workflows/agent_genesis.py): the research queue, like an evolution's first step.
    **dict.fromkeys(["generate_agent", "try_generated_agent", "register_generated_agent"], RESEARCH),
}


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> dict[QueueRole | str, list[Definition]]:
    """What each kind of worker registers, with AWS resources configured (the AWS provider too)."""
    data_dir = tmp_path_factory.mktemp("autarky")
    settings = AutarkySettings(
        data_dir=data_dir, scaling=ScalingSettings(resources=[ScalableResource(resource="aws-asg/web")])
    )
    built: dict[QueueRole | str, list[Callable[..., Any]]] = {
        QueueRole.MAIN: registry.main_activities(settings),
        QueueRole.HOST: registry.host_activities(settings),
        QueueRole.CONTROL: registry.control_activities(LocalWorkerPool(data_dir), settings),
        RESEARCH: registry.research_activities(settings, {}),
    }
    return {queue: [Definition.must_from_callable(fn) for fn in fns] for queue, fns in built.items()}


@pytest.fixture(scope="module")
def registered(queues: dict[QueueRole | str, list[Definition]]) -> dict[str, list[Definition]]:
    """Activity name → its registrations (one activity may serve several queues)."""
    by_name: dict[str, list[Definition]] = {}
    for definitions in queues.values():
        for defn in definitions:
            assert defn.name is not None, f"a dynamic activity is registered: {defn.fn}"
            by_name.setdefault(defn.name, []).append(defn)
    return by_name


def workflow_names() -> set[str]:
    return {workflow._Definition.must_from_class(cls).name or "" for cls in registry.WORKFLOWS}


def stub_modules() -> list[ModuleType]:
    """The autarky modules declaring activities (only stubs live in autarky/; implementations are in
    activities/)."""
    names = []
    for path in sorted((ROOT / "autarky").rglob("*.py")):
        if "@activity.defn" in path.read_text():
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    missing = STUB_MODULES - set(names)
    assert not missing, f"no activity stubs found in {sorted(missing)}"
    return [importlib.import_module(name) for name in names]


def stubs() -> list[tuple[str, Definition]]:
    """(module, definition) of every stub: module-level functions carrying an activity definition."""
    found = []
    for module in stub_modules():
        for value in vars(module).values():
            defn = Definition.from_callable(value) if callable(value) else None
            if defn is not None and getattr(value, "__module__", None) == module.__name__:
                found.append((module.__name__, defn))
    return found


def _signature(defn: Definition) -> str:
    def name(hint: object) -> str:  # `ArmsInput`, `list[autarky.models.types.ArmStats]`
        return hint.__qualname__ if isinstance(hint, type) and get_origin(hint) is None else str(hint)

    return f"({', '.join(name(t) for t in defn.arg_types or [])}) -> {name(defn.ret_type)}"


def test_every_stub_is_registered_on_some_worker(registered: dict[str, list[Definition]]) -> None:
    found = stubs()
    assert len(found) >= 30, f"only {len(found)} activity stubs found"
    for module, stub in found:
        assert stub.name, f"{module}.{stub.fn.__name__} is a dynamic activity stub"
        # Workflows show the function's name in summaries; it must say which activity runs.
        assert stub.fn.__name__ == stub.name, f"{module}.{stub.fn.__name__} stubs the activity {stub.name!r}"
        assert stub.name in registered, (
            f"activity {stub.name!r} (stub in {module}) is registered on no worker (workers/registry.py)"
        )
        for impl in registered[stub.name]:
            assert getattr(impl.fn, "__func__", impl.fn) is not stub.fn, (
                f"a worker registers the stub of {stub.name!r} from {module}, not its implementation"
            )


def test_every_stub_is_registered_on_the_queue_the_workflows_send_it_to(
    queues: dict[QueueRole | str, list[Definition]],
) -> None:
    found = {stub.name: module for module, stub in stubs()}
    unrouted = sorted(f"{found[name]}.{name}" for name in found.keys() - ROUTES.keys())
    assert not unrouted, f"stubs with no queue in ROUTES (say where the workflows send them): {unrouted}"
    gone = sorted(ROUTES.keys() - found.keys())
    assert not gone, f"ROUTES names activities no stub declares: {gone}"
    for name, role in ROUTES.items():
        served = {d.name for d in queues[role]}
        assert name in served, (
            f"activity {name!r} (stub in {found[name]}) is sent to the {role} queue, whose worker does not "
            "register it (workers/registry.py)"
        )


def test_every_stub_has_its_implementations_types(registered: dict[str, list[Definition]]) -> None:
    for module, stub in stubs():
        for impl in registered.get(stub.name or "", []):
            assert (stub.arg_types, stub.ret_type) == (impl.arg_types, impl.ret_type), (
                f"activity {stub.name!r}: the stub in {module} is {_signature(stub)}, the implementation "
                f"{getattr(impl.fn, '__qualname__', impl.fn)} is {_signature(impl)}"
            )


def test_every_catalogue_action_is_served_where_the_autopilot_sends_it(
    queues: dict[QueueRole | str, list[Definition]],
) -> None:
    workflows = workflow_names()
    for spec in ACTIONS.values():
        if spec.runner == Runner.CHILD_WORKFLOW:
            assert spec.name in workflows, (
                f"action {spec.action_type!r} starts the workflow {spec.name!r}, which no worker registers"
            )
            continue
        served = {d.name for d in queues[spec.queue]}
        assert spec.name in served, (
            f"action {spec.action_type!r} runs the activity {spec.name!r}, which is not registered on the "
            f"{spec.queue.value} queue (workers/registry.py)"
        )


def test_every_catalogue_activity_takes_an_action_request_and_returns_an_action_result(
    registered: dict[str, list[Definition]],
) -> None:
    # The autopilot schedules them by name with an ActionRequest and `result_type=ActionResult`
    # (workflows/autopilot_actions.py): no stub checks their types, so the implementations must match.
    activities = [spec for spec in ACTIONS.values() if spec.runner == Runner.ACTIVITY]
    assert activities, "the catalogue runs no activity"
    for spec in activities:
        for impl in registered.get(spec.name, []):
            assert (impl.arg_types, impl.ret_type) == ([ActionRequest], ActionResult), (
                f"action {spec.action_type!r}: {getattr(impl.fn, '__qualname__', impl.fn)} is "
                f"{_signature(impl)}, not (ActionRequest) -> ActionResult"
            )


def _string_names(tree: ast.AST) -> Iterator[tuple[str, int, str]]:
    """(kind, line, name) of each call starting an activity or child workflow by a string constant."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        if node.func.attr in STARTS_ACTIVITY:
            yield "activity", node.lineno, first.value
        elif node.func.attr in STARTS_CHILD:
            yield "workflow", node.lineno, first.value


def test_every_name_scheduled_as_a_string_is_registered(registered: dict[str, list[Definition]]) -> None:
    workflows = workflow_names()
    for path in sorted((ROOT / "workflows").rglob("*.py")):
        for kind, line, name in _string_names(ast.parse(path.read_text(), str(path))):
            known = registered if kind == "activity" else workflows
            assert name in known, (
                f"{path.relative_to(ROOT)}:{line} schedules the {kind} {name!r}, which no worker registers"
            )


def test_the_string_scan_sees_string_names() -> None:
    # The scan above passes trivially if it stops recognising calls; it must see one of each kind.
    code = 'workflow.execute_activity("a", x)\nworkflow.start_child_workflow("W", x)\nf(g, "b")'
    assert list(_string_names(ast.parse(code))) == [("activity", 1, "a"), ("workflow", 2, "W")]
