"""The knowledge base of one worker process, opened and migrated the first time an activity needs it.

SQLAlchemy and Alembic load on first use, not when a worker starts: a worker that never touches the
knowledge base does not pay for those imports. Each call runs in a thread, since the database driver blocks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from activities.storage.knowledge_base import KnowledgeBase

P = ParamSpec("P")
T = TypeVar("T")

BAD_INPUT = "KnowledgeBaseRefused"


class KnowledgeBaseHandle:
    """One knowledge base per process, opened and migrated the first time an activity needs it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._kb: KnowledgeBase | None = None
        self._lock = threading.Lock()

    def get(self) -> KnowledgeBase:
        with self._lock:
            if self._kb is None:
                from activities.storage.knowledge_base import KnowledgeBase  # first use: see above

                kb = KnowledgeBase(self.url)
                kb.migrate()
                self._kb = kb
            return self._kb

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call(kb, …)` in a thread; a ValueError (bad input, refused by a constraint) is final."""

        def in_thread() -> T:
            self.get()
            try:
                return call(*args, **kwargs)
            except ValueError as error:
                raise ApplicationError(str(error), type=BAD_INPUT, non_retryable=True) from error

        return await asyncio.to_thread(in_thread)
