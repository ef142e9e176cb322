"""Local HTTP servers speaking arXiv's and GitHub's real wire formats, for the research source tests.

`ArxivServer` serves the export.arxiv.org Atom API (paging by `start`/`max_results`, a
`lastUpdatedDate:[YYYYMMDDHHMM TO YYYYMMDDHHMM]` filter); `GitHubServer` serves `GET /search/repositories`
with GitHub's JSON, its `created:`/`pushed:` qualifiers (`>=T`, `A..B`), sorts, paging (1000
results at most) and rate-limit headers (a quota refilled every `window` seconds). Both record every request
and can be switched to answer errors (`mode`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape, quoteattr


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Paper:
    arxiv_id: str  # with its version, e.g. 2401.00001v2
    title: str
    summary: str
    authors: list[str]
    published: datetime
    updated: datetime | None = None
    primary_category: str = "cs.AI"
    categories: list[str] = field(default_factory=lambda: ["cs.AI"])


@dataclass
class Repo:
    full_name: str
    description: str | None
    stars: int
    pushed_at: datetime
    created_at: datetime
    language: str = "Python"
    topics: list[str] = field(default_factory=lambda: ["llm"])
    # GitHub's numeric id, stable across renames (default: derived from the first name).
    id: int | None = None

    def __post_init__(self) -> None:
        if self.id is None:
            self.id = zlib.crc32(self.full_name.encode()) % 10**9


def _moment(text: str) -> datetime:
    """A date, or a date and time with its zone (GitHub's qualifiers)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.mode = "ok"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this each answer waits ~40 ms on the
            # client's delayed ACK, which no real service adds.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                owner.requests.append(Recorded(parsed.path, query, dict(self.headers.items())))
                status, headers, body = owner.answer(parsed.path, query, self.headers)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ArxivServer(_Server):
    """export.arxiv.org/api/query: papers newest first, by `sortBy` (submittedDate or lastUpdatedDate),
    descending."""

    def __init__(self, papers: list[Paper]) -> None:
        super().__init__()
        self.papers = list(papers)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/query"

    def answer(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], bytes]:
        if self.mode == "unavailable":
            return 503, {"Content-Type": "text/plain", "Retry-After": "5"}, b"Service Unavailable"
        if path != "/api/query":
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        start = int(query.get("start", "0"))
        size = int(query.get("max_results", "10"))
        papers = self.papers
        bounds = re.search(r"lastUpdatedDate:\[(\d{12}) TO (\d{12})\]", query.get("search_query", ""))
        if bounds:  # both ends included, to the minute (the end's whole minute)
            low, high = (datetime.strptime(b, "%Y%m%d%H%M").replace(tzinfo=UTC) for b in bounds.groups())
            high += timedelta(minutes=1)
            papers = [p for p in papers if low <= (p.updated or p.published) < high]
        if query.get("sortBy") == "lastUpdatedDate":
            ordered = sorted(papers, key=lambda p: p.updated or p.published, reverse=True)
        else:
            ordered = sorted(papers, key=lambda p: p.published, reverse=True)
        page = ordered[start : start + size]
        return (
            200,
            {"Content-Type": "application/atom+xml; charset=utf-8"},
            self.feed(query, start, page, len(ordered)),
        )

    def feed(self, query: dict[str, str], start: int, page: list[Paper], total: int) -> bytes:
        entries = "".join(self.entry(p) for p in page)
        title = escape(f"arXiv Query: search_query={query.get('search_query', '')}")
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"
      xmlns:arxiv="http://arxiv.org/schemas/atom">
  <id>https://arxiv.org/api/local</id>
  <title>{title}</title>
  <updated>{_iso(datetime.now(UTC))}</updated>
  <link href="https://arxiv.org/api/query" rel="self" type="application/atom+xml"/>
  <opensearch:itemsPerPage>{len(page)}</opensearch:itemsPerPage>
  <opensearch:totalResults>{total}</opensearch:totalResults>
  <opensearch:startIndex>{start}</opensearch:startIndex>
{entries}</feed>
""".encode()

    @staticmethod
    def entry(p: Paper) -> str:
        authors = "".join(f"    <author>\n      <name>{escape(a)}</name>\n    </author>\n" for a in p.authors)
        categories = "".join(
            f'    <category term={quoteattr(c)} scheme="http://arxiv.org/schemas/atom"/>\n'
            for c in p.categories
        )
        return f"""  <entry>
    <id>http://arxiv.org/abs/{p.arxiv_id}</id>
    <title>{escape(p.title)}</title>
    <updated>{_iso(p.updated or p.published)}</updated>
    <link href="https://arxiv.org/abs/{p.arxiv_id}" rel="alternate" type="text/html"/>
    <link href="https://arxiv.org/pdf/{p.arxiv_id}" rel="related" type="application/pdf" title="pdf"/>
    <summary>{escape(p.summary)}</summary>
    <category term={quoteattr(p.primary_category)} scheme="http://arxiv.org/schemas/atom"/>
{categories}    <published>{_iso(p.published)}</published>
    <arxiv:primary_category term={quoteattr(p.primary_category)}/>
{authors}  </entry>
"""


class GitHubServer(_Server):
    """api.github.com's GET /search/repositories, with X-RateLimit-* headers and Link paging.

    Modes: "ok"; "rate_limited" (403, remaining 0, reset at `reset_at`); "unavailable" (503);
    "unauthorized" (401 Bad credentials).
    """

    def __init__(self, repos: list[Repo], limit: int = 10, window: int = 60) -> None:
        super().__init__()
        self.repos = repos
        self.limit = limit
        self.remaining = limit
        self.window = window
        self.reset_at = int(time.time()) + window

    def rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Used": str(self.limit - max(self.remaining, 0)),
            "X-RateLimit-Resource": "search",
        }

    def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        headers = {"Content-Type": "application/json; charset=utf-8", **self.rate_headers(), **(extra or {})}
        return status, headers, json.dumps(body).encode()

    def answer(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], bytes]:
        docs = "https://docs.github.com/rest"
        if self.mode == "unavailable":
            return 503, {"Content-Type": "text/html"}, b"<html><body>Service Unavailable</body></html>"
        if self.mode == "unauthorized":
            return self._json(401, {"message": "Bad credentials", "documentation_url": docs, "status": "401"})
        if self.mode == "ok" and time.time() >= self.reset_at:  # a new window: the quota is refilled
            self.remaining = self.limit
            self.reset_at = int(time.time()) + self.window
        if self.mode == "rate_limited" or self.remaining <= 0:
            self.remaining = 0
            message = "API rate limit exceeded for 127.0.0.1. (But here's the good news: ...)"
            return self._json(403, {"message": message, "documentation_url": docs})
        if path != "/search/repositories":
            return self._json(404, {"message": "Not Found", "documentation_url": docs, "status": "404"})
        self.remaining -= 1
        # sort=updated: most recently updated first (a push updates); otherwise ("best match") by stars.
        key = (lambda r: r.pushed_at) if query.get("sort") == "updated" else (lambda r: r.stars)
        matching = sorted(self.match(query.get("q", "")), key=key, reverse=query.get("order") != "asc")
        per_page = min(int(query.get("per_page", "30")), 100)
        page = int(query.get("page", "1"))
        if (page - 1) * per_page >= 1000:
            message = "Only the first 1000 search results are available"
            return self._json(422, {"message": message, "documentation_url": docs, "status": "422"})
        chunk = matching[(page - 1) * per_page : page * per_page]
        extra = {}
        if page * per_page < len(matching):
            rest = {k: v for k, v in query.items() if k != "page"}
            params = "&".join(f"{k}={v.replace(' ', '+')}" for k, v in rest.items())
            extra["Link"] = f'<{self.url}/search/repositories?{params}&page={page + 1}>; rel="next"'
        body = {
            "total_count": len(matching),
            "incomplete_results": False,
            "items": [self.item(r) for r in chunk],
        }
        return self._json(200, body, extra)

    def match(self, q: str) -> list[Repo]:
        repos = self.repos
        for term in q.split():
            key, _, value = term.partition(":")
            if key == "topic":
                repos = [r for r in repos if value in r.topics]
            elif key == "language":
                repos = [r for r in repos if r.language.lower() == value.strip('"').lower()]
            elif key in ("pushed", "created") and value.startswith(">="):
                since = _moment(value[2:])
                repos = [r for r in repos if getattr(r, f"{key}_at") >= since]
            elif key in ("pushed", "created") and ".." in value:  # A..B, both ends included
                low, high = (_moment(v) for v in value.split(".."))
                repos = [r for r in repos if low <= getattr(r, f"{key}_at") <= high]
        return repos

    def item(self, r: Repo) -> dict[str, Any]:
        owner, name = r.full_name.split("/")
        api = f"{self.url}/repos/{r.full_name}"
        return {
            "id": r.id,
            "node_id": "R_kgDO" + name,
            "name": name,
            "full_name": r.full_name,
            "private": False,
            "owner": {
                "login": owner,
                "id": abs(hash(owner)) % 10**9,
                "type": "User",
                "html_url": f"https://github.com/{owner}",
                "url": f"{self.url}/users/{owner}",
            },
            "html_url": f"https://github.com/{r.full_name}",
            "description": r.description,
            "fork": False,
            "url": api,
            "created_at": _iso(r.created_at),
            "updated_at": _iso(r.pushed_at),
            "pushed_at": _iso(r.pushed_at),
            "homepage": None,
            "size": 100,
            "stargazers_count": r.stars,
            "watchers_count": r.stars,
            "language": r.language,
            "forks_count": 0,
            "open_issues_count": 0,
            "default_branch": "main",
            "score": 1.0,
            "topics": r.topics,
            "visibility": "public",
            "archived": False,
            "license": None,
        }
