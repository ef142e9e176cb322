"""The `autarky` command line.

The console script is `main`: it runs the typer `app` and leaves with `os._exit(code)`, so nothing at
interpreter teardown (the SDK's native threads, temporalio/sdk-python#300) can change the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import math
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from autarky.client import (
    ApprovalRefused,
    AutarkyClient,
    ResearchBusy,
    ScaleRefused,
    ScalerSummary,
    ServerUnavailable,
    connect_client,
    is_unreachable,
    server_address,
)
from autarky.core.durations import Duration
from autarky.core.findings import Finding
from autarky.core.logging import configure_logging
from autarky.core.settings import AutarkySettings, ConfigError, load_settings
from autarky.models.abtest_cli import abtest_app
from autarky.models.cli import models_app
from autarky.research.cli import experiments, research_app, research_line
from autarky.scaling.client import resolve
from autarky.scaling.types import OperationStatus, ScaleOperation
from autarky.selfmod.cli import agents_app, evolve, sandbox_app

app = typer.Typer(
    help="Autarky: keeps an AI platform alive and improving by itself, on Temporal.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Schedules declared in schedules/.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
scale_app = typer.Typer(
    help="Scalable resources: their capacity, changes of it and its history (one scaler workflow each).",
    no_args_is_help=True,
)
app.add_typer(scale_app, name="scale")
app.add_typer(research_app, name="research")
app.command()(experiments)
app.add_typer(abtest_app, name="abtest")
app.add_typer(models_app, name="models")
app.add_typer(agents_app, name="agents")
app.command()(evolve)
app.add_typer(sandbox_app, name="sandbox")
console = Console()
T = TypeVar("T")


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` to stderr as it is (no markup, no wrapping: one line stays one line) and exit."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(message, style="red", markup=False)
    raise typer.Exit(code)


def _settings() -> AutarkySettings:
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(str(error), 2)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _run(make: Callable[[AutarkySettings], Awaitable[T]]) -> T:
    settings = _settings()
    try:
        return asyncio.run(make(settings))
    except ServerUnavailable as error:
        _fail(str(error))
    except (ApprovalRefused, ScaleRefused) as error:
        _fail(f"refused: {error}")
    except (ConfigError, LookupError) as error:
        _fail(str(error))
    except WorkflowUpdateFailedError as error:
        _fail(f"refused: {error.cause.message if error.cause else error}")
    except ResearchBusy as error:
        _fail(str(error))
    except WorkflowFailureError as error:  # e.g. a research cycle that failed: its reason
        cause = error.cause
        while getattr(cause, "cause", None) is not None:
            cause = cause.cause
        _fail(f"the workflow failed: {getattr(cause, 'message', None) or cause or error}")
    except WorkflowAlreadyStartedError as error:
        _fail(f"{error.workflow_id} is already running")
    except RPCError as error:
        if is_unreachable(error):  # the server went away after we connected
            _fail(str(ServerUnavailable(server_address(settings))))
        _fail(f"Temporal said: {error.message}")
    except RuntimeError as error:  # e.g. the server cannot be reached
        if is_unreachable(error):
            _fail(str(ServerUnavailable(server_address(settings))))
        _fail(str(error))


async def _client(settings: AutarkySettings) -> AutarkyClient:
    return await AutarkyClient.connect(settings)


@app.command()
def up() -> None:
    """Bring up the stack (embedded Temporal server unless TEMPORAL_ADDRESS is set) in the foreground."""
    from workers.up import up as run_up

    _run(run_up)


@app.command()
def worker(
    activities_only: Annotated[
        bool, typer.Option("--activities-only", help="no workflows (pool member)")
    ] = False,
) -> None:
    """Run a worker for Autarky's task queue until Ctrl-C."""
    from autarky.core import metrics
    from autarky.core.temporal import metrics_runtime
    from workers.main import build_workers, run_until, stop_event_on_signals

    async def run(settings: AutarkySettings) -> None:
        stop = stop_event_on_signals()
        if activities_only:
            # Pool members run beside `autarky up` on one machine, whose metrics ports are taken.
            settings = settings.model_copy(update={"sdk_metrics_port": None, "metrics_port": None})
        # A metrics port that is taken anyway (a worker beside `autarky up`) is a warning, not an exit.
        client = await connect_client(settings, runtime=metrics_runtime(settings))
        metrics.serve(settings.metrics_host, settings.metrics_port)
        workers = build_workers(client, settings, workflows=not activities_only, pool_member=activities_only)
        await run_until(stop, workers)

    _run(run)


