"""The research sources against local servers speaking arXiv's Atom API and GitHub's search API.

With a knowledge base (deduplication, watermarks, renamed repositories): tests/test_research_gather.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs
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


async def test_arxiv_reads_the_window_behind_the_watermark_then_stops_paging(
    arxiv_server: ArxivServer,
) -> None:
    sources = ResearchSources(settings(arxiv_server, arxiv_window=timedelta(hours=2)))
    # Papers 1 and 2 are newer than the watermark; 3, 4 and 5 are in the window behind it (re-read).
    result = await run(sources.fetch_arxiv, since=NOW - timedelta(hours=3))
    assert [item.source_id for item in result.items] == [f"2601.0000{i}" for i in range(1, 6)]
    assert result.newest == NOW - timedelta(hours=1) and not result.capped
    # Paper 6, the first one older than the window, came on the second page: no third page.
    assert [r.query["start"] for r in arxiv_server.requests] == ["0", "5"]
    # A naive watermark is UTC; nothing newer and no window: no items, no newest.
    flat = ResearchSources(settings(arxiv_server, arxiv_window=timedelta(0)))
    nothing = await run(flat.fetch_arxiv, since=NOW.replace(tzinfo=None))
    assert nothing.items == [] and nothing.newest is None


async def test_arxiv_cap_before_the_window_is_covered_hands_on_the_range_left_unread(
    arxiv_server: ArxivServer,
) -> None:
    """A cap is never a silent stop: the log says so, and the range not read comes back for the next
    fetch (the old fetch moved the watermark past it; then kept it, and re-read the same newest results
    every cycle after, never reaching the rest)."""
    sources = ResearchSources(settings(arxiv_server, arxiv_max_results=4, arxiv_window=timedelta(0)))
    with capture_logs() as logs:
        result = await run(sources.fetch_arxiv, since=NOW - timedelta(hours=10))  # 9 papers are newer
    assert len(result.items) == 4 and result.capped and result.newest == NOW - timedelta(hours=1)
    assert result.backfill == (NOW - timedelta(hours=10), NOW - timedelta(hours=4))  # papers 5 to 9 unread
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert "AUTARKY_RESEARCH__ARXIV_MAX_RESULTS" in warning["event"] and warning["cap"] == 4
    # Without a cap in the way the same fetch covers its window: nothing left.
    whole = await run(ResearchSources(settings(arxiv_server)).fetch_arxiv, since=NOW - timedelta(hours=10))
    assert len(whole.items) == 12 and not whole.capped and whole.newest == NOW - timedelta(hours=1)
    assert whole.backfill is None


async def test_arxiv_capped_fetches_read_the_rest_by_date_until_covered() -> None:
    """Five papers, a cap of two: each next fetch reads its own window, then the range left unread with
    a `lastUpdatedDate:[A TO B]` query, until nothing is left; every paper once, none lost."""
    with ArxivServer(papers(5)) as server:
        sources = ResearchSources(settings(server, arxiv_max_results=2, arxiv_window=timedelta(0)))
        request = FetchInput(since=NOW - timedelta(hours=6))
        first = await ActivityEnvironment().run(sources.fetch_arxiv, request)
        assert [i.source_id for i in first.items] == ["2601.00001", "2601.00002"]
        assert first.backfill == (NOW - timedelta(hours=6), NOW - timedelta(hours=2))
        seen = [i.source_id for i in first.items]
        result = first
        for _ in range(4):
            request = FetchInput(
                since=result.newest or request.since,
                backfill_after=result.backfill_after,
                backfill_before=result.backfill_before,
            )
            server.requests.clear()
            result = await ActivityEnvironment().run(sources.fetch_arxiv, request)
            seen += [i.source_id for i in result.items if i.source_id not in seen]
            assert any("lastUpdatedDate:[" in r.query["search_query"] for r in server.requests)
            if result.backfill is None:
                break
        assert seen == [f"2601.0000{i}" for i in range(1, 6)] and result.backfill is None
        bounded = server.requests[-1].query["search_query"]
        assert bounded.endswith("AND lastUpdatedDate:[202601100600 TO 202601100700]")
        # Raising the cap (as the warning says) reads the other three in one fetch.
        wider = ResearchSources(settings(server, arxiv_max_results=4, arxiv_window=timedelta(0)))
        after = FetchInput(
            since=first.newest, backfill_after=first.backfill_after, backfill_before=first.backfill_before
        )
        rest = await ActivityEnvironment().run(wider.fetch_arxiv, after)
        assert {i.source_id for i in rest.items} >= {"2601.00003", "2601.00004", "2601.00005"}
        assert rest.newest == NOW - timedelta(hours=1)
        # The cap was met by the last paper: not known to be the last, so the next fetch looks once more.
        assert rest.backfill == (NOW - timedelta(hours=6), NOW - timedelta(hours=5))
        server.requests.clear()
        closing = FetchInput(
            since=rest.newest, backfill_after=rest.backfill_after, backfill_before=rest.backfill_before
        )
        last = await ActivityEnvironment().run(wider.fetch_arxiv, closing)
        assert last.backfill is None and len(server.requests) == 2  # its window, the range's last minute


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
    # Created or pushed in the window, deduplicated; keyed by GitHub's numeric id, titled by full name.
    ids = {r.full_name: str(r.id) for r in github_server.repos}
    assert [item.title for item in result.items] == ["bob/infer", "alice/agentkit"]
    assert [item.source_id for item in result.items] == [ids["bob/infer"], ids["alice/agentkit"]]
    infer, agentkit = result.items
    assert infer.kind == "repository" and infer.authors == ["bob"] and infer.abstract == ""
    assert agentkit.abstract == "Agents, kit." and agentkit.url == "https://github.com/alice/agentkit"
    assert agentkit.former_source_ids == ["alice/agentkit"]  # a row stored under it is adopted
    assert result.newest == NOW - timedelta(days=1)
    queries = [r.query for r in github_server.requests]
    # The window starts `github_window` (1 hour) before the watermark; one request per query (one page).
    assert [q["q"] for q in queries] == [
        "topic:llm language:Python created:>=2026-01-03T11:00:00Z",
        "topic:llm language:Python pushed:>=2026-01-03T11:00:00Z",
        "topic:mlops language:Python created:>=2026-01-03T11:00:00Z",
        "topic:mlops language:Python pushed:>=2026-01-03T11:00:00Z",
    ]
    assert all(q["sort"] == "updated" and q["order"] == "desc" for q in queries)
    assert github_server.requests[0].headers["User-Agent"] == "Autarky tests (mailto:test@example.org)"
    assert "Authorization" not in github_server.requests[0].headers


async def test_github_cap_costs_one_request_and_keeps_the_watermark(github_server: GitHubServer) -> None:
    github_server.repos = [
        Repo(f"o{i}/r{i}", f"repo {i}", 1000 - i, NOW - timedelta(minutes=i), NOW) for i in range(7)
    ]
    sources = ResearchSources(
        settings(github=github_server, github_topics=["llm"], github_max_results=5, github_token="s3cret")
    )
    with capture_logs() as logs:
        result = await run(sources.fetch_github)
    assert [item.title for item in result.items] == [f"o{i}/r{i}" for i in range(5)]  # newest push first
    # The cap is one page: one request (PyGithub's iteration fetched page 2 to see the cap was passed).
    assert len(github_server.requests) == 1
    assert result.capped and result.newest is None  # two repositories were not read: the watermark stays
    assert any("GITHUB_MAX_RESULTS" in e["event"] for e in logs if e["log_level"] == "warning")
    assert github_server.requests[0].headers["Authorization"] == "token s3cret"
    assert github_server.requests[0].query["q"] == "topic:llm language:Python"  # no watermark: no dates


async def test_github_capped_searches_read_the_rest_by_date_until_covered(
    github_server: GitHubServer,
) -> None:
    """Five repositories, a cap of two per search: the old fetch kept its watermark and re-read the same
    two newest every cycle (`queries x pages` requests for nothing); now the next fetch reads the range
    left unread with `created:A..B` / `pushed:A..B` and gets the other three."""
    github_server.repos = [
        Repo(f"o{i}/r{i}", None, 0, NOW - timedelta(hours=i), NOW - timedelta(hours=i)) for i in range(1, 6)
    ]
    github_server.limit = github_server.remaining = 100
    window = timedelta(0)
    capped = ResearchSources(
        settings(github=github_server, github_topics=["llm"], github_max_results=2, github_window=window)
    )
    first = await run(capped.fetch_github, since=NOW - timedelta(hours=6))
    assert [i.title for i in first.items] == ["o1/r1", "o2/r2"] and first.capped
    assert first.newest == NOW - timedelta(hours=1)  # the watermark follows what was read ...
    assert first.backfill == (NOW - timedelta(hours=6), NOW - timedelta(hours=2))  # ... the rest is kept
    github_server.requests.clear()
    wider = ResearchSources(
        settings(github=github_server, github_topics=["llm"], github_max_results=5, github_window=window)
    )
    request = FetchInput(
        since=first.newest, backfill_after=first.backfill_after, backfill_before=first.backfill_before
    )
    second = await ActivityEnvironment().run(wider.fetch_github, request)
    # Its own window (o1), then the range: o2 again (at the cursor, not counted), o3, o4 and o5.
    assert {i.title for i in second.items} == {"o1/r1", "o2/r2", "o3/r3", "o4/r4", "o5/r5"}
    assert second.backfill is None and second.newest == NOW - timedelta(hours=1)
    assert [r.query["q"] for r in github_server.requests] == [
        "topic:llm language:Python created:>=2026-01-10T11:00:00Z",
        "topic:llm language:Python created:2026-01-10T06:00:00Z..2026-01-10T10:00:00Z",
        "topic:llm language:Python pushed:>=2026-01-10T11:00:00Z",
        "topic:llm language:Python pushed:2026-01-10T06:00:00Z..2026-01-10T10:00:00Z",
    ]
    # With the cap of two, fetch after fetch: every repository once, and the range runs out.
    seen = {i.title for i in first.items}
    result = first
    for _ in range(4):
        request = FetchInput(
            since=result.newest, backfill_after=result.backfill_after, backfill_before=result.backfill_before
        )
        result = await ActivityEnvironment().run(capped.fetch_github, request)
        seen |= {i.title for i in result.items}
        if result.backfill is None:
            break
    assert seen == {r.full_name for r in github_server.repos} and result.backfill is None


async def test_github_each_query_page_costs_one_request(github_server: GitHubServer) -> None:
    old = NOW - timedelta(days=90)
    github_server.repos = [Repo(f"p/r{i}", None, i, NOW - timedelta(minutes=i), old) for i in range(250)]
    github_server.repos += [Repo(f"n/r{i}", None, 0, NOW - timedelta(hours=3), NOW) for i in range(30)]
    github_server.limit = github_server.remaining = 100
    sources = ResearchSources(settings(github=github_server, github_topics=["llm"]))
    result = await run(sources.fetch_github, since=NOW - timedelta(days=1))
    assert len(result.items) == 280 and not result.capped
    # created: 30 (one page); pushed: 280 (pages of 100, 100, 80). Nothing fetched twice, no count probe.
    pages = [
        (r.query["q"].split()[-1].split(":")[0], r.query.get("page", "1")) for r in github_server.requests
    ]
    assert pages == [("created", "1"), ("pushed", "1"), ("pushed", "2"), ("pushed", "3")]
    assert {r.query["per_page"] for r in github_server.requests} == {"100"}


async def test_github_repositories_created_today_appear_beside_the_most_starred(
    github_server: GitHubServer,
) -> None:
    """Forty repositories created today with no stars, beyond fifty starred ones pushed every hour: the
    old search (pushed, by stars, first 50) never showed them."""
    long_ago = NOW - timedelta(days=400)
    starred = [Repo(f"big/r{i}", None, 5000 + i, NOW - timedelta(minutes=i), long_ago) for i in range(50)]
    fresh = [
        Repo(f"new/r{i}", None, 0, NOW - timedelta(hours=2), NOW - timedelta(hours=2)) for i in range(40)
    ]
    github_server.repos = starred + fresh
    sources = ResearchSources(settings(github=github_server, github_topics=["llm"], github_max_results=50))
    result = await run(sources.fetch_github, since=NOW - timedelta(hours=6))
    titles = {item.title for item in result.items}
    assert {r.full_name for r in fresh} <= titles
    assert {r.full_name for r in starred} <= titles


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


async def test_github_spent_quota_waits_for_the_minute_to_reset(github_server: GitHubServer) -> None:
    """A search quota spent mid-fetch (10 a minute without a token) is waited for, not failed: a retry
    would start over and spend it again."""
    github_server.limit = github_server.remaining = 1  # the first search spends the quota
    github_server.reset_at = int(time.time()) + 2
    sources = ResearchSources(settings(github=github_server, github_topics=["llm", "mlops"]))
    started = time.monotonic()
    result = await run(sources.fetch_github)
    assert len(github_server.requests) == 2 and len(result.items) == 3
    assert time.monotonic() - started >= 1  # the second search waited for the reset
    assert github_server.requests[1].query["q"] == "topic:mlops language:Python"


async def test_github_spent_quota_far_from_reset_stops_before_the_next_search(
    github_server: GitHubServer,
) -> None:
    github_server.limit = github_server.remaining = 1  # the first search spends the quota
    github_server.reset_at = int(time.time()) + 600  # not the search minute: another limit's reset
    sources = ResearchSources(settings(github=github_server, github_topics=["llm", "mlops"]))
    with pytest.raises(ApplicationError) as caught:
        await run(sources.fetch_github)
    assert not caught.value.non_retryable and caught.value.next_retry_delay is not None
    assert 590 < caught.value.next_retry_delay.total_seconds() <= 600
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
