"""The research sources against local servers speaking arXiv's Atom API and GitHub's search API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.research.sources import FetchInput, FetchResult, ResearchSources
from autarky.research.settings import ResearchSettings
from tests.research_servers import ArxivServer, GitHubServer, Paper, Repo

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def papers(count: int) -> list[Paper]:
    return [
        Paper(
            arxiv_id=f"2601.{i:05d}v{1 + i % 3}",
            title=f"Paper {i}\n  on agents",
            summary=f"Abstract {i}. " * 5,
            authors=[f"Author {i}", "Ada Lovelace"],
            published=NOW - timedelta(hours=i),
        )
        for i in range(1, count + 1)
    ]


@pytest.fixture
def arxiv_server() -> Iterator[ArxivServer]:
    with ArxivServer(papers(12)) as server:
        yield server


@pytest.fixture
def github_server() -> Iterator[GitHubServer]:
    repos = [
        Repo("alice/agentkit", "Agents, kit.", 500, NOW - timedelta(days=1), NOW - timedelta(days=30)),
        Repo(
            "bob/infer", None, 900, NOW - timedelta(days=2), NOW - timedelta(days=3), topics=["llm", "mlops"]
        ),
        Repo("carol/old", "stale", 2000, NOW - timedelta(days=400), NOW - timedelta(days=900)),
        Repo("dave/rusty", "not python", 50, NOW, NOW, language="Rust"),
    ]
    with GitHubServer(repos) as server:
        yield server


def settings(
    arxiv: ArxivServer | None = None, github: GitHubServer | None = None, **extra
) -> ResearchSettings:
    return ResearchSettings(
        arxiv_base_url=arxiv.api_url if arxiv else "http://127.0.0.1:9/api/query",
        github_base_url=github.url if github else "http://127.0.0.1:9",
        arxiv_page_size=5,
        arxiv_delay_seconds=0.01,
        user_agent="Autarky tests (mailto:test@example.org)",
        **extra,
    )


async def run(activity, since: datetime | None = None) -> FetchResult:
    return await ActivityEnvironment().run(activity, FetchInput(since=since))


async def test_arxiv_items_pages_and_user_agent(arxiv_server: ArxivServer) -> None:
    sources = ResearchSources(settings(arxiv_server))
    result = await run(sources.fetch_arxiv)
    assert result.source == "arxiv" and result.fetched == 12 == len(result.items)
    first = result.items[0]
    assert first.source_id == "2601.00001" and first.version == 2  # v2 split off
    assert first.kind == "paper" and first.title == "Paper 1 on agents"
    assert first.authors == ["Author 1", "Ada Lovelace"]
    assert first.abstract.startswith("Abstract 1.") and first.url.endswith("2601.00001v2")
    assert all("v" not in item.source_id for item in result.items)
    assert result.newest == NOW - timedelta(hours=1)
    # Three pages of five; our User-Agent, not the library's; the query and the sort arXiv expects.
    assert [r.query["start"] for r in arxiv_server.requests] == ["0", "5", "10"]
    assert {r.headers["User-Agent"] for r in arxiv_server.requests} == {
        "Autarky tests (mailto:test@example.org)"
    }
    query = arxiv_server.requests[0].query
    assert query["sortBy"] == "lastUpdatedDate" and query["sortOrder"] == "descending"
    assert query["search_query"].startswith("(cat:cs.AI OR cat:cs.MA OR cat:cs.DC OR cat:cs.LG) AND (")
    assert 'all:"AI agents"' in query["search_query"]


async def test_arxiv_watermark_stops_paging(arxiv_server: ArxivServer) -> None:
    sources = ResearchSources(settings(arxiv_server))
    result = await run(sources.fetch_arxiv, since=NOW - timedelta(hours=3))  # papers 1 and 2 are newer
    assert [item.source_id for item in result.items] == ["2601.00001", "2601.00002"]
    assert len(arxiv_server.requests) == 1  # the first page held the watermark: no second page
    # A naive watermark is UTC; nothing newer: no items, no newest.
    nothing = await run(sources.fetch_arxiv, since=NOW.replace(tzinfo=None))
    assert nothing.items == [] and nothing.newest is None


async def test_arxiv_503_is_retryable(arxiv_server: ArxivServer) -> None:
    arxiv_server.mode = "unavailable"
    with pytest.raises(ApplicationError) as caught:
        await run(ResearchSources(settings(arxiv_server)).fetch_arxiv)
    assert not caught.value.non_retryable and "503" in caught.value.message
    assert "arxiv" in caught.value.message and "127.0.0.1" in caught.value.message
    assert len(arxiv_server.requests) == 1  # the library does not retry; Temporal does


async def test_arxiv_unreachable_is_retryable() -> None:
    with pytest.raises(ApplicationError) as caught:
        await run(ResearchSources(settings()).fetch_arxiv)
    assert (
        not caught.value.non_retryable
        and "could not reach 127.0.0.1:9 (connection refused)" in caught.value.message
    )


async def test_github_items(github_server: GitHubServer) -> None:
    sources = ResearchSources(settings(github=github_server, github_topics=["llm", "mlops"]))
    result = await run(sources.fetch_github, since=NOW - timedelta(days=7))
    assert result.source == "github"
    assert [item.source_id for item in result.items] == ["bob/infer", "alice/agentkit"]  # by stars, deduped
    infer, agentkit = result.items
    assert infer.kind == "repository" and infer.authors == ["bob"] and infer.abstract == ""
    assert agentkit.abstract == "Agents, kit." and agentkit.url == "https://github.com/alice/agentkit"
    assert result.newest == NOW - timedelta(days=1)
    queries = [r.query for r in github_server.requests]
    assert [q["q"] for q in queries] == [
        "topic:llm language:Python pushed:>=2026-01-03",
        "topic:mlops language:Python pushed:>=2026-01-03",
    ]
    assert all(q["sort"] == "stars" and q["order"] == "desc" for q in queries)
    assert github_server.requests[0].headers["User-Agent"] == "Autarky tests (mailto:test@example.org)"
    assert "Authorization" not in github_server.requests[0].headers


async def test_github_paging_and_token(github_server: GitHubServer) -> None:
    github_server.repos = [Repo(f"o{i}/r{i}", f"repo {i}", 1000 - i, NOW, NOW) for i in range(7)]
    sources = ResearchSources(
        settings(github=github_server, github_topics=["llm"], github_max_results=5, github_token="s3cret")
    )
    result = await run(sources.fetch_github)
    assert [item.source_id for item in result.items] == [f"o{i}/r{i}" for i in range(5)]
    assert github_server.requests[0].headers["Authorization"] == "token s3cret"
    assert github_server.requests[0].query["q"] == "topic:llm language:Python"  # no watermark: no pushed:


async def test_github_rate_limit_is_retryable_until_reset(github_server: GitHubServer) -> None:
    github_server.mode = "rate_limited"
    github_server.reset_at = int(time.time()) + 120
    with pytest.raises(ApplicationError) as caught:
        await run(ResearchSources(settings(github=github_server)).fetch_github)
    error = caught.value
    assert not error.non_retryable and error.type == "SourceRateLimited"
    assert error.next_retry_delay is not None
    assert abs(error.next_retry_delay.total_seconds() - (github_server.reset_at - time.time())) < 3
    assert "rate limit" in error.message


async def test_github_spent_quota_stops_before_the_next_search(github_server: GitHubServer) -> None:
    github_server.limit = github_server.remaining = 1  # the first search spends the quota
    github_server.reset_at = int(time.time()) + 30
    sources = ResearchSources(settings(github=github_server, github_topics=["llm", "mlops"]))
    with pytest.raises(ApplicationError) as caught:
        await run(sources.fetch_github)
    assert not caught.value.non_retryable and caught.value.next_retry_delay is not None
    assert 25 < caught.value.next_retry_delay.total_seconds() <= 30
    assert len(github_server.requests) == 1  # no hammering


async def test_github_503_is_retryable(github_server: GitHubServer) -> None:
    github_server.mode = "unavailable"
    with pytest.raises(ApplicationError) as caught:
        await run(ResearchSources(settings(github=github_server)).fetch_github)
    assert not caught.value.non_retryable and caught.value.type == "SourceUnavailable"
    assert "github" in caught.value.message and "127.0.0.1" in caught.value.message


async def test_github_401_is_final_and_hides_the_token(github_server: GitHubServer) -> None:
    github_server.mode = "unauthorized"
    sources = ResearchSources(settings(github=github_server, github_token="s3cret"))
    with pytest.raises(ApplicationError) as caught:
        await run(sources.fetch_github)
    assert caught.value.non_retryable and caught.value.type == "SourceRejected"
    assert "token is bad or expired" in caught.value.message and "s3cret" not in caught.value.message
