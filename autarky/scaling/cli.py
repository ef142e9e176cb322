"""`autarky scale status|set|history`: scalable resources, changes of their capacity and its history."""

from __future__ import annotations

import getpass
import math
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autarky.cli.common import autarky_client, console, fail, require_reason, run_command, shorten
from autarky.core.settings import AutarkySettings
from autarky.scaling.client import ScalerSummary
from autarky.scaling.scalers import resolve
from autarky.scaling.types import OperationStatus, ScaleOperation

scale_app = typer.Typer(
    help="Scalable resources: their capacity, changes of it and its history (one scaler workflow each).",
    no_args_is_help=True,
)

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
        return await (await autarky_client(settings)).scalers()

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
    for s in run_command(run):
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
        shorten(f"{last.status.value}: {last.detail}") if last else "-",
        str(status.queued),
        str(status.pending_approvals),
    ]


def _capacity(value: int | None) -> str:
    return "?" if value is None else str(value)


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
    require_reason(reason, "peak traffic")
    who = by if by is not None else getpass.getuser()
    if not who.strip():
        fail("--by must name who asks (default: your user name)", 2)

    async def run(settings: AutarkySettings) -> ScaleOperation:
        resolve(settings, resource)  # an unknown resource is named before anything talks to the server
        client = await autarky_client(settings)
        return await client.scale(resource, desired, reason=reason, requested_by=who, queue=queue)

    operation = run_command(run)
    outcome = f"{operation.operation_id} {operation.status.value}: {operation.detail}"
    if operation.status not in (OperationStatus.SUCCEEDED, OperationStatus.UNCHANGED):
        fail(outcome)
    console.print(outcome, markup=False, highlight=False, soft_wrap=True)


@scale_app.command("history")
def scale_history(
    resource: ResourceArg, count: Annotated[int, typer.Option(min=1, help="how many")] = 10
) -> None:
    """RESOURCE's recent operations, oldest first."""

    async def run(settings: AutarkySettings) -> tuple[str, list[ScaleOperation]]:
        ref, _ = resolve(settings, resource)
        return ref.workflow_id, await (await autarky_client(settings)).scale_operations(resource, count)

    workflow_id, operations = run_command(run)
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