@app.command()
def status() -> None:
    """The autopilot's state, counts and learned success probabilities."""

    async def run(settings: AutarkySettings) -> Any:
        client = await _client(settings)
        return await client.status(), await client.last_research_cycle()

    s, research = _run(run)
    table = Table(title=f"Autopilot: {s.state}", show_header=False)
    table.add_row("uptime", f"{s.uptime_seconds:.0f} s (run {s.runs + 1}, iteration {s.iterations})")
    table.add_row("approvals pending", str(s.pending_approvals))
    table.add_row(
        "actions", f"{s.queued_actions} queued, {s.active_actions} running, {s.completed_actions} completed"
    )
    table.add_row("totals", ", ".join(f"{k} {v}" for k, v in sorted(s.totals.items())) or "-")
    table.add_row(
        "success probability", ", ".join(f"{k} {v:.2f}" for k, v in s.success_probabilities.items())
    )
    if s.expected_improvements:
        table.add_row(
            "expected improvement",
            ", ".join(f"{k} {v:.3f}" for k, v in s.expected_improvements.items()),
        )
    for host, p in (s.hosts or {"": s.last_sample}).items():
        if p is not None:
            table.add_row(
                f"host {host}" if host else "last sample",
                f"CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, disk {p.disk_percent:.0f} %",
            )
    table.add_row(
        "findings",
        "\n".join(escape((f"[{f.host}] " if f.host else "") + f.message) for f in s.findings) or "none",
    )
    for z in s.snoozes:
        where = f" on {z.host}" if z.host else ""
        table.add_row("snoozed", f"{z.action_type}{where} until {z.until:%Y-%m-%d %H:%M} UTC ({z.why})")
    table.add_row("research", escape(research_line(research)))
    console.print(table)


@app.command()
def actions(count: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """Recent actions: queued, running and finished."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).recent_actions(count)

    table = Table("id", "type", "host", "status", "priority", "risk", "EV", "improvement", "detail")
    for r in _run(run):
        c = r.decision.candidate
        table.add_row(
            r.action_id,
            c.action_type,
            c.host or "",
            r.status.value,
            c.priority.value,
            f"{c.risk:.2f}",
            f"{r.decision.expected_value:.3f}",
            "" if r.improvement is None else f"{r.improvement:.4f}",
            r.error or r.detail,
        )
    console.print(table)


@app.command()
def goals() -> None:
    """The autopilot's goals and how far along each is."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).goals()

    table = Table("metric", "target", "current", "achieved", "progress")
    for g in _run(run):
        current = "n/a" if g.current is None else f"{g.current:.1f}"
        table.add_row(
            g.metric,
            f"{g.direction} {g.target:g}",
            current,
            "yes" if g.achieved else "no",
            f"{g.progress:.0%}",
        )
    console.print(table)


@app.command()
def findings() -> None:
    """What the Analyze stage currently sees: threshold rules, anomalies, leaks and early warnings."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).findings()

    found = _run(run)
    if not found:
        console.print("No findings: everything looks normal.")
        return
    table = Table("host", "kind", "metric", "value", "expected", "score", "severity", "evidence")
    for f in found:
        table.add_row(
            f.host or "",
            f.kind,
            f.metric + (f" ({f.subject})" if f.subject else ""),
            _bytes(f.value) if f.metric.endswith("_bytes") else f"{f.value:.4g}",
            _expected(f),
            "" if f.score is None else f"{f.score:.2f}",
            f.severity.value,
            f.message,
        )
    console.print(table)


def _expected(f: Finding) -> str:
    if f.expected_low is not None and f.expected_high is not None:  # an anomaly: the normal range
        return f"{f.expected_low:.4g} – {f.expected_high:.4g}"
    if f.time_to_limit_seconds is not None:  # a trend: when it reaches its limit
        limit = _bytes(f.threshold) if f.metric.endswith("_bytes") else f"{f.threshold:g}"
        return f"reaches {limit} in {f.time_to_limit_seconds / 3600:.1f} h"
    if f.score is None and f.slope_per_hour is None:  # a threshold rule
        return f"≤ {f.threshold:g}"
    return ""


def _bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


@app.command()
def approvals() -> None:
    """Pending approvals in every workflow (found by AutarkyApproval="pending")."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).pending_approvals()

    pending = _run(run)
    if not pending:
        console.print("nothing is waiting for approval")
        return
    table = Table("id", "workflow", "host", "what", "why", "expires (UTC)")
    for p in pending:
        r = p.request
        table.add_row(
            r.approval_id, p.workflow_id, r.host or "", r.subject, r.why, f"{r.expires_at:%Y-%m-%d %H:%M:%S}"
        )
    console.print(table)


def _decide(
    kind: str,
    approval_id: str,
    reason: str,
    approver: str | None,
    workflow: str | None,
    snooze: timedelta | None = None,
) -> None:
    _require_reason(reason)
    who = approver if approver is not None else getpass.getuser()

    async def run(settings: AutarkySettings) -> Any:
        client = await _client(settings)
        if kind == "approve":
            return await client.approve(approval_id, who, reason, workflow_id=workflow)
        return await client.reject(approval_id, who, reason, workflow_id=workflow, snooze=snooze)

    result = _run(run)
    console.print(f"{result.approval_id}: {result.state.value} by {result.decided_by}")


def _require_reason(reason: str, example: str = "pool is idle") -> None:
    if not reason.strip():  # checked here, before anything talks to the server
        _fail(f'--reason is required and must not be empty: say why, e.g. --reason "{example}"', 2)


_DURATION = TypeAdapter(Duration)


def _parse_snooze(value: str | None) -> timedelta | None:
    """The --snooze option in the configuration's duration syntax (30, 30s, 5m, 4h, 1d, or ISO 8601)."""
    if value is None:
        return None
    try:
        snooze = _DURATION.validate_python(value)
    except (ValidationError, OverflowError):
        snooze = None
    if snooze is None or snooze < timedelta(0):
        _fail(f"--snooze {value!r} is not a duration: write e.g. 30s, 5m, 4h or 1d", 2)
    return snooze


ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="why (required; recorded with the decision)", show_default=False)
]
ApproverOpt = Annotated[str | None, typer.Option("--approver", help="who decides (default: your user name)")]
WorkflowOpt = Annotated[
    str | None, typer.Option("--workflow", help="workflow id, if the approval id is ambiguous")
]


