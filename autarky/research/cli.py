"""`autarky research run|list` and `autarky experiments`; `open_knowledge_base` for every command that reads
the knowledge base directly (research, experiments, models)."""

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
    table = Table("score", "source", "id", "title")
    for item in items:
        table.add_row(f"{item.score:.2f}", item.source, item.source_id, escape(shorten(item.title, 80)))
    console.print(table)


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
