"""The one truth of the agents' versions, in the knowledge base (revision 0008), which every host reads:
SQLite by default, PostgreSQL beyond one machine.

- `agent_pointers`: every change of an agent's active pointer, numbered 1, 2, … per agent. The active
  version is the highest number; rollbacks walk the rest. A change is inserted under the number after the
  one its writer read, and (agent, seq) is unique: two hosts that read the same state cannot both move the
  pointer; the second gets `PointerConflict` and nothing of its change is stored (the optimistic check).
- `agent_objects`: the git objects (commit, tree, blob; type and raw content) of every version and
  candidate, keyed by their object id. Any host writes them into its own repository with
  `git hash-object -w -t TYPE --stdin`, which gives the same id: a commit is fetched by its hash, and the
  local repository is a cache (activities/selfmod/versions.py).

Blocking (SQLAlchemy); callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from activities.selfmod.version_errors import PointerConflict
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime
from autarky.selfmod.types import ActivePointer

__all__ = ["AgentStore", "PointerConflict"]
OBJECT_TYPES = ("commit", "tree", "blob")
_CHUNK = 400  # ids per IN (…): below SQLite's bound-parameter limit


class AgentPointerRow(Base):
    __tablename__ = "agent_pointers"
    __table_args__ = (sa.UniqueConstraint("agent", "seq", name="uq_agent_pointers_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(128))
    seq: Mapped[int] = mapped_column(sa.Integer)
    commit_id: Mapped[str] = mapped_column(sa.String(64))
    changed_at = mapped_column(UtcDateTime, nullable=False)
    pointer: Mapped[str] = mapped_column(sa.Text)  # ActivePointer as JSON


class AgentObject(Base):
    __tablename__ = "agent_objects"

    oid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class AgentStore:
    """The agents' pointers and git objects in one knowledge base (opened on first use)."""

    def __init__(self, kb: KnowledgeBaseHandle | KnowledgeBase) -> None:
        self._kb = kb

    @classmethod
    def at(cls, url: str) -> AgentStore:
        return cls(KnowledgeBaseHandle(url))

    def _engine(self) -> sa.Engine:
        kb = self._kb.get() if isinstance(self._kb, KnowledgeBaseHandle) else self._kb
        return kb.engine

    # ------------------------------------------------------------------ pointers

    def history(self, agent: str) -> list[ActivePointer]:
        """Every pointer change of `agent`, oldest first (the active one last); [] when never bootstrapped."""
        t = AgentPointerRow
        with self._engine().connect() as connection:
            rows = connection.execute(sa.select(t.pointer).where(t.agent == agent).order_by(t.seq)).scalars()
            return [ActivePointer.model_validate_json(text) for text in rows]

    def active(self, agent: str) -> ActivePointer | None:
        t = AgentPointerRow
        query = sa.select(t.pointer).where(t.agent == agent).order_by(t.seq.desc()).limit(1)
        with self._engine().connect() as connection:
            text = connection.execute(query).scalar_one_or_none()
        return None if text is None else ActivePointer.model_validate_json(text)

    def append(self, agent: str, after: int, pointers: list[ActivePointer]) -> None:
        """Store `pointers` as changes after+1, after+2, …: all of them, or none and PointerConflict when
        another writer stored a change after `after` (the number of changes this writer read)."""
        rows = [
            {
                "agent": agent,
                "seq": after + i,
                "commit_id": p.commit,
                "changed_at": p.changed_at,
                "pointer": p.model_dump_json(),
            }
            for i, p in enumerate(pointers, start=1)
        ]
        if any(p.agent != agent for p in pointers):
            raise ValueError(f"a pointer of another agent among {agent}'s")
        try:
            with self._engine().begin() as connection:
                stored = connection.execute(
                    sa.select(sa.func.count())
                    .select_from(AgentPointerRow)
                    .where(AgentPointerRow.agent == agent)
                ).scalar_one()
                if stored != after:  # the unique (agent, seq) catches the race this check cannot
                    raise PointerConflict(
                        f"agent {agent}: {stored} pointer changes stored, {after} were read"
                    )
                connection.execute(sa.insert(AgentPointerRow), rows)
        except IntegrityError as error:
            raise PointerConflict(
                f"agent {agent}: another host changed the pointer at the same time"
            ) from error

    # ------------------------------------------------------------------ objects

    def present(self, oids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(oids))
        found: set[str] = set()
        with self._engine().connect() as connection:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                found.update(
                    connection.execute(sa.select(AgentObject.oid).where(AgentObject.oid.in_(chunk))).scalars()
                )
        return found

    def put(self, objects: Iterable[tuple[str, str, bytes]]) -> int:
        """Store (oid, type, raw content) objects not stored yet; how many were new. Content-addressed: an
        object stored by another host at the same time is the same object."""
        rows = [{"oid": oid, "kind": kind, "data": data} for oid, kind, data in objects]
        for row in rows:
            if row["kind"] not in OBJECT_TYPES:
                raise ValueError(
                    f"git object {row['oid']} has type {row['kind']!r}, not one of {OBJECT_TYPES}"
                )
        new = [r for r in rows if r["oid"] not in self.present(r["oid"] for r in rows)]
        for row in new:
            try:
                with self._engine().begin() as connection:
                    connection.execute(sa.insert(AgentObject), [row])
            except IntegrityError:
                continue  # stored meanwhile by another writer: the same bytes under the same id
        return len(new)

    def get(self, oids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """The stored objects among `oids`: oid → (type, raw content)."""
        wanted = list(dict.fromkeys(oids))
        found: dict[str, tuple[str, bytes]] = {}
        t = AgentObject
        with self._engine().connect() as connection:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for oid, kind, data in connection.execute(
                    sa.select(t.oid, t.kind, t.data).where(t.oid.in_(chunk))
                ):
                    found[oid] = (kind, bytes(data))
        return found
