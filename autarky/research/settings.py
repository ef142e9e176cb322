"""The research cycle's settings section (`[research]`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from autarky.core.durations import Duration
from autarky.core.settings_section import SecretSetting, SettingsSection


class ResearchSettings(SettingsSection):
    """Where the research cycle looks for papers and repositories (arXiv and GitHub), and how politely."""

    arxiv_base_url: str = Field("https://export.arxiv.org/api/query", min_length=1)
    arxiv_categories: list[str] = Field(default_factory=lambda: ["cs.AI", "cs.MA", "cs.DC", "cs.LG"])
    keywords: list[str] = Field(
        default_factory=lambda: [
            "AI agents",
            "autonomous systems",
            "LLM inference",
            "distributed systems",
            "ML optimisation",
        ]
    )
    arxiv_page_size: int = Field(100, ge=1, le=2000)
    # A hard cap per fetch: reached before the window is covered, the log says so and the range left unread
    # is kept; the next fetches read it (after what is newer), until it is covered.
    arxiv_max_results: int = Field(2000, ge=1, le=10000)
    # Each fetch re-reads this far behind the watermark (deduped by id and version): a paper that shows up
    # in the API after newer ones (released from a hold, cross-listed later) is still found.
    arxiv_window: Duration = Field(timedelta(days=3), ge=timedelta(0))
    # arXiv's terms of use: no more than one request every 3 seconds.
    arxiv_delay_seconds: float = Field(3.0, ge=0)
    github_base_url: str = Field("https://api.github.com", min_length=1)
    github_topics: list[str] = Field(default_factory=lambda: ["llm", "ai-agents", "mlops"])
    github_languages: list[str] = Field(default_factory=lambda: ["Python"])
    # Per search query (created, pushed; per topic and language), a hard cap like arxiv_max_results.
    github_max_results: int = Field(300, ge=1, le=1000)
    # Searches look for repositories created or pushed since this long before the watermark.
    github_window: Duration = Field(timedelta(hours=1), ge=timedelta(0))
    # Optional; the caller also reads GITHUB_TOKEN. Never logged.
    github_token: SecretSetting | None = None
    # arXiv asks API clients to say who they are: add a contact (AUTARKY_RESEARCH__USER_AGENT).
    user_agent: str = Field("Autarky research cycle (self-maintaining AI platform)", min_length=1)
    # The cycle: how often (the Schedule), how far back the very first one looks, how much it analyses.
    enabled: bool = True
    interval: Duration = Field(timedelta(hours=1), ge=timedelta(minutes=1))
    first_lookback: Duration = Field(timedelta(days=2), gt=timedelta(0))
    max_items_per_cycle: int = Field(300, ge=0)
    analysis_concurrency: int = Field(4, ge=1, le=32)
    # An item scoring above this starts an experiment (a plan, then a person's decision).
    experiment_threshold: float = Field(0.7, ge=0, le=1)
    experiment_approval_timeout: Duration = Field(timedelta(days=7), gt=timedelta(0))
    # At most this many experiments start per cycle (each asks the LLM for a plan); the rest wait a cycle.
    max_experiments_per_cycle: int = Field(10, ge=0)
    # Items first seen this recently are analysed again when the analyser changes (a key added, another
    # model, a promoted offline scorer); older ones keep the analysis they have.
    reanalyse_window: Duration = Field(timedelta(days=14), ge=timedelta(0))
    # Digest pages older than this are deleted when a cycle writes its own.
    digest_retention: Duration = Field(timedelta(days=30), gt=timedelta(0))
    # Digests go to <data_dir>/research/digests/; with an s3://bucket/prefix URI to S3 as well.
    digest_s3_uri: str | None = Field(None, pattern=r"^s3://[^/]+(/.*)?$")
    digest_s3_endpoint_url: str | None = None
    # The shipped synthetic items ("sample"): "auto" when every real source is unavailable (offline).
    sample_source: Literal["auto", "always", "never"] = "auto"