@app.command()
def approve(
    approval_id: str, reason: ReasonOpt = "", approver: ApproverOpt = None, workflow: WorkflowOpt = None
) -> None:
    """Approve a pending action."""
    _decide("approve", approval_id, reason, approver, workflow)


@app.command()
def reject(
    approval_id: str,
    reason: ReasonOpt = "",
    approver: ApproverOpt = None,
    workflow: WorkflowOpt = None,
    snooze: Annotated[
        str | None,
        typer.Option(
            "--snooze",
            help="how long the same remedy is not proposed again, e.g. 30m, 4h, 1d "
            "(default: the autopilot's rejection_snooze)",
        ),
    ] = None,
) -> None:
    """Reject a pending action."""
    _decide("reject", approval_id, reason, approver, workflow, _parse_snooze(snooze))


@schedules_app.command("sync")
def schedules_sync() -> None:
    """Create or update the declared schedules (never duplicates)."""
    from schedules import sync_schedules

    async def run(settings: AutarkySettings) -> dict[str, str]:
        return await sync_schedules((await _client(settings)).client, settings)

    for schedule_id, outcome in _run(run).items():
        console.print(f"{schedule_id}: {outcome}")


@schedules_app.command("list")
def schedules_list() -> None:
    """Schedules on the server."""

    async def run(settings: AutarkySettings) -> list[Any]:
        client = (await _client(settings)).client
        return [s async for s in await client.list_schedules()]

    table = Table("id", "workflow", "next run (UTC)", "paused")
    for s in _run(run):
        action = s.schedule.action
        next_run = s.info.next_action_times[0] if s.info and s.info.next_action_times else None
        table.add_row(
            s.id,
            getattr(action, "workflow", ""),
            f"{next_run:%Y-%m-%d %H:%M:%S}" if next_run else "-",
            "yes" if s.schedule.state.paused else "no",
        )
    console.print(table)


RESOURCE_HELP = (
    "local-pool (this host's pool), local-pool/<host>, aws-asg/<name>, aws-ecs/<cluster>/<service>, "
    "aws-ec2/<group>, or the scaler's workflow id scaler/…"
)
NOT_STARTED = "not started (starts on the first request)"
ResourceArg = Annotated[str, typer.Argument(metavar="RESOURCE", help=RESOURCE_HELP, show_default=False)]


@scale_app.command("status")
def scale_status() -> None:
    """Every scaler: capacity, bounds, cooldown, the running operation's step and the last event."""

    async def run(settings: AutarkySettings) -> list[ScalerSummary]:
        return await (await _client(settings)).scalers()

    table = Table(
        "resource",
        "capacity (healthy/desired)",
        "bounds",
        "cooldown",
        "current step",
        "last event",
        "queued",
        "approvals pending",
    )
    for s in _run(run):
        table.add_row(*(escape(cell) for cell in _scaler_row(s)))
    console.print(table)


