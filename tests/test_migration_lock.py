"""Processes migrating one fresh knowledge base at once all succeed (issue 26, item 11): on a first start
the workers and CLI commands each call `KnowledgeBase.migrate`; without a lock, on PostgreSQL all but one
failed with a duplicate key (`alembic_version`). SQLite already took turns (its write transactions begin
IMMEDIATE, activities/storage/schema.py); its case guards that. Real processes, not threads: Alembic's `op`
and `context` are module-wide, so threads would not be what production runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from activities.storage.knowledge_base import MIGRATIONS_DIR, KnowledgeBase
from tests.test_knowledge_base import POSTGRES_ENV, _own_database

PROCESSES = 4


def _migrate(url: str, barrier: Any, results: Any) -> None:
    """One process's first start: its own engine, all starting the upgrade at the same moment."""
    kb = KnowledgeBase(url)
    try:
        barrier.wait(timeout=60)
        kb.migrate()
        results.put("ok")
    except Exception as error:  # reported to the test, which names it
        results.put(f"{type(error).__name__}: {error}"[:400])
    finally:
        kb.close()


def _migrate_at_once(url: str) -> list[str]:
    ctx = multiprocessing.get_context("spawn")  # no forked engines or sockets
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    processes = [ctx.Process(target=_migrate, args=(url, barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        return [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


@contextlib.contextmanager
def _fresh(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'knowledge.db'}"
        return
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with _own_database(admin) as url:
        yield url


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_migrating_a_fresh_database_at_once_all_succeed(backend: str, tmp_path: Path) -> None:
    with _fresh(backend, tmp_path) as url:
        outcomes = _migrate_at_once(url)
        kb = KnowledgeBase(url)
        revision = kb.revision()
        kb.close()
    assert outcomes == ["ok"] * PROCESSES, outcomes
    assert revision == _head()
