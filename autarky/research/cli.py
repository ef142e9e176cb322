"""`autarky research run|list|retry` and `autarky experiments`; `open_knowledge_base` for every command
that reads the knowledge base directly (research, experiments, models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autarky.cli.common import autarky_client, cli_settings, console, fail, run_command, shorten
from autarky.client import ResearchCycleSummary
from autarky.core.settings import AutarkySettings
from autarky.research.types import CycleOutcome

if TYPE_CHECKING:
    from activities.storage.knowledge_base import KnowledgeBase

research_app = typer.Typer(
    help="The research cycle: new arXiv papers and GitHub repositories, analysed and remembered.",
    no_args_is_help=True,
)


def open_knowledge_base(settings: AutarkySettings, create: bool = False) -> KnowledgeBase:
    """The configured knowledge base, migrated; unless `create`, a SQLite file that does not exist yet
    is an error saying so (a read must not leave an empty database behind)."""
    # Imported here: SQLAlchemy would cost every command of the CLI a third of a second otherwise.
    from activities.storage.knowledge_base import KnowledgeBase

    url = settings.knowledge_db_url
    if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        fail(f"no knowledge base yet at {url}: no research cycle has run (`autarky research run`)")
    kb = KnowledgeBase(url)
    kb.migrate()
    return kb


def research_line(cycle: ResearchCycleSummary | None) -> str:
    if cycle is None:
        return "no cycle yet (hourly; `autarky research run` runs one now)"
    outcome = cycle.outcome
    if outcome is None:
        state = cycle.status.name.lower() if cycle.status else "unknown"
        return f"{cycle.workflow_id}: {state} (started {cycle.started_at:%Y-%m-%d %H:%M} UTC)"
    return f"{outcome.cycle_id}: {_outcome_text(outcome)}"


def _outcome_text(outcome: CycleOutcome) -> str:
    analyser = "offline analyser (no LLM configured)" if outcome.analyser == "offline" else outcome.analyser
    text = (
        f"{outcome.status.replace('_', ' ')}; {outcome.new_items} new, {outcome.analysed} analysed by "
        f"{analyser}, {outcome.failed} failed, {outcome.pending} left; top score "
        f"{outcome.top_score or 0:.2f}; ${outcome.cost_usd:.4f}"
    )
    for source in outcome.unavailable_sources:
        text += f"; {source.source} unavailable: {shorten(source.error or '', 100)}"
    if outcome.stopped_reason:
        text += f"; {outcome.stopped_reason}"
    if outcome.experiments:
        text += f"; experiments proposed: {', '.join(outcome.experiments)}"
    if outcome.digest:
        text += f"; digest {outcome.digest}"
    return text


@research_app.command("run")
def research_run(
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait for the outcome")] = True,
) -> None:
    """Run a research cycle now (the schedule runs one every research.interval)."""

    async def run(settings: AutarkySettings) -> Any:
        return await (await autarky_client(settings)).run_research(wait)

    cycle_id, outcome = run_command(run)
    if outcome is None:
        console.print(f"started {cycle_id}; `autarky status` shows its outcome when it ends")
        return
    console.print(escape(f"{cycle_id}: {_outcome_text(outcome)}"))


@research_app.command("list")
def research_list(
    min_score: Annotated[float, typer.Option(min=0, max=1, help="only items scoring at least this")] = 0.7,
    limit: Annotated[int, typer.Option(min=1, help="how many")] = 30,
) -> None:
    """Items in the knowledge base by their best score."""
    kb = open_knowledge_base(cli_settings())
    items = kb.items_above(min_score)[:limit]
    if not items:
        console.print(f"no item scores {min_score} or more")
        return
    table = Table("score", "source", "id", "title", "item")  # item: what `research rate` takes
    for item in items:
        title = escape(shorten(item.title, 80))
        table.add_row(f"{item.score:.2f}", item.source, item.source_id, title, str(item.item_id))
    console.print(table)


@research_app.command("rate")
def research_rate(
    item_id: Annotated[int, typer.Argument(help="the item (the `item` column of `autarky research list`)")],
    verdict: Annotated[str, typer.Argument(help="good or bad")],
) -> None:
    """Say whether an item is good for us: the offline analyser learns from it (rating again replaces)."""
    if verdict not in ("good", "bad"):
        fail(f"the verdict is good or bad, not {verdict!r}")
    from activities.storage.ratings import Ratings  # SQLAlchemy: see open_knowledge_base

    try:
        before = Ratings(open_knowledge_base(cli_settings())).rate(item_id, verdict == "good")
    except ValueError as error:
        fail(str(error))
    was = "" if before is None else f" (was {'good' if before else 'bad'})"
    console.print(
        f"item {item_id} rated {verdict}{was}: the offline analyser learns from it in the next cycle"
    )


@research_app.command("retry")
def research_retry(
    item_ids: Annotated[list[int] | None, typer.Argument(help="items to try again")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="every set-aside item")] = False,
) -> None:
    """Analyse set-aside items again (an item is set aside after 3 failures of its own under one
    analyser; it also comes back by itself when the analyser changes). Without arguments: list them."""
    kb = open_knowledge_base(cli_settings())
    if not item_ids and not all_items:
        aside = kb.set_aside_items()
        if not aside:
            console.print("no item is set aside")
            return
        table = Table("item", "source", "id", "failures", "analyser", "last error", "title")
        for row in aside:
            table.add_row(
                str(row["item_id"]),
                row["source"],
                row["source_id"],
                str(row["analysis_failures"]),
                row["failed_analyser"] or "",
                escape(shorten(row["last_analysis_error"] or "", 60)),
                escape(shorten(row["title"], 50)),
            )
        console.print(table)
        console.print("`autarky research retry ITEM_ID …` or `--all` tries them again in the next cycle")
        return
    reset = kb.retry_items(None if all_items else list(item_ids or []))
    unknown = sorted(set(item_ids or []) - set(reset)) if not all_items else []
    if reset:
        console.print(f"the next cycle analyses again: {', '.join(map(str, reset))}")
    else:
        console.print("nothing to retry: no such item has failed")
    if unknown:
        fail(f"not failed or unknown: {', '.join(map(str, unknown))} (`autarky research retry` lists them)")


def experiments(limit: Annotated[int, typer.Option(min=1, help="how many")] = 30) -> None:
    """Experiments proposed by research, newest first (decide the waiting ones: `autarky approvals`)."""
    rows = open_knowledge_base(cli_settings()).experiments(limit)
    if not rows:
        console.print("no experiments yet: an item scoring above research.experiment_threshold starts one")
        return
    table = Table("workflow", "state", "score", "item", "cost", "updated (UTC)")
    for row in rows:
        table.add_row(
            row["workflow_id"],
            row["state"],
            f"{row['score']:.2f}" if row["score"] is not None else "",
            escape(shorten(row["title"], 60)),
            f"${row['cost']:.4f}",
            f"{row['updated_at']:%Y-%m-%d %H:%M}",
        )
    console.print(table)
