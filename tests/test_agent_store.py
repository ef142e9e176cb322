"""The agents' versions in the knowledge base (activities/selfmod/agent_store.py, agent_sync.py): the
pointer's optimistic check, a commit fetched by its hash into an empty repository, and the migration of a
repository of a release before the store. On SQLite, and on PostgreSQL when AUTARKY_TEST_POSTGRES_URL is
set."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.selfmod.agent_store import AgentStore
from activities.selfmod.versions import AgentRepository, VersionConflict, read_active_pointer
from activities.storage.knowledge_base import KnowledgeBase
from autarky.selfmod.agents import RELEVANCE_SCORER, default_parameters
from autarky.selfmod.types import CandidateOrigin
from tests.test_knowledge_base import db_url  # noqa: F401  (the fixture: sqlite, postgresql)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
AGENT = RELEVANCE_SCORER.name
SOURCE = RELEVANCE_SCORER.source_files[0]
NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
PARAMS = default_parameters(AGENT)


@pytest.fixture
def store(db_url: str) -> Iterator[AgentStore]:  # noqa: F811
    kb = KnowledgeBase(db_url)
    kb.migrate()
    yield AgentStore(kb)
    kb.close()


def host(tmp_path: Path, name: str, store: AgentStore | None) -> AgentRepository:
    return AgentRepository(tmp_path / name / "agents", AGENT, store)


def candidate(repo: AgentRepository, key: str, **change: float) -> str:
    base = repo.active().commit
    made = repo.create_candidate(
        base, key, "run-1", PARAMS | change, None, CandidateOrigin.MUTATION, f"{key} changes"
    )
    return made.commit


def test_a_commit_fetched_by_hash_into_an_empty_repository_has_the_same_id(
    tmp_path: Path, store: AgentStore
) -> None:
    a = host(tmp_path, "a", store)
    a.ensure({SOURCE: "shipped = 1\n"}, PARAMS, NOW)
    patch = f"--- a/{SOURCE}\n+++ b/{SOURCE}\n@@ -1 +1,2 @@\n shipped = 1\n+evolved = 2\n"
    made = a.create_candidate(a.active().commit, "c1", "run-1", PARAMS, patch, CandidateOrigin.LLM, "code")

    b = host(tmp_path, "b", store)  # nothing on disk yet
    assert b.files(made.commit) == a.files(made.commit)
    assert b.blob_ids(made.commit) == a.blob_ids(made.commit)
    assert b.version(made.commit).commit == made.commit  # same id: the same commit, its parent too
    assert b._git("rev-parse", f"{made.commit}^").strip() == a.active().commit
    assert b._git("fsck", "--no-dangling").strip() == ""
    with pytest.raises(Exception, match="is not a commit"):
        b.version("0" * 40)  # a hash the store does not know


def test_the_pointer_moves_for_one_of_two_hosts_that_read_the_same_state(
    tmp_path: Path, store: AgentStore
) -> None:
    a = host(tmp_path, "a", store)
    a.ensure({SOURCE: "shipped = 1\n"}, PARAMS, NOW)
    first = a.active().commit
    mine, theirs = candidate(a, "mine", half=3.0), candidate(a, "theirs", half=4.0)
    b = host(tmp_path, "b", store)
    assert b.active().commit == first  # bootstrapped once, seen by both

    # Both read the same history; the first to write wins, the second learns it and changes nothing.
    seen = store.history(AGENT)
    b.promote(theirs, "host-b", "", None, NOW + timedelta(seconds=1))
    pointer = a.version(mine)
    with pytest.raises(VersionConflict, match="another host"):
        change = {"commit": mine, "parameters": pointer.parameters, "previous": first}
        a._change_pointer(a.active().model_copy(update=change), seen)
    assert [p.commit for p in store.history(AGENT)] == [first, theirs]
    # The expected-incumbent check names the version now active.
    with pytest.raises(VersionConflict, match="active version is now"):
        a.promote(mine, "host-a", "", None, NOW, expected=first)
    # A rollback from A acts on the one truth; B sees it.
    a.rollback("host-a", "undo", NOW + timedelta(seconds=2))
    assert b.active().commit == first and [p.commit for p in b.history()] == [first, theirs, first]
    assert read_active_pointer(tmp_path / "b" / "agents", AGENT, store).commit == first


def test_a_repository_of_a_release_before_the_store_is_migrated_without_loss(
    tmp_path: Path, store: AgentStore
) -> None:
    old = host(tmp_path, "a", None)  # the files alone, as releases before 25 kept them
    old.ensure({SOURCE: "shipped = 1\n"}, PARAMS, NOW)
    first = old.active().commit
    better = candidate(old, "c1", half=3.0)
    old.promote(better, "evolve/x/1", "better", 0.9, NOW + timedelta(seconds=1))
    worse = candidate(old, "c2", half=9.0)
    old.promote(worse, "evolve/x/2", "worse", 0.5, NOW + timedelta(seconds=2))
    old.rollback("cli:ann", "undo", NOW + timedelta(seconds=3))
    before = old.history()
    assert store.history(AGENT) == []

    # First use with the store (the same data directory): everything moves into it.
    assert read_active_pointer(tmp_path / "a" / "agents", AGENT, store) == old.active()
    assert store.history(AGENT) == before
    # Another host sees the same history and can fetch and roll back to any version of it.
    b = host(tmp_path, "b", store)
    assert b.history() == before and b.active().commit == better
    assert b.version(worse).parameters["half"] == 9.0
    after = b.rollback("host-b", "older", NOW + timedelta(seconds=4))
    assert after.commit == first
    # Host A reads the one truth (not its stale files), and its files become the mirror of it.
    assert read_active_pointer(tmp_path / "a" / "agents", AGENT, store) == after
    assert old.active() == after and old.history() == store.history(AGENT)


def test_a_bootstrap_on_two_hosts_keeps_one(tmp_path: Path, store: AgentStore) -> None:
    a, b = host(tmp_path, "a", store), host(tmp_path, "b", store)
    first = a.ensure({SOURCE: "shipped = 1\n"}, PARAMS, NOW)
    assert b.ensure({SOURCE: "shipped = 1\n"}, PARAMS, NOW + timedelta(seconds=5)) == first
    assert len(store.history(AGENT)) == 1
