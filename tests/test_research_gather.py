"""The gather activity with a real knowledge base (SQLite and PostgreSQL) against the fake arXiv and GitHub
servers: nothing missed (a window re-read behind the watermark, every page), nothing stored twice (arXiv by
id and version, GitHub by numeric id), and the shipped sample source."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from temporalio.testing import ActivityEnvironment

from activities.research.gather import GatherActivities
from activities.research.sample_source import sample_items
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from autarky.core.settings import AutarkySettings
from autarky.research.items import AnalysisIn, ItemIn
from autarky.research.relevance import RelevanceScorer
from autarky.research.settings import ResearchSettings
from autarky.research.types import GatherInput, GatherResult, SourceName
from tests.research_servers import ArxivServer, GitHubServer, Paper, Repo
from tests.test_knowledge_base import db_url  # noqa: F401  (the SQLite and PostgreSQL fixture)

NOW = datetime.now(UTC).replace(microsecond=0)


def paper(index: int, minutes_ago: float, version: int = 1) -> Paper:
    return Paper(
        arxiv_id=f"2601.{index:05d}v{version}",
        title=f"Paper {index} on agents",
        summary=f"Abstract {index}.",
        authors=["Ada Lovelace"],
        published=NOW - timedelta(minutes=minutes_ago),
    )


class Gatherer:
    def __init__(
        self, url: str, tmp_path: Path, arxiv: ArxivServer, github: GitHubServer, **extra: object
    ) -> None:
        research = ResearchSettings(  # type: ignore[arg-type]  # extra: settings for one test
            arxiv_base_url=arxiv.api_url,
            github_base_url=github.url,
            arxiv_delay_seconds=0.01,
            github_topics=["llm"],
            user_agent="Autarky tests (mailto:test@example.org)",
            **extra,
        )
        settings = AutarkySettings(data_dir=tmp_path, knowledge_base_url=url, research=research)
        self.handle = KnowledgeBaseHandle(url)
        self.activities = GatherActivities(settings, self.handle)

    @property
    def kb(self) -> KnowledgeBase:
        return self.handle.get()

    async def __call__(self, source: SourceName) -> GatherResult:
        since = self.kb.watermark(source) or NOW - timedelta(days=2)  # as open_cycle passes it
        request = GatherInput(cycle_id="test-cycle", source=source, since=since)
        return await ActivityEnvironment().run(self.activities.gather_source, request)

    def items(self, source: str) -> list[dict]:
        with self.kb.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT * FROM items WHERE source = :s ORDER BY id"), {"s": source}
            )
            return [dict(row._mapping) for row in rows]


@pytest.fixture
def servers() -> Iterator[tuple[ArxivServer, GitHubServer]]:
    with ArxivServer([]) as arxiv, GitHubServer([], limit=100) as github:
        yield arxiv, github


@pytest.fixture
def gather(db_url: str, tmp_path: Path, servers: tuple[ArxivServer, GitHubServer]) -> Iterator[Gatherer]:  # noqa: F811
    gatherer = Gatherer(db_url, tmp_path, *servers)
    yield gatherer
    gatherer.kb.close()


# ------------------------------------------------------------------------------------------------ arXiv


async def test_arxiv_250_new_papers_are_all_stored_and_the_next_cycle_stores_none(
    gather: Gatherer, servers: tuple[ArxivServer, GitHubServer]
) -> None:
    """Issue 26 item 2: the old fetch stopped at `arxiv_max_results` (200) and moved the watermark past
    the other 50."""
    arxiv, _ = servers
    arxiv.papers = [paper(i, minutes_ago=i) for i in range(1, 251)]
    first = await gather("arxiv")
    assert first.new_items == 250 == len(gather.items("arxiv"))
    assert [r.query["start"] for r in arxiv.requests] == ["0", "100", "200"]  # pages of 100
    arxiv.requests.clear()
    second = await gather("arxiv")
    # The window is read again (three pages), but nothing known comes back or is stored.
    assert second.fetched == 0 and second.new_items == 0 and second.updated_items == 0
    assert len(arxiv.requests) == 3 and len(gather.items("arxiv")) == 250


async def test_arxiv_a_paper_showing_up_after_newer_ones_is_fetched(
    gather: Gatherer, servers: tuple[ArxivServer, GitHubServer]
) -> None:
    """A paper that appears in the API late (released from a hold, cross-listed later) has an update date
    below the watermark but inside the window: the old fetch stopped at the watermark and never saw it."""
    arxiv, _ = servers
    arxiv.papers = [paper(i, minutes_ago=10 * i) for i in range(1, 6)]
    await gather("arxiv")
    watermark = gather.kb.watermark("arxiv")
    assert watermark == NOW - timedelta(minutes=10)
    late = paper(99, minutes_ago=60 * 24)  # a day behind the watermark
    arxiv.papers += [late, paper(6, minutes_ago=1)]
    again = await gather("arxiv")
    assert again.new_items == 2 and again.fetched == 2
    assert {i["source_id"] for i in gather.items("arxiv")} >= {"2601.00099", "2601.00006"}
    assert gather.kb.watermark("arxiv") == NOW - timedelta(minutes=1)


async def test_arxiv_a_new_version_of_a_known_paper_is_an_update(
    gather: Gatherer, servers: tuple[ArxivServer, GitHubServer]
) -> None:
    arxiv, _ = servers
    arxiv.papers = [paper(i, minutes_ago=10 * i) for i in range(1, 4)]
    await gather("arxiv")
    revised = paper(2, minutes_ago=20, version=2)
    revised.title, revised.updated = "Paper 2, revised", NOW
    arxiv.papers[1] = revised
    again = await gather("arxiv")
    # Only the new version comes back (ids and versions known are dropped): one update, nothing new.
    assert again.fetched == 1 and again.updated_items == 1 and again.new_items == 0
    [stored] = [i for i in gather.items("arxiv") if i["source_id"] == "2601.00002"]
    assert stored["version"] == 2 and stored["title"] == "Paper 2, revised"
    assert len(gather.items("arxiv")) == 3


async def test_arxiv_a_capped_fetch_leaves_a_range_the_next_fetches_read(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    servers: tuple[ArxivServer, GitHubServer],
) -> None:
    """A cap of two over five new papers: the old fetch kept its watermark and read the same two newest
    papers every cycle after (nothing new, ever). The range left unread is stored beside the watermark and
    read by the next cycles with what the cap leaves; every paper is stored once, and the range, once
    covered, is cleared."""
    arxiv, github = servers
    arxiv.papers = [paper(i, minutes_ago=10 * i) for i in range(1, 6)]
    gather = Gatherer(db_url, tmp_path, arxiv, github, arxiv_max_results=2)
    try:
        first = await gather("arxiv")
        assert first.new_items == 2 and gather.kb.watermark("arxiv") == NOW - timedelta(minutes=10)
        after, before = gather.kb.backfill("arxiv") or (None, None)
        assert before == NOW - timedelta(minutes=20) and after is not None and after < NOW - timedelta(days=2)
        news = [(await gather("arxiv")).new_items for _ in range(4)]
        assert news == [1, 1, 1, 0]  # the old fetch: [0, 0, 0, 0]
        assert sorted(i["source_id"] for i in gather.items("arxiv")) == [f"2601.0000{i}" for i in range(1, 6)]
        assert gather.kb.backfill("arxiv") is None and gather.kb.watermark("arxiv") == NOW - timedelta(
            minutes=10
        )
        # Covered: the window behind the watermark is read again, a late arrival in it is found (the window
        # holds more than the cap: by the same range, a few cycles on).
        arxiv.papers.append(paper(98, minutes_ago=60 * 24))
        assert sum([(await gather("arxiv")).new_items for _ in range(6)]) == 1
        assert "2601.00098" in {i["source_id"] for i in gather.items("arxiv")}
        assert gather.kb.backfill("arxiv") is None
    finally:
        gather.kb.close()


async def test_arxiv_after_a_capped_fetch_a_larger_cap_gets_the_other_three(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    servers: tuple[ArxivServer, GitHubServer],
) -> None:
    arxiv, github = servers
    arxiv.papers = [paper(i, minutes_ago=10 * i) for i in range(1, 6)]
    small = Gatherer(db_url, tmp_path, arxiv, github, arxiv_max_results=2)
    larger = Gatherer(db_url, tmp_path, arxiv, github, arxiv_max_results=5)
    try:
        assert (await small("arxiv")).new_items == 2 and small.kb.backfill("arxiv") is not None
        second = await larger("arxiv")
        assert second.new_items == 3 and len(larger.items("arxiv")) == 5
        assert larger.kb.backfill("arxiv") is None
    finally:
        small.kb.close()
        larger.kb.close()


# ----------------------------------------------------------------------------------------------- GitHub


async def test_github_a_renamed_repository_stays_one_item(
    gather: Gatherer, servers: tuple[ArxivServer, GitHubServer]
) -> None:
    _, github = servers
    repo = Repo("alice/old-name", "Agents.", 5, NOW - timedelta(minutes=5), NOW - timedelta(days=9), id=4242)
    github.repos = [repo]
    await gather("github")
    repo.full_name, repo.pushed_at = "alice/new-name", NOW
    again = await gather("github")
    assert again.new_items == 0 and again.updated_items == 1
    [stored] = gather.items("github")
    assert stored["source_id"] == "4242" and stored["title"] == "alice/new-name"
    assert stored["url"] == "https://github.com/alice/new-name"


async def test_github_an_item_stored_by_full_name_is_adopted_not_duplicated(
    gather: Gatherer, servers: tuple[ArxivServer, GitHubServer]
) -> None:
    """A knowledge base from before numeric ids holds `alice/agentkit`: the same repository coming back
    with its id rekeys that row, keeping its analysis."""
    _, github = servers
    github.repos = [Repo("alice/agentkit", "Agents.", 5, NOW, NOW - timedelta(days=9), id=77)]
    kb = gather.kb
    old = kb.upsert_item(ItemIn(kind="repository", source="github", source_id="alice/agentkit", title="x"))
    kb.record_analysis(AnalysisIn(item_id=old.item_id, provider="offline", model="m", score=0.4))
    result = await gather("github")
    assert result.new_items == 0 and result.updated_items == 1
    [stored] = gather.items("github")
    assert stored["id"] == old.item_id and stored["source_id"] == "77" and stored["title"] == "alice/agentkit"
    assert kb.find_analysis(old.item_id, "offline", "m", "1") is not None


async def test_github_a_capped_fetch_leaves_a_range_the_next_fetches_read(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    servers: tuple[ArxivServer, GitHubServer],
) -> None:
    """Five repositories, a cap of two per search: the old fetch re-read the same two every cycle
    (`queries x pages` search requests for nothing); now the next cycles read the rest by date."""
    arxiv, github = servers
    github.repos = [
        Repo(f"o{i}/r{i}", None, 0, NOW - timedelta(minutes=10 * i), NOW - timedelta(minutes=10 * i))
        for i in range(1, 6)
    ]
    gather = Gatherer(db_url, tmp_path, arxiv, github, github_max_results=2)
    try:
        first = await gather("github")
        assert first.new_items == 2 and gather.kb.backfill("github") is not None
        news = [(await gather("github")).new_items for _ in range(3)]
        assert news == [1, 1, 1]  # the old fetch: [0, 0, 0]
        assert sorted(i["title"] for i in gather.items("github")) == [f"o{i}/r{i}" for i in range(1, 6)]
        assert gather.kb.backfill("github") is None
        assert gather.kb.watermark("github") == NOW - timedelta(minutes=10)
        assert any(".." in r.query["q"] for r in github.requests)  # the range, searched by date
    finally:
        gather.kb.close()


# ----------------------------------------------------------------------------------------------- sample


async def test_the_sample_source_stores_its_items_once(gather: Gatherer) -> None:
    first = await gather("sample")
    items = gather.items("sample")
    assert first.new_items == len(items) == len(sample_items()) and 30 <= len(items) <= 40
    assert all(i["title"].endswith("(sample)") and i["url"] == "" for i in items)
    assert {i["kind"] for i in items} == {"paper", "repository"}
    again = await gather("sample")  # stable ids: nothing new
    assert (
        again.new_items == 0
        and again.updated_items == len(items)
        and len(gather.items("sample")) == len(items)
    )
    assert gather.kb.watermark("sample") is None


def test_sample_items_are_a_realistic_mix_for_the_offline_analyser() -> None:
    """Some squarely on the default interests (an experiment to approve in the first offline cycle), the
    rest a mix of near misses and other fields."""
    scores = [r.score for r in RelevanceScorer().score_many((i.title, i.abstract) for i in sample_items())]
    assert 5 <= sum(s > 0.7 for s in scores) <= 12
    assert sum(s < 0.3 for s in scores) >= 15
    assert len({i.source_id for i in sample_items()}) == len(sample_items())
