"""The `autarky` command line: the typer app, assembled from each capability's commands (autarky/*/cli.py)
and the ones here: the stack (`up`, `worker`, `schedules`), the autopilot (`status`, `actions`, `goals`,
`findings`) and approvals in any workflow (`approvals`, `approve`, `reject`).

The console script is `main`: it runs the typer `app` and leaves with `os._exit(code)`, so nothing at
interpreter teardown (the SDK's native threads, temporalio/sdk-python#300) can change the exit code.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import unicodedata
from datetime import timedelta
from typing import Annotated, Any, NoReturn

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autarky.cli.common import autarky_client, cli_settings, console, fail, require_reason, run_command
from autarky.cli.notifications import notifications
from autarky.client import connect_client
from autarky.core.durations import Duration
from autarky.core.findings import Finding
from autarky.core.settings import AutarkySettings
from autarky.core.temporal import metrics_runtime
from autarky.models.abtest_cli import abtest_app
from autarky.models.cli import models_app
from autarky.research.cli import experiments, open_knowledge_base, research_app, research_line
from autarky.scaling.cli import scale_app
from autarky.selfmod.cli import agents_app, evolve, sandbox_app
from schedules import sync_schedules

app = typer.Typer(
    help="Autarky: keeps an AI platform alive and improving by itself, on Temporal.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Schedules declared in schedules/.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
app.add_typer(scale_app, name="scale")
app.add_typer(research_app, name="research")
app.command()(experiments)
app.command()(notifications)
app.add_typer(abtest_app, name="abtest")
app.add_typer(models_app, name="models")
app.add_typer(agents_app, name="agents")
app.command()(evolve)
app.add_typer(sandbox_app, name="sandbox")


@app.command()
def up() -> None:
    """Bring up the stack (embedded Temporal server unless TEMPORAL_ADDRESS is set) in the foreground."""
    # Imported here: the workers load every workflow and activity (SQLAlchemy, boto3, LLM SDKs…), about
    # half a second that no other command should pay.
    from workers.up import up as run_up

    run_command(run_up)


@app.command()
def worker(
    activities_only: Annotated[
        bool, typer.Option("--activities-only", help="no workflows (pool member)")
    ] = False,
) -> None:
    """Run a worker for Autarky's task queue until Ctrl-C."""
    from autarky.core import metrics  # the Prometheus client: this command's alone
    from workers.main import build_workers, run_until, stop_event_on_signals  # see `up`

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

    run_command(run)


@app.command()
def status() -> None:
    """The autopilot's state, counts and learned success probabilities."""

    async def run(settings: AutarkySettings) -> Any:
        client = await autarky_client(settings)
        return await client.status(), await client.last_research_cycle()

    s, research = run_command(run)
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
        return await (await autarky_client(settings)).recent_actions(count)

    table = Table("id", "type", "host", "status", "priority", "risk", "EV", "improvement", "detail")
    for r in run_command(run):
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
        return await (await autarky_client(settings)).goals()

    table = Table("metric", "target", "current", "achieved", "progress")
    for g in run_command(run):
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
        return await (await autarky_client(settings)).findings()

    found = run_command(run)
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
def approvals(
    diff: Annotated[
        int | None, typer.Option("--diff", help="print the whole stored diff ID that an approval names")
    ] = None,
) -> None:
    """Pending approvals in every workflow (found by AutarkyApproval="pending"), each reason in full."""
    if diff is not None:
        _print_diff(diff)
        return

    async def run(settings: AutarkySettings) -> Any:
        return await (await autarky_client(settings)).pending_approvals()

    pending = run_command(run)
    if not pending:
        console.print("nothing is waiting for approval")
        return
    # What a workflow wrote (an LLM's patch, a plan) is shown as text: never read as Rich markup, its
    # control characters (terminal escapes, bidi overrides) made visible.
    table = Table("id", "workflow", "host", "what", "why", "expires (UTC)")
    longer = []
    for p in pending:
        r = p.request
        first, _, rest = r.why.partition("\n")
        cells = (r.approval_id, p.workflow_id, r.host or "", r.subject, first)
        table.add_row(*(Text(_visible(c)) for c in cells), f"{r.expires_at:%Y-%m-%d %H:%M:%S}")
        if rest.strip():
            longer.append(r)
    console.print(table)
    for r in longer:
        console.print(f"\n{_visible(r.approval_id)}, why in full:", markup=False, highlight=False)
        console.print(_visible(r.why), markup=False, highlight=False, soft_wrap=True)


def _print_diff(diff_id: int) -> None:
    from activities.selfmod.diff_store import read_diff  # SQLAlchemy: for this option only

    stored = read_diff(open_knowledge_base(cli_settings()), diff_id)
    if stored is None:
        fail(f"no diff {diff_id} in the knowledge base: the id is the one an approval's reason names")
    when = f"{stored.created_at:%Y-%m-%d %H:%M:%S}"
    console.print(
        f"diff {stored.id}: {stored.agent} version {stored.commit[:10]} against the shipped sources, stored "
        f"{when} UTC",
        markup=False,
        highlight=False,
    )
    console.print(_visible(stored.text), markup=False, highlight=False, soft_wrap=True)


def _visible(text: str) -> str:
    """`text` with control and format characters (ESC, CR, bidi overrides, zero-width…) as escapes."""
    return "".join(
        c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") else repr(c)[1:-1] for c in text
    )


def _decide(
    kind: str,
    approval_id: str,
    reason: str,
    approver: str | None,
    workflow: str | None,
    snooze: timedelta | None = None,
) -> None:
    require_reason(reason)
    who = approver if approver is not None else getpass.getuser()

    async def run(settings: AutarkySettings) -> Any:
        client = await autarky_client(settings)
        if kind == "approve":
            return await client.approve(approval_id, who, reason, workflow_id=workflow)
        return await client.reject(approval_id, who, reason, workflow_id=workflow, snooze=snooze)

    result = run_command(run)
    console.print(f"{result.approval_id}: {result.state.value} by {result.decided_by}")


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
        fail(f"--snooze {value!r} is not a duration: write e.g. 30s, 5m, 4h or 1d", 2)
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

    async def run(settings: AutarkySettings) -> dict[str, str]:
        return await sync_schedules((await autarky_client(settings)).client, settings)

    for schedule_id, outcome in run_command(run).items():
        console.print(f"{schedule_id}: {outcome}")


@schedules_app.command("list")
def schedules_list() -> None:
    """Schedules on the server."""

    async def run(settings: AutarkySettings) -> list[Any]:
        client = (await autarky_client(settings)).client
        return [s async for s in await client.list_schedules()]

    table = Table("id", "workflow", "next run (UTC)", "paused")
    for s in run_command(run):
        action = s.schedule.action
        next_run = s.info.next_action_times[0] if s.info and s.info.next_action_times else None
        table.add_row(
            s.id,
            getattr(action, "workflow", ""),
            f"{next_run:%Y-%m-%d %H:%M:%S}" if next_run else "-",
            "yes" if s.schedule.state.paused else "no",
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