def _scaler_row(s: ScalerSummary) -> list[str]:
    resource = s.resource.id + ("" if s.policy is not None else " (not configured here)")
    status = s.status
    if status is None:
        bounds = f"{s.policy.min_capacity}–{s.policy.max_capacity}" if s.policy else ""
        return [resource, s.problem or NOT_STARTED, bounds, "", "", "", "", ""]
    cooldown = status.cooldown_remaining_seconds
    current = status.current
    if current is None:
        step = "idle"
    else:
        where = current.step.value if current.step else "starting"
        step = f"{where} ({_capacity(current.previous)} → {current.target})"
    last = status.last
    return [
        resource,
        f"{_capacity(status.healthy)}/{_capacity(status.capacity)}",
        f"{status.min_capacity}–{status.max_capacity}",
        f"{math.ceil(cooldown)} s" if cooldown > 0 else "-",
        step,
        _shorten(f"{last.status.value}: {last.detail}") if last else "-",
        str(status.queued),
        str(status.pending_approvals),
    ]


def _capacity(value: int | None) -> str:
    return "?" if value is None else str(value)


def _shorten(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@scale_app.command("set")
def scale_set(
    resource: ResourceArg,
    desired: Annotated[
        int, typer.Argument(metavar="N", min=0, help="the capacity wanted", show_default=False)
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", "-r", help="why (required; recorded with the operation)", show_default=False
        ),
    ] = "",
    queue: Annotated[
        bool, typer.Option("--queue", help="inside the cooldown, wait for its end instead of refusing")
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="who asks (default: your user name)")] = None,
) -> None:
    """Scale RESOURCE to N and wait for the outcome (the scaler starts if it does not run yet).

    Exits 0 when it succeeded or was already there, 1 when it was refused, compensated or rejected."""
    _require_reason(reason, "peak traffic")
    who = by if by is not None else getpass.getuser()
    if not who.strip():
        _fail("--by must name who asks (default: your user name)", 2)

    async def run(settings: AutarkySettings) -> ScaleOperation:
        resolve(settings, resource)  # an unknown resource is named before anything talks to the server
        client = await _client(settings)
        return await client.scale(resource, desired, reason=reason, requested_by=who, queue=queue)

    operation = _run(run)
    outcome = f"{operation.operation_id} {operation.status.value}: {operation.detail}"
    if operation.status not in (OperationStatus.SUCCEEDED, OperationStatus.UNCHANGED):
        _fail(outcome)
    console.print(outcome, markup=False, highlight=False, soft_wrap=True)


@scale_app.command("history")
def scale_history(
    resource: ResourceArg, count: Annotated[int, typer.Option(min=1, help="how many")] = 10
) -> None:
    """RESOURCE's recent operations, oldest first."""

    async def run(settings: AutarkySettings) -> tuple[str, list[ScaleOperation]]:
        ref, _ = resolve(settings, resource)
        return ref.workflow_id, await (await _client(settings)).scale_operations(resource, count)

    workflow_id, operations = _run(run)
    if not operations:
        console.print(f"{workflow_id}: no operations yet", markup=False, highlight=False)
        return
    table = Table("id", "queued (UTC)", "status", "change", "requested by", "reason", "detail")
    for o in operations:
        table.add_row(
            *(
                escape(cell)
                for cell in (
                    o.operation_id,
                    f"{o.queued_at:%Y-%m-%d %H:%M:%S}",
                    o.status.value
                    + (f" ({o.step.value})" if o.status == OperationStatus.RUNNING and o.step else ""),
                    f"{_capacity(o.previous)} → {o.target}",
                    o.request.requested_by,
                    o.request.reason,
                    o.detail,
                )
            )
        )
    console.print(table)


def _exit_code(code: object) -> int:
    """SystemExit's code as a process exit status (a message string is printed, like Python does)."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code if 0 <= code <= 255 else 1
    print(code, file=sys.stderr)
    return 1


def run_cli(args: list[str] | None = None) -> int:
    """Run the typer app and return its exit code instead of leaving through SystemExit.

    Standalone mode keeps typer's own output (help, usage errors, Ctrl-C → 130) and ends in SystemExit,
    which becomes the code; any other exception gets typer's readable traceback and code 1."""
    try:
        app(args=args)
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        sys.excepthook(type(error), error, error.__traceback__)
        return 1
    return 0


def main() -> NoReturn:
    """The `autarky` console script: run the CLI, flush, and leave at once with its exit code.

    os._exit skips interpreter teardown, where the SDK's native bridge can abort a short-lived client
    process ("Fatal Python error: PyGILState_Release", exit 134; temporalio/sdk-python#300) or crash it.
    Everything the commands own (workers, the embedded server, the pool) is stopped before they return."""
    code = run_cli()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`autarky approvals | head`) or a closed stream: nothing more to say anyway
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
