"""`autarky notifications`: what the autopilot told people, from the knowledge base every host writes to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autarky.cli.common import cli_settings, console
from autarky.research.cli import open_knowledge_base


def notifications(
    limit: Annotated[int, typer.Option(min=1, help="how many")] = 30,
    host: Annotated[str | None, typer.Option(help="only this host's")] = None,
) -> None:
    """Notifications for people (the autopilot's `notify`), newest first, from every host."""
    from activities.infra.notifications import recent_notifications  # SQLAlchemy: this command's alone

    settings = cli_settings()
    url = settings.knowledge_db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        rows = []  # a read leaves no empty database behind
    else:
        rows = recent_notifications(open_knowledge_base(settings), limit, host)
    if not rows:
        console.print("no notifications yet")
        return
    webhook = settings.notifications.webhook_url is not None
    table = Table("at (UTC)", "host", "action", "reason", *(["webhook"] if webhook else []), "key")
    for row in rows:
        delivered = [f"{row.delivered_at:%H:%M:%S}" if row.delivered_at else "not yet"] if webhook else []
        table.add_row(
            f"{row.created_at:%Y-%m-%d %H:%M:%S}",
            escape(row.host or "-"),
            escape(row.action_type),
            escape(row.reason),
            *delivered,
            escape(row.key),
        )
    console.print(table)
