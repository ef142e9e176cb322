"""`autarky agents [history|rollback]`, `autarky evolve AGENT` and `autarky sandbox run`: the evolvable
agents, their versions, self-modification runs (workflows/self_modify.py) and the candidates' sandbox."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable, Collection
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.selfmod.sandbox import SandboxUnavailable, new_workdir, remove_workdir, run_sandboxed
from activities.selfmod.versions import VersionStoreError
from autarky.cli.common import autarky_client, cli_settings, console, fail, run_command, shorten
from autarky.core.settings import AutarkySettings
from autarky.selfmod import client as evo
from autarky.selfmod import evolutions
from autarky.selfmod.agents import AGENTS, agent_spec
from autarky.selfmod.genesis_types import GenesisResult
from autarky.selfmod.types import SelfModifyResult

agents_app = typer.Typer(
    help="The evolvable agents and their active versions (`autarky agents` lists them).",
    invoke_without_command=True,
)
sandbox_app = typer.Typer(help="The sandbox every candidate runs in.", no_args_is_help=True)
POLL_SECONDS = 2.0
# Outcomes that are answers, not errors: "not better" is an honest result of a run.
OK_STATUSES = ("promoted", "not_promoted", "rejected", "rolled_back")


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "-"


def _params(parameters: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in parameters.items())


def _print(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _check_agent(agent: str) -> None:
    evo.install_generated(cli_settings())  # agents made by genesis are known from the knowledge base
    try:
        agent_spec(agent)
    except ValueError as error:
        fail(str(error), 2)


# ---------------------------------------------------------------------- agents


@agents_app.callback()
def agents(ctx: typer.Context) -> None:
    """Every evolvable agent with its active version (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = cli_settings()
    table = Table("agent", "version", "parameters", "changed at (UTC)", "changed by", "metric", "files")
    table.columns[0].no_wrap = True
    for row in evo.list_agents(settings):
        p = row.pointer
        files = "\n".join(row.spec.source_files)
        if p is None:
            state = f"unreadable: {row.problem}" if row.problem else "not evolved yet"
            table.add_row(row.spec.name, escape(state), "", "", "", "", escape(files))
            continue
        table.add_row(
            row.spec.name,
            _short(p.commit) + (f"\n{escape(row.waits)}" if row.waits else ""),
            escape(_params(p.parameters)),
            f"{p.changed_at:%Y-%m-%d %H:%M:%S}",
            escape(p.changed_by),
            "" if p.metric is None else f"{p.metric:.4g}",
            escape(files),
        )
    console.print(table)


@agents_app.command("history")
def agents_history(agent: Annotated[str, typer.Argument(help="the agent, e.g. relevance-scorer")]) -> None:
    """AGENT's active-version changes, oldest first."""
    _check_agent(agent)
    settings = cli_settings()
    try:
        changes = evo.history(settings, agent)
    except VersionStoreError as error:
        fail(str(error))
    if not changes:
        _print(f"{agent}: not evolved yet (`autarky evolve {agent}` starts a run)")
        return
    table = Table("changed at (UTC)", "version", "previous", "changed by", "metric", "reason")
    for p in changes:
        table.add_row(
            f"{p.changed_at:%Y-%m-%d %H:%M:%S}",
            _short(p.commit),
            _short(p.previous),
            escape(p.changed_by),
            "" if p.metric is None else f"{p.metric:.4g}",
            escape(shorten(p.reason, 80)),
        )
    console.print(table)


@agents_app.command("rollback")
def agents_rollback(
    agent: Annotated[str, typer.Argument(help="the agent, e.g. relevance-scorer")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (recorded in the history)")] = "",
    to: Annotated[
        str | None, typer.Option("--to", help="a commit that was active before (default: the previous one)")
    ] = None,
) -> None:
    """Return AGENT to the version before the active one (or --to an earlier active one)."""
    _check_agent(agent)
    settings = cli_settings()
    try:
        before, after = evo.rollback(settings, agent, _who(), reason or "rolled back from the CLI", to)
    except VersionStoreError as error:  # never evolved, nothing to roll back to, bad commit
        fail(str(error))
    if before.commit == after.commit:
        _print(f"{agent}: {_short(after.commit)} is already the active version")
        return
    _print(f"{agent}: {_short(before.commit)} → {_short(after.commit)} ({_params(after.parameters)})")


@agents_app.command("create")
def agents_create(
    spec_file: Annotated[
        Path, typer.Argument(help="the spec (TOML): name, kind, purpose, metric_name, data, …")
    ],
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="write the agent from its kind's template even if the spec asks for the LLM"
        ),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the run to its end")] = True,
) -> None:
    """Make a new evolvable agent from SPEC_FILE (workflow genesis/NAME): written, tested in the sandbox,
    judged on its labelled data, and registered once a person approves (`autarky approve`).

    Exits 0 when registered (or started, with --no-wait), 1 when it was not, 2 for a bad spec."""
    from autarky.selfmod.genesis import (
        GenesisSpecError,
        check_split,
        parse_labelled_csv,
        parse_spec,
        registry,
    )

    settings = cli_settings()
    evo.install_generated(settings)
    taken = {*AGENTS, *(a.spec.name for a in registry.all())}
    try:
        request = parse_spec(spec_file.read_text(), str(spec_file), taken)
        data_path = (spec_file.parent / request.data).resolve()
        data = parse_labelled_csv(data_path.read_text(), f"{spec_file}: field data ({data_path})")
        check_split(data, request.blocks)
    except OSError as error:
        fail(
            f"{spec_file}: cannot read {error.filename}: {error.strerror} (field data names the CSV, "
            "relative to the spec)",
            2,
        )
    except GenesisSpecError as error:
        fail(str(error), 2)

    async def run(settings: AutarkySettings) -> GenesisResult | str | None:
        from temporalio.common import WorkflowIDConflictPolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from autarky.selfmod.genesis_types import GenesisInput, genesis_workflow_id

        client = (await autarky_client(settings)).client
        workflow_id = genesis_workflow_id(request.name)
        request_in = GenesisInput(
            request=request,
            data=data,
            offline=offline,
            requested_by=_who(),
            limits=settings.evolution.limits,
            activity_task_queue=settings.research_task_queue,
        )
        try:
            handle = await client.start_workflow(
                "AgentGenesisWorkflow",
                request_in,
                id=workflow_id,
                task_queue=settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=GenesisResult,
            )
        except WorkflowAlreadyStartedError:
            return f"a genesis of {request.name} is running already ({workflow_id})"
        _print(f"started {handle.id}; watch it at {evo.ui_hint(settings, handle.id)}")
        _print(
            f"it asks for approval once its tests pass: `autarky approve register-{request.name} "
            f"--workflow {handle.id} --reason …`"
        )
        if not wait:
            return None

        def show(progress: dict[str, Any]) -> bool:
            _print(f"  {progress.get('step')}")
            return False

        return await _follow(handle, show)

    _report(
        run_command(run),
        lambda o: _print(f"{o.name}: {o.status.replace('_', ' ')} — {o.message}"),
        ok={"registered"},
    )


# ---------------------------------------------------------------------- evolve


class SearchMethod(StrEnum):
    """How an evolution without an LLM makes parameter children (SelfModifyInput.search)."""

    ES = "es"
    ARCHIVE = "archive"
    CMA = "cma"


def evolve(
    agent: Annotated[str, typer.Argument(help=f"the agent: {', '.join(AGENTS)}", show_default=False)],
    offline: Annotated[
        bool, typer.Option("--offline", help="never ask an LLM: tune the declared parameters only")
    ] = False,
    generations: Annotated[int, typer.Option(min=1, max=50, help="generations of candidates")] = 3,
    population: Annotated[int, typer.Option(min=1, max=32, help="candidates per generation")] = 4,
    search: Annotated[
        SearchMethod,
        typer.Option(
            help="how parameter children are made (without an LLM, or with --offline): es (1+λ from the "
            "best), archive (MAP-Elites parents by score and novelty), cma (CMA-ES)",
        ),
    ] = SearchMethod.ES,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="least estimated improvement to promote (its interval's lower bound above 0 too), in the "
            "agent's unit: "
            "points for bounded metrics, a share (0.15 = 15 %) otherwise (default: the agent's own)",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the run to its end")] = True,
) -> None:
    """Start a self-modification run of AGENT (id evolve/AGENT/N) and follow it.

    Exits 0 when it ends (promoted or, honestly, not better), 1 when it failed, 2 for bad input."""
    _check_agent(agent)

    async def run(settings: AutarkySettings) -> SelfModifyResult | str | None:
        client = (await autarky_client(settings)).client
        if search != SearchMethod.ES and not offline and settings.llm.provider != "offline":
            _print(
                f"--search {search.value} makes parameter children; with an LLM configured the candidates "
                "are its patches (add --offline to search parameters)"
            )
        try:
            handle = await evolutions.start_evolution(
                client,
                settings,
                agent,
                offline=offline,
                generations=generations,
                population=population,
                search=search.value,
                threshold=threshold,
                requested_by=_who(),
            )
        except evolutions.EvolutionRefused as error:
            return f"refused: {error}"
        _print(f"started {handle.id}; watch it at {evo.ui_hint(settings, handle.id)}")
        if not wait:
            _print(f"`autarky agents history {agent}` shows what it changed when it ends")
            return None

        def show(progress: dict[str, Any]) -> bool:
            step, best = str(progress.get("step")), progress.get("best")
            _print(
                f"  {step} (candidates {progress.get('candidates')}, failed {progress.get('failed')}, "
                f"sandbox runs {progress.get('sandbox_runs')}, best {'-' if best is None else f'{best:.4g}'})"
            )
            if step.startswith("watching the live metric"):  # promoted: the watch takes days
                _print(
                    f"promoted; {handle.id} watches its live metric and rolls it back on a regression: "
                    f"`autarky agents history {agent}` shows what happens"
                )
                return True
            return False

        return await _follow(handle, show)

    _report(run_command(run), _print_result, ok=OK_STATUSES)


def _report(outcome: Any, show: Callable[[Any], None], ok: Collection[str]) -> None:
    """A followed run's end: an error string fails (exit 2), None (not followed) says nothing more, a
    result is shown and exits 1 unless its status is one of `ok`."""
    if isinstance(outcome, str):
        fail(outcome, 2)
    if outcome is None:
        return
    show(outcome)
    if outcome.status not in ok:
        raise typer.Exit(1)


async def _follow(handle: WorkflowHandle, show: Callable[[dict[str, Any]], bool]) -> Any:
    """The run's result, printing its progress meanwhile: `show` gets each new step's progress and returns
    True to stop following (then None)."""
    result = asyncio.ensure_future(handle.result())
    last: str | None = None
    while True:
        done, _ = await asyncio.wait({result}, timeout=POLL_SECONDS)
        if done:
            return result.result()
        try:
            progress = await handle.query(
                "progress", result_type=dict[str, Any], rpc_timeout=timedelta(seconds=5)
            )
        except (RPCError, WorkflowQueryFailedError):  # not answering yet (no worker): keep waiting
            continue
        if str(progress.get("step")) != last:
            last = str(progress.get("step"))
            if show(progress):
                result.cancel()
                return None


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_result(r: SelfModifyResult) -> None:
    table = Table(title=f"{r.agent}: {r.status.replace('_', ' ')}", show_header=False)
    table.add_row("incumbent", _short(r.incumbent_commit))
    if r.promoted_commit:
        table.add_row("promoted", _short(r.promoted_commit))
    table.add_row("search part", f"baseline {_figure(r.baseline_search)}, best {_figure(r.best_search)}")
    if r.baseline_decision is not None or r.best_decision is not None:
        table.add_row(
            "decision part", f"baseline {_figure(r.baseline_decision)}, best {_figure(r.best_decision)}"
        )
    if r.improvement is not None:
        i = r.improvement
        table.add_row("improvement", i.text())
    if r.watch:
        table.add_row("live watch", r.watch)
    table.add_row("candidates", f"{r.candidates} ({r.failed_candidates} failed)")
    table.add_row("sandbox runs", str(r.sandbox_runs))
    table.add_row("message", escape(r.message))
    console.print(table)


# ---------------------------------------------------------------------- sandbox


@sandbox_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sandbox_run(
    command: Annotated[
        list[str], typer.Argument(help="the command and its arguments (put -- before it)", show_default=False)
    ],
    cpu: Annotated[int | None, typer.Option("--cpu", min=1, help="CPU seconds")] = None,
    memory: Annotated[int | None, typer.Option("--memory", min=64, help="address space, MiB")] = None,
    wall: Annotated[float | None, typer.Option("--wall", min=0.1, help="wall-clock seconds")] = None,
) -> None:
    """Run COMMAND in the sandbox candidates get: a fresh work directory, no network, no secrets, the
    configured limits (evolution.limits) with these flags over them. Exits with the command's code, 1
    when a limit stopped it, 2 when the sandbox cannot be set up."""
    settings = cli_settings()
    update: dict[str, Any] = {}
    if cpu is not None:
        update["cpu_seconds"] = cpu
    if memory is not None:
        update["memory_mib"] = memory
    if wall is not None:
        update["wall_seconds"] = wall
    limits = settings.evolution.limits.model_copy(update=update)
    work = new_workdir(settings.evolution.workdir_parent)
    try:
        result = run_sandboxed(command, work, limits)
    except SandboxUnavailable as error:
        fail(str(error), 2)
    finally:
        remove_workdir(work)
    sys.stdout.write(result.output)
    if result.output and not result.output.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    _print(f"sandbox: {result.summary()}")
    _print(f"protections: {', '.join(result.protections) or 'none reported'}")
    for total, why in result.unbounded.items():
        _print(f"not bounded for the whole run: {total} ({why})")
    if result.limit is not None or result.exit_code is None:
        raise typer.Exit(1)
    raise typer.Exit(result.exit_code)
