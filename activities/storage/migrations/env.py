"""Alembic environment: runs on the connection `KnowledgeBase.migrate` hands over, else on the URL.

Offline (SQL script) mode is not supported: the knowledge base migrates itself at start-up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

connection = context.config.attributes.get("connection")


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # e.g. `alembic -x` use by hand with sqlalchemy.url set
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as own_connection:
        _run(own_connection)
