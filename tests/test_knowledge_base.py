"""The knowledge base keeps one row per thing however often a cycle or an activity runs, on both databases.

PostgreSQL runs when AUTARKY_TEST_POSTGRES_URL names a database its user may create others beside (e.g.
``postgresql+psycopg://autarky:autarky@127.0.0.1/autarky_test``, user with CREATEDB): each test gets a fresh
database of its own. Without it those cases skip.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from activities.storage.knowledge_base import KnowledgeBase, head_revision
from autarky.core.settings import AutarkySettings
from autarky.research.items import AnalysisIn, ExperimentUpdate, ItemIn
from autarky.research.types import CycleOutcome

POSTGRES_ENV = "AUTARKY_TEST_POSTGRES_URL"


@contextlib.contextmanager
def _own_database(url: str) -> Iterator[str]:
    """A fresh database beside the one `url` names, for one test: tests on other xdist workers, or
    another suite running on the same machine, never see its tables (the user needs CREATEDB)."""
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"autarky_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'knowledge.db'}"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with _own_database(url) as own:
        yield own


@pytest.fixture
def kb(db_url: str) -> Iterator[KnowledgeBase]:
    base = KnowledgeBase(db_url)
    base.migrate()
    yield base
    base.close()


def _paper(source_id: str = "2401.00001", title: str = "A paper", **fields: object) -> ItemIn:
    return ItemIn(kind="paper", source="arxiv", source_id=source_id, title=title, **fields)


def _analysis(item_id: int, score: float = 0.8, **fields: object) -> AnalysisIn:
    return AnalysisIn(
        **({"item_id": item_id, "provider": "offline", "model": "offline", "score": score} | fields)
    )


def _count(kb: KnowledgeBase, table: str) -> int:
    with kb.engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_migrate_twice_is_a_no_op(kb: KnowledgeBase) -> None:
    kb.upsert_item(_paper())
    kb.migrate()
    assert kb.revision() == head_revision()
    assert _count(kb, "items") == 1


def test_old_database_upgrades_in_place(db_url: str) -> None:
    old = KnowledgeBase(db_url)
    old.migrate("0001")
    assert old.revision() == "0001"
    item = old.upsert_item(_paper())
    old.record_analysis(_analysis(item.item_id))
    old.close()

    upgraded = KnowledgeBase(db_url)
    upgraded.migrate()
    assert upgraded.revision() == head_revision()
    assert [i.item_id for i in upgraded.items_above(0.5)] == [item.item_id]
    upgraded.close()


def test_upsert_twice_keeps_one_row_and_updates_last_seen(kb: KnowledgeBase) -> None:
    first = kb.upsert_item(_paper(title="Old title"))
    before = kb.item(first.item_id)
    second = kb.upsert_item(_paper(title="New title", abstract="more"))
    after = kb.item(second.item_id)

    assert first.created and not second.created
    assert first.item_id == second.item_id
    assert _count(kb, "items") == 1
    assert before is not None and after is not None
    assert after["last_seen"] > before["last_seen"]
    assert after["first_seen"] == before["first_seen"]
    assert (after["title"], after["abstract"]) == ("New title", "more")


def test_arxiv_versions_are_one_item(kb: KnowledgeBase) -> None:
    v2 = kb.upsert_item(_paper("2401.00001v2", title="Second version"))
    v1 = kb.upsert_item(_paper("2401.00001v1", title="First version"))  # an older listing, seen later

    assert v1.item_id == v2.item_id and not v1.created
    stored = kb.item(v2.item_id)
    assert stored is not None
    assert (stored["source_id"], stored["version"], stored["title"]) == ("2401.00001", 2, "Second version")
    v3 = kb.upsert_item(_paper("arXiv:2401.00001v3", title="Third version"))
    stored = kb.item(v3.item_id)
    assert stored is not None and (stored["version"], stored["title"]) == (3, "Third version")
    assert _count(kb, "items") == 1


def test_known_source_ids_sees_new_versions_as_new(kb: KnowledgeBase) -> None:
    kb.upsert_item(_paper("2401.00001v2"))
    kb.upsert_item(ItemIn(kind="repository", source="github", source_id="a/b", title="b", authors=["a"]))

    ids = ["2401.00001v1", "2401.00001v2", "2401.00001v3", "2401.00001", "2402.99999v1"]
    assert kb.known_source_ids("arxiv", ids) == {"2401.00001v1", "2401.00001v2", "2401.00001"}
    assert kb.known_source_ids("github", ["a/b", "c/d"]) == {"a/b"}
    assert kb.known_source_ids("arxiv", []) == set()


def test_analysis_recorded_twice_is_one_row(kb: KnowledgeBase) -> None:
    item = kb.upsert_item(_paper())
    first = kb.record_analysis(_analysis(item.item_id, tags=["rl"], tokens_in=10, cost=0.01))
    again = kb.record_analysis(_analysis(item.item_id, tags=["rl"], tokens_in=10, cost=0.01))
    other_prompt = kb.record_analysis(_analysis(item.item_id, prompt_version="2"))

    assert first.created and not again.created and other_prompt.created
    assert first.analysis_id == again.analysis_id
    assert _count(kb, "analyses") == 2


def test_concurrent_upserts_make_one_row(kb: KnowledgeBase) -> None:
    barrier = threading.Barrier(2)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def upsert(n: int) -> None:
        try:
            barrier.wait()
            for _ in range(20):
                ref = kb.upsert_item(_paper(title=f"thread {n}"))
                results.append((ref.item_id, ref.created))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert _count(kb, "items") == 1
    assert len({item_id for item_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_bad_score_is_refused_and_earlier_rows_stay(kb: KnowledgeBase) -> None:
    item = kb.upsert_item(_paper())
    kb.record_analysis(_analysis(item.item_id, score=0.4))

    with pytest.raises(ValueError, match="score"):
        kb.record_analysis(_analysis(item.item_id, score=1.5))
    bad = AnalysisIn.model_construct(**_analysis(item.item_id, model="other").model_dump() | {"score": 1.5})
    with pytest.raises(ValueError, match=r"score must be between 0 and 1, got 1\.5"):
        kb.record_analysis(bad)
    with pytest.raises(ValueError, match="unknown item id 999"):
        kb.record_analysis(_analysis(999))

    assert _count(kb, "items") == 1
    assert _count(kb, "analyses") == 1


def test_items_above(kb: KnowledgeBase) -> None:
    high = kb.upsert_item(_paper("2401.00001"))
    low = kb.upsert_item(_paper("2401.00002"))
    kb.record_analysis(_analysis(high.item_id, score=0.9))
    kb.record_analysis(_analysis(high.item_id, score=0.2, provider="openai", model="gpt"))
    kb.record_analysis(_analysis(low.item_id, score=0.3))

    above = kb.items_above(0.7)
    assert [(i.item_id, i.score) for i in above] == [(high.item_id, 0.9)]
    assert kb.items_above(0.7, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    with pytest.raises(ValueError, match="min_score"):
        kb.items_above(2)


def test_experiments(kb: KnowledgeBase) -> None:
    item = kb.upsert_item(_paper())
    created = kb.create_or_get_experiment("experiment/1", item.item_id)
    again = kb.create_or_get_experiment("experiment/1", item.item_id)
    assert created == again and created.state == "proposed"

    updated = kb.update_experiment(
        ExperimentUpdate(workflow_id="experiment/1", state="awaiting_approval", plan={"try": "x"})
    )
    assert updated.state == "awaiting_approval"
    stored = kb.experiment("experiment/1")
    assert stored is not None and stored["plan"] == {"try": "x"} and stored["outcome"] is None

    with pytest.raises(ValueError, match="no experiment for workflow 'experiment/2'"):
        kb.update_experiment(ExperimentUpdate(workflow_id="experiment/2", state="approved"))
    with pytest.raises(ValueError, match="unknown item id 999"):
        kb.create_or_get_experiment("experiment/3", 999)
    with pytest.raises(ValueError, match="about item"):
        kb.create_or_get_experiment("experiment/1", kb.upsert_item(_paper("2401.00002")).item_id)
    assert _count(kb, "experiments") == 1


def test_watermarks_only_move_forward(kb: KnowledgeBase) -> None:
    assert kb.watermark("arxiv") is None
    later = datetime(2026, 11, 22, 18, tzinfo=UTC)
    kb.record_source_ok("arxiv", later)
    kb.record_source_ok("arxiv", later - timedelta(days=1))  # an older page must not move it back
    kb.record_source_ok("arxiv", None)  # nothing found: keeps it
    kb.record_source_error("arxiv", "503 from export.arxiv.org")
    assert kb.watermark("arxiv") == later
    kb.record_source_ok("arxiv", later + timedelta(hours=1))
    assert kb.watermark("arxiv") == later + timedelta(hours=1)
    assert kb.watermark("github") is None


def test_unanalysed_items_and_spending(kb: KnowledgeBase) -> None:
    first = kb.upsert_item(_paper("2401.00001")).item_id
    second = kb.upsert_item(_paper("2401.00002")).item_id
    assert kb.unanalysed_items(10) == [first, second] and kb.count_unanalysed() == 2
    kb.record_analysis(_analysis(first, cost=0.25))
    assert kb.unanalysed_items(10) == [second] and kb.unanalysed_items(0) == []
    kb.create_or_get_experiment("experiment-1", first)
    kb.update_experiment(ExperimentUpdate(workflow_id="experiment-1", state="planned", cost=0.5))
    assert kb.record_spending("plan", "experiment-1", 0.5)
    assert not kb.record_spending("plan", "experiment-1", 0.5)  # a retried activity
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # The ledger alone: an analysis's cost is its gateway call's ledger row (tests/test_llm_budget.py).
    assert kb.spent_since(an_hour_ago) == pytest.approx(0.5)
    assert kb.spent_since(datetime.now(UTC) + timedelta(minutes=1)) == 0
    [listed] = kb.experiments()
    assert listed["workflow_id"] == "experiment-1" and listed["score"] == 0.8 and listed["title"] == "A paper"


def test_an_item_that_keeps_failing_is_set_aside(kb: KnowledgeBase) -> None:
    bad = kb.upsert_item(_paper("2401.00001")).item_id
    good = kb.upsert_item(_paper("2401.00002")).item_id
    assert kb.record_analysis_failure(bad, "LlmRefused: no", "research-1/1")
    assert not kb.record_analysis_failure(bad, "LlmRefused: no", "research-1/1")  # retried
    assert kb.unanalysed_items(10) == [good, bad]  # a failed item goes last
    for cycle in (2, 3):
        kb.record_analysis_failure(bad, "LlmRefused: no", f"research-{cycle}/1")
    assert kb.unanalysed_items(10) == [good] and kb.count_unanalysed() == 1
    assert kb.item(bad)["last_analysis_error"] == "LlmRefused: no"
    # Under an analyser, and retry: tests/test_research_queue.py.
    with pytest.raises(ValueError, match="unknown item id 999"):
        kb.record_analysis_failure(999, "x", "r")


def test_experiment_candidates_and_finding_an_analysis(kb: KnowledgeBase) -> None:
    high = kb.upsert_item(_paper("2401.00001")).item_id
    low = kb.upsert_item(_paper("2401.00002")).item_id
    chosen = kb.upsert_item(_paper("2401.00003")).item_id
    kb.record_analysis(_analysis(high, score=0.9, cost=0.02))
    kb.record_analysis(_analysis(low, score=0.7))
    kb.record_analysis(_analysis(chosen, score=0.95))
    kb.create_or_get_experiment("experiment-3", chosen)
    assert [c.item_id for c in kb.experiment_candidates(0.7, 10)] == [high]  # above, not at, 0.7
    assert kb.experiment_candidates(0.7, 0) == []
    found = kb.find_analysis(high, "offline", "offline", "1")
    assert found is not None and found["score"] == 0.9 and found["cost"] == 0.02
    assert kb.find_analysis(high, "openai", "gpt", "1") is None


def test_an_item_analysed_again_is_a_candidate_by_its_latest_score(kb: KnowledgeBase) -> None:
    """Offline it looked worth trying; the LLM (a key added later) thinks not: no experiment for it."""
    demoted = kb.upsert_item(_paper("2401.00011")).item_id
    promoted = kb.upsert_item(_paper("2401.00012")).item_id
    kb.record_analysis(_analysis(demoted, score=0.9))
    kb.record_analysis(_analysis(demoted, score=0.2, provider="openai", model="gpt-5-mini"))
    kb.record_analysis(_analysis(promoted, score=0.3))
    kb.record_analysis(_analysis(promoted, score=0.8, provider="openai", model="gpt-5-mini"))
    assert [(c.item_id, c.score) for c in kb.experiment_candidates(0.7, 10)] == [(promoted, 0.8)]


def test_cycles(kb: KnowledgeBase) -> None:
    started = datetime(2026, 11, 22, 18, tzinfo=UTC)
    kb.open_cycle("research-1", "schedule", started)
    kb.open_cycle("research-1", "schedule", started)  # a retried activity
    assert kb.last_cycle() is None  # not finished yet
    outcome = CycleOutcome(cycle_id="research-1", status="stopped_for_budget", analyser="offline", analysed=3)
    kb.close_cycle(outcome)
    kb.open_cycle("research-2", "cli", started + timedelta(hours=1))
    last = kb.last_cycle()
    assert last is not None and last.cycle_id == "research-1" and last.status == "stopped_for_budget"
    with pytest.raises(ValueError, match="no research cycle 'research-3'"):
        kb.close_cycle(outcome.model_copy(update={"cycle_id": "research-3"}))
    assert _count(kb, "cycles") == 2


def test_default_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = AutarkySettings(data_dir=tmp_path)
    assert settings.knowledge_db_url == f"sqlite:///{tmp_path.as_posix()}/knowledge.db"
    configured = AutarkySettings(knowledge_base_url="postgresql+psycopg://u:s3cret-pw@h/db")
    assert configured.knowledge_db_url == "postgresql+psycopg://u:s3cret-pw@h/db"
    assert "s3cret-pw" not in repr(configured) and "s3cret-pw" not in configured.model_dump_json()
