"""The research queue in the knowledge base (activities/storage/research_queue.py), on SQLite and PostgreSQL:
what waits for an analysis under the current analyser, failures counted under their analyser, retry, and
the one-cycle-at-a-time lease (issue 26, items 1, 6 and 12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy

from activities.storage.knowledge_base import KnowledgeBase
from autarky.research.types import AnalyserKey
from tests.test_knowledge_base import _analysis, _paper, db_url  # noqa: F401 (the fixture)

LLM = AnalyserKey(label="openai:gpt-a@research-1", offline=False, prompt_version="research-1")
OTHER_LLM = AnalyserKey(label="openai:gpt-b@research-1", offline=False, prompt_version="research-1")
OFFLINE = AnalyserKey(label="offline:bm25-v1", offline=True, model="bm25-v1")
RETRAINED = AnalyserKey(label="offline:bm25-v2", offline=True, model="bm25-v2")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[KnowledgeBase]:  # noqa: F811 (db_url: the fixture)
    base = KnowledgeBase(db_url)
    base.migrate()
    yield base
    base.close()


def test_failures_count_under_their_analyser_and_come_back_when_it_changes(store: KnowledgeBase) -> None:
    bad = store.upsert_item(_paper("2401.00001")).item_id
    good = store.upsert_item(_paper("2401.00002")).item_id
    assert store.record_analysis_failure(bad, "LlmRefused: no", "research-1/1", LLM.label)
    assert not store.record_analysis_failure(bad, "LlmRefused: no", "research-1/1", LLM.label)  # retried
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [good, bad]  # a failed item goes last
    for cycle in (2, 3):
        store.record_analysis_failure(bad, "LlmRefused: no", f"research-{cycle}/1", LLM.label)
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [good] and store.count_unanalysed(LLM, LONG_AGO) == 1
    assert [i["item_id"] for i in store.set_aside_items()] == [bad]
    assert store.item(bad)["failed_analyser"] == LLM.label
    # Another model: the item is tried again, and its failures there start from one.
    assert store.unanalysed_items(10, OTHER_LLM, LONG_AGO) == [good, bad]
    store.record_analysis_failure(bad, "LlmRefused: no", "research-4/1", OTHER_LLM.label)
    assert store.item(bad)["analysis_failures"] == 1
    # Failures record no spending: the gateway records what each call cost.
    assert store.spent_since(LONG_AGO) == 0
    with pytest.raises(ValueError, match="unknown item id 999"):
        store.record_analysis_failure(999, "x", "r")


def test_retry_brings_set_aside_items_back(store: KnowledgeBase) -> None:
    first = store.upsert_item(_paper("2401.00001")).item_id
    second = store.upsert_item(_paper("2401.00002")).item_id
    for item in (first, second):
        for cycle in (1, 2, 3):
            store.record_analysis_failure(item, "LlmInvalidOutput", f"research-{cycle}/{item}", LLM.label)
    assert store.unanalysed_items(10, LLM, LONG_AGO) == []
    assert store.retry_items([first]) == [first]
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [first]
    assert store.retry_items() == [second]  # every set-aside item
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [first, second]
    assert store.retry_items([12345]) == []


def test_round_one_set_aside_items_come_back_under_an_analyser(store: KnowledgeBase) -> None:
    """Round 1 counted a wrong key's failures on items and set them aside forever (issue 26, item 1)."""
    item = store.upsert_item(_paper("2401.00001")).item_id
    with store.engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE items SET analysis_failures = 3 WHERE id = :i"), {"i": item}
        )
    assert store.unanalysed_items(10) == []  # the round-1 rule, for round-1 workflows
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [item]


def test_recent_items_wait_for_the_current_analyser(store: KnowledgeBase) -> None:
    offline_only = store.upsert_item(_paper("2401.00001")).item_id
    by_llm = store.upsert_item(_paper("2401.00002")).item_id
    by_old_offline = store.upsert_item(_paper("2401.00003")).item_id
    store.record_analysis(_analysis(offline_only, model="bm25-v1"))
    store.record_analysis(_analysis(by_llm, provider="openai", model="gpt-a", prompt_version="research-1"))
    store.record_analysis(_analysis(by_old_offline, model="bm25-v1"))
    # Round 1 (no analyser): analysed is analysed.
    assert store.unanalysed_items(10) == []
    # A key was added: recent items the LLM has not analysed wait for it, whichever model analysed them.
    assert store.unanalysed_items(10, LLM, LONG_AGO) == [offline_only, by_old_offline]
    assert store.unanalysed_items(10, OTHER_LLM, LONG_AGO) == [offline_only, by_old_offline]
    # A retrained offline model: every offline analysis by the old one is out of date.
    assert store.unanalysed_items(10, RETRAINED, LONG_AGO) == [offline_only, by_llm, by_old_offline]
    assert store.unanalysed_items(10, OFFLINE, LONG_AGO) == [by_llm]
    # Items first seen before the window keep the analysis they have.
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert store.unanalysed_items(10, LLM, later) == [] and store.count_unanalysed(LLM, later) == 0
    assert store.count_unanalysed(LLM, LONG_AGO) == 2


def test_one_cycle_holds_the_lease_until_it_gives_it_back_or_it_expires(store: KnowledgeBase) -> None:
    now = datetime.now(UTC)
    assert store.take_lease("research-a", now + timedelta(hours=2)) == "research-a"
    assert store.take_lease("research-b", now + timedelta(hours=2)) == "research-a"
    assert store.take_lease("research-a", now + timedelta(hours=3)) == "research-a"  # a retried open
    assert not store.release_lease("research-b")  # not its lease
    assert store.release_lease("research-a")
    assert store.take_lease("research-b", now - timedelta(seconds=1)) == "research-b"  # expired at once
    assert store.take_lease("research-c", now + timedelta(hours=1)) == "research-c"  # so it is free


@pytest.mark.parametrize("revision", ["0009", "0003"])  # before round 2; before failures were counted
def test_downgrading_keeps_the_analyses(store: KnowledgeBase, revision: str) -> None:
    """Going back a release must not empty the knowledge base: on SQLite a batch-mode drop rebuilt `items`,
    and its DROP TABLE cascaded to every analysis (0010's and 0004's downgrades did)."""
    item = store.upsert_item(_paper("2401.00031")).item_id
    store.record_analysis(_analysis(item, score=0.4))
    downgrade(store, revision)
    assert store.revision() == revision
    with store.engine.connect() as connection:
        counts = [
            connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("items", "analyses")
        ]
    assert counts == [1, 1]
    store.migrate()  # and forward again
    assert store.find_analysis(item, "offline", "offline", "1") is not None


def downgrade(store: KnowledgeBase, revision: str) -> None:
    """Alembic's downgrade on the store's own engine (`migrate` only ever upgrades)."""
    from alembic import command
    from alembic.config import Config

    from activities.storage.knowledge_base import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
