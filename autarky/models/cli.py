"""`autarky models`: the model registry's slots, and the outcomes of models called outside Autarky.

    autarky models                      # = autarky models list
    autarky models register SLOT VARIANT --model NAME [--provider external] [--active] [--description TEXT]
    autarky models record SLOT VARIANT --latency-ms X [--quality Q] [--invalid] [--error] [--cost C]

It reads and writes the knowledge base directly (no Temporal server needed). Also runnable as
``python -m autarky.models.cli``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from activities.models.offline_variants import ensure_default_slots
from autarky.cli.common import cli_settings, console, fail
from autarky.core.settings import AutarkySettings
from autarky.models.types import OutcomeIn, Variant
from autarky.research.cli import open_knowledge_base

if TYPE_CHECKING:
    from activities.models.registry import ModelRegistry

models_app = typer.Typer(
    help="The model registry: model slots, their variants and traffic split, and call outcomes.",
    invoke_without_command=True,
)


def _settings() -> AutarkySettings:
    return cli_settings(configure_logs=False)  # the models commands never set logging up


def _registry(settings: AutarkySettings, create: bool = False) -> ModelRegistry:
    """The registry on the configured knowledge base, which must exist unless `create`."""
    # Imported here: SQLAlchemy would cost every command of the CLI a third of a second otherwise.
    from activities.models.registry import ModelRegistry

    return ModelRegistry(open_knowledge_base(settings, create))


def _split_text(split: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in sorted(split.items()) if share > 0)


@models_app.callback()
def models_default(context: typer.Context) -> None:
    """The model registry: model slots, their variants and traffic split, and call outcomes."""
    if context.invoked_subcommand is None:
        models_list()


@models_app.command("list")
def models_list() -> None:
    """Slots with their variants, the active one, the split and the calls of the last 24 hours."""
    registry = _registry(_settings(), create=True)
    ensure_default_slots(registry)  # the built-in offline slot is there from the start
    slots = registry.slots()
    if not slots:
        console.print("no model slots yet: a worker registers the built-in ones; `autarky models register`")
        return
    since = datetime.now(UTC) - timedelta(hours=24)
    table = Table("slot", "variant", "provider", "model", "active", "share", "calls 24h")
    for info in slots:
        counts = registry.outcome_counts(info.name, since)
        for index, variant in enumerate(info.variants):
            table.add_row(
                escape(info.name + (" (external)" if info.external else "")) if index == 0 else "",
                escape(variant.name),
                escape(variant.provider),
                escape(variant.model),
                "*" if variant.name == info.active else "",
                f"{info.split.get(variant.name, 0.0):.0%}",
                str(counts.get(variant.name, 0)),
            )
    console.print(table)


@models_app.command("register")
def models_register(
    slot: Annotated[str, typer.Argument(help="the slot (created when new)", show_default=False)],
    variant: Annotated[str, typer.Argument(help="the variant's name", show_default=False)],
    model: Annotated[str, typer.Option(help="the model's name, e.g. gpt-4o-mini", show_default=False)],
    provider: Annotated[str, typer.Option(help="who serves it")] = "external",
    prompt_version: Annotated[str, typer.Option(help="the prompt's version")] = "1",
    active: Annotated[
        bool, typer.Option("--active", help="make it the active variant of a new slot (a new slot's first)")
    ] = False,
    description: Annotated[str, typer.Option(help="what the slot is for (a new slot)")] = "",
) -> None:
    """Register an external model as a variant of a slot (again, the same: a no-op)."""
    try:
        entry = Variant(name=variant, provider=provider, model=model, prompt_version=prompt_version)
    except ValidationError as error:
        fail(f"invalid variant: {error.errors()[0]['loc'][0]}: {error.errors()[0]['msg']}")
    registry = _registry(_settings(), create=True)
    try:
        existing = {info.name: info for info in registry.slots()}.get(slot)
        if existing is None:
            info = registry.register_slot(slot, [entry], variant, description=description, external=True)
        else:
            if active and existing.active != variant:
                fail(
                    f"slot {slot!r} exists with active variant {existing.active!r}: --active applies only "
                    "to a new slot (an A/B test promotes variants)"
                )
            info = registry.add_variant(slot, entry)
    except ValueError as error:
        fail(str(error))
    console.print(escape(f"{info.name}: {variant} registered ({_split_text(info.split)})"))


@models_app.command("record")
def models_record(
    slot: Annotated[str, typer.Argument(help="the slot", show_default=False)],
    variant: Annotated[str, typer.Argument(help="the variant that answered", show_default=False)],
    latency_ms: Annotated[float, typer.Option(min=0, help="how long the call took", show_default=False)],
    quality: Annotated[
        float | None, typer.Option(min=0, max=1, help="how good the answer was, 0..1", show_default=False)
    ] = None,
    invalid: Annotated[bool, typer.Option("--invalid", help="the answer was malformed")] = False,
    error: Annotated[bool, typer.Option("--error", help="the call failed")] = False,
    cost: Annotated[float, typer.Option(min=0, help="what the call cost (USD)")] = 0.0,
    tokens_in: Annotated[int, typer.Option(min=0, help="prompt tokens")] = 0,
    tokens_out: Annotated[int, typer.Option(min=0, help="completion tokens")] = 0,
    routing_key: Annotated[str | None, typer.Option(help="the key the call was routed by")] = None,
    ref: Annotated[
        str | None, typer.Option(help="an id of the call: recording the same ref again is a no-op")
    ] = None,
) -> None:
    """Record the outcome of one call of an external model."""
    try:
        outcome = OutcomeIn(
            slot=slot,
            variant=variant,
            routing_key=routing_key,
            latency_ms=latency_ms,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost,
            valid=not invalid,
            error=error,
            quality=quality,
            ref=ref,
        )
    except ValidationError as problem:
        first = problem.errors()[0]
        fail(f"invalid outcome: {first['loc'][0] if first['loc'] else ''}: {first['msg']}")
    registry = _registry(_settings())
    try:
        new = registry.record_outcome(outcome)
    except ValueError as problem:
        fail(str(problem))
    console.print(
        escape(f"{slot}/{variant}: outcome recorded" if new else f"{slot}/{variant}: already recorded")
    )


if __name__ == "__main__":
    models_app()
