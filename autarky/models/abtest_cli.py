"""`autarky abtest start|status|pause|resume|abort`: A/B tests of models (workflows/ab_test.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.table import Table

from autarky.cli.common import autarky_client, console, fail, run_command
from autarky.core.durations import Duration
from autarky.core.settings import AutarkySettings
from autarky.models import client as abtests
from autarky.models.ab_types import ABTestInput, ABTestResult, ABTestStatus, Guardrails

abtest_app = typer.Typer(
    help="A/B tests of models: a challenger against the active variant of a slot, decided by a "
    "sequential test with guardrails.",
    no_args_is_help=True,
)


@abtest_app.command("start")
def start(
    slot: Annotated[str, typer.Argument(help="the model slot, e.g. research-relevance-offline")],
    challenger: Annotated[str, typer.Argument(help="the variant to test against the active one")],
    share: Annotated[float, typer.Option(help="the challenger's final traffic share, in (0, 1)")] = 0.10,
    ramp: Annotated[list[float] | None, typer.Option(help="shares before the final one (repeat)")] = None,
    calls_per_step: Annotated[int, typer.Option(help="challenger calls before the next ramp step")] = 100,
    metric: Annotated[str, typer.Option(help="quality | valid | latency_ms | cost")] = "quality",
    direction: Annotated[str | None, typer.Option(help="higher | lower (default: the metric's)")] = None,
    min_improvement: Annotated[float, typer.Option(help="minimum relative improvement")] = 0.10,
    alpha: Annotated[float, typer.Option(help="false-promotion rate, in (0, 0.5)")] = 0.05,
    max_error_rate: Annotated[float | None, typer.Option(help="guardrail")] = 0.05,
    max_p95_ms: Annotated[float | None, typer.Option(help="guardrail: p95 latency")] = None,
    max_cost: Annotated[float | None, typer.Option(help="guardrail: cost per call (USD)")] = None,
    interval: Annotated[str, typer.Option(help="evaluation period, e.g. 30s, 1m")] = "1m",
    max_duration: Annotated[str, typer.Option(help="e.g. 7d, 12h")] = "7d",
    batch_size: Annotated[int, typer.Option(help="offline slots: labelled examples per period")] = 200,
    design: Annotated[
        str, typer.Option(help="group_sequential (a maximum sample) | always_valid (no maximum)")
    ] = "group_sequential",
    min_duration: Annotated[str, typer.Option(help="no decision on the metric before, e.g. 1d")] = "1d",
    approval: Annotated[bool, typer.Option("--approval", help="promotion always waits for a person")] = False,
    approval_risk: Annotated[
        float, typer.Option(help="promotion waits for a person when its risk is above this, in [0, 1]")
    ] = 0.5,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the decision")] = False,
) -> None:
    """Start an A/B test (id abtest/SLOT/CHALLENGER)."""
    try:
        input = ABTestInput(
            slot=slot,
            challenger=challenger,
            share=share,
            ramp=ramp if ramp is not None else [min(0.01, share)],
            calls_per_step=calls_per_step,
            metric=metric,  # type: ignore[arg-type]
            direction=direction,  # type: ignore[arg-type]
            min_improvement=min_improvement,
            alpha=alpha,
            guardrails=Guardrails(
                max_error_rate=max_error_rate, max_p95_latency_ms=max_p95_ms, max_cost_per_call=max_cost
            ),
            evaluation_interval=_duration(interval, "--interval"),
            max_duration=_duration(max_duration, "--max-duration"),
            min_duration=_duration(min_duration, "--min-duration"),
            design=design,  # type: ignore[arg-type]
            batch_size=batch_size,
            require_approval=approval,
            approval_risk=approval_risk,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        fail(f"invalid A/B test: {where}: {first['msg']}", 2)

    # Imported here: the registry's SQLAlchemy would cost every command of the CLI a third of a second.
    from activities.models import abtest_start

    async def run(settings: AutarkySettings) -> ABTestResult | str:
        client = (await autarky_client(settings)).client
        try:
            handle = await abtest_start.start(client, settings, input)
        except abtest_start.ABTestRefused as error:
            return f"refused: {error}"
        if not wait:
            return handle.id
        return await handle.result()

    outcome = run_command(run)
    if isinstance(outcome, str):
        if outcome.startswith("refused: "):
            fail(outcome, 2)
        console.print(f"started {outcome}; `autarky abtest status {slot} {challenger}` shows it")
        return
    console.print(escape(f"{outcome.workflow_id}: {outcome.decision}: {outcome.reason}"))


@abtest_app.command("status")
def status(
    slot: Annotated[str | None, typer.Argument()] = None,
    challenger: Annotated[str | None, typer.Argument()] = None,
) -> None:
    """Live statistics of one test, or the list of tests."""

    async def run(settings: AutarkySettings) -> Any:
        client = (await autarky_client(settings)).client
        if slot is None or challenger is None:
            return await abtests.listing(client)
        return await abtests.status(client, slot, challenger)

    found = run_command(run)
    if isinstance(found, list):
        if not found:
            console.print("no A/B tests yet: `autarky abtest start SLOT CHALLENGER`")
            return
        table = Table("workflow", "decision", "state")
        for row in found:
            table.add_row(*row)
        console.print(table)
        return
    if found is None:
        console.print("the test has not read its first statistics yet")
        return
    _print_status(found)


def _print_status(s: ABTestStatus) -> None:
    table = Table(
        title=f"{s.workflow_id}: {s.decision}" + (" (paused)" if s.paused else ""), show_header=False
    )
    table.add_row("slot", f"{s.slot}: {s.challenger} vs {s.incumbent} (share {s.share:.0%})")
    table.add_row("metric", f"{s.metric}, {s.direction} is better")
    for arm in s.arms:
        mean = "-" if arm.mean is None else f"{arm.mean:.4g}"
        p95 = "-" if arm.latency_p95_ms is None else f"{arm.latency_p95_ms:.0f} ms"
        table.add_row(
            arm.variant,
            f"{arm.samples} samples, mean {mean}, errors {arm.error_rate:.1%}, p95 {p95}, "
            f"${arm.cost_per_call:.5f}/call",
        )
    if s.estimate is not None and s.lower is not None and s.upper is not None:
        table.add_row("relative effect", f"{s.estimate:+.1%} [{s.lower:+.1%}, {s.upper:+.1%}]")
    if s.design:
        table.add_row("design", escape(s.design))
    if s.statistic:
        table.add_row("test", escape(s.statistic))
    if s.guardrails:
        table.add_row("guardrails", escape(s.guardrails))
    if s.sample_ratio:
        table.add_row("sample ratio", escape(s.sample_ratio))
    if s.risk is not None:
        table.add_row("promotion risk", f"{s.risk:.2f}")
    if s.reason:
        table.add_row("reason", escape(s.reason))
    console.print(table)


def _signal(name: str, slot: str, challenger: str, *args: str) -> None:
    async def run(settings: AutarkySettings) -> None:
        client = (await autarky_client(settings)).client
        await abtests.signal(client, slot, challenger, name, *args)

    run_command(run)
    console.print(f"{abtests.workflow_id(slot, challenger)}: {name} sent")


@abtest_app.command("pause")
def pause(slot: str, challenger: str) -> None:
    """Hold the test (traffic stays as it is; no evaluation)."""
    _signal("pause", slot, challenger)


@abtest_app.command("resume")
def resume(slot: str, challenger: str) -> None:
    _signal("resume", slot, challenger)


@abtest_app.command("abort")
def abort(
    slot: str,
    challenger: str,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (recorded)")] = "",
) -> None:
    """Stop the test and give the incumbent all traffic back."""
    if not reason.strip():
        fail('--reason is required: say why, e.g. --reason "wrong challenger"', 2)
    _signal("abort", slot, challenger, reason)


def _duration(text: str, option: str) -> timedelta:
    try:
        return TypeAdapter(Duration).validate_python(text)
    except ValidationError:
        fail(f"{option}: {text!r} is not a duration (e.g. 30s, 5m, 1h, 7d)", 2)
