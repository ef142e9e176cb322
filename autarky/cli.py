"""The `autarky` command line."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from autarky.client import AutarkyClient
from autarky.config import AutarkySettings, ConfigError, load_settings
from autarky.logging import configure_logging
from autarky.types import Finding

app = typer.Typer(
    help="Autarky: keeps an AI platform alive and improving by itself, on Temporal.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Schedules declared in schedules/.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
console = Console()
T = TypeVar("T")


def _settings() -> AutarkySettings:
    try:
        settings = load_settings()
    except ConfigError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _run(make: Callable[[AutarkySettings], Awaitable[T]]) -> T:
    settings = _settings()
    try:
        return asyncio.run(make(settings))
    except (ConfigError, LookupError) as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    except WorkflowUpdateFailedError as error:
        Console(stderr=True).print(f"[red]refused: {error.cause.message if error.cause else error}[/red]")
        raise typer.Exit(1) from None
    except RPCError as error:
        Console(stderr=True).print(f"[red]Temporal said: {error.message}[/red]")
        raise typer.Exit(1) from None
    except RuntimeError as error:  # e.g. the server cannot be reached
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None


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
    from autarky import metrics
    from autarky.temporal import connect, metrics_runtime
    from workers.main import build_workers, run_until, stop_event_on_signals

    async def run(settings: AutarkySettings) -> None:
        stop = stop_event_on_signals()
        if activities_only:
            # Pool members run beside `autarky up` on one machine, whose metrics ports are taken.
            settings = settings.model_copy(update={"sdk_metrics_port": None, "metrics_port": None})
        client = await connect(settings, runtime=metrics_runtime(settings))
        metrics.serve(settings.metrics_host, settings.metrics_port)
        await run_until(stop, build_workers(client, settings, workflows=not activities_only))

    _run(run)


@app.command()
def status() -> None:
    """The autopilot's state, counts and learned success probabilities."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).status()

    s = _run(run)
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
    if s.last_sample:
        p = s.last_sample
        table.add_row(
            "last sample",
            f"CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, disk {p.disk_percent:.0f} %",
        )
    table.add_row("findings", "\n".join(f.message for f in s.findings) or "none")
    console.print(table)


@app.command()
def actions(count: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """Recent actions: queued, running and finished."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await _client(settings)).recent_actions(count)

    table = Table("id", "type", "status", "priority", "risk", "EV", "improvement", "detail")
    for r in _run(run):
        c = r.decision.candidate
        table.add_row(
            r.action_id,
            c.action_type,
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
    table = Table("kind", "metric", "value", "expected", "score", "severity", "evidence")
    for f in found:
        table.add_row(
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
    table = Table("id", "workflow", "what", "why", "expires (UTC)")
    for p in pending:
        r = p.request
        table.add_row(r.approval_id, p.workflow_id, r.subject, r.why, f"{r.expires_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


def _decide(kind: str, approval_id: str, reason: str, approver: str | None, workflow: str | None) -> None:
    who = approver if approver is not None else getpass.getuser()

    async def run(settings: AutarkySettings) -> Any:
        client = await _client(settings)
        decide = client.approve if kind == "approve" else client.reject
        return await decide(approval_id, who, reason, workflow_id=workflow)

    result = _run(run)
    console.print(f"{result.approval_id}: {result.state.value} by {result.decided_by}")


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="why; recorded with the decision")]
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
    approval_id: str, reason: ReasonOpt = "", approver: ApproverOpt = None, workflow: WorkflowOpt = None
) -> None:
    """Reject a pending action."""
    _decide("reject", approval_id, reason, approver, workflow)


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


if __name__ == "__main__":
    app()
