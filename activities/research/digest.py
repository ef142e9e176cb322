"""The research digest: one Markdown page per cycle, in the data directory and, when configured, on S3.

The page says what the cycle saw and how: which sources answered and which did not (and why), whether the
analysis was an LLM's or the offline analyser's, whether the budget stopped it, and the items best first.
Writing the same cycle again overwrites its page with the same content, so a retry is harmless. A cycle
that ended well having found and analysed nothing writes no page (its memo says so); pages older than
`research.digest_retention` are deleted whenever a digest is written.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.items import OFFLINE_MODEL
from autarky.research.types import SAMPLE, CycleOutcome, DigestInput

log = structlog.get_logger(__name__)

MAX_LISTED = 50
RATIONALE_CHARS = 280


def digest_name(cycle_id: str) -> str:
    """A file name for a cycle id: ``research-…T18:00:00Z`` → ``research-…T18-00-00Z.md``"""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in cycle_id) + ".md"


def nothing_to_say(outcome: CycleOutcome) -> bool:
    """A cycle that ended well having found, analysed, failed and proposed nothing: no page for it."""
    return (
        outcome.status == "completed"
        and outcome.new_items == 0
        and outcome.analysed == 0
        and outcome.failed == 0
        and not outcome.experiments
        and not outcome.unavailable_sources
    )


def render_digest(outcome: CycleOutcome, rows: list[dict[str, Any]]) -> str:
    """The Markdown page of a cycle; `rows` are the analysed items (knowledge base `analysed_items`)."""
    offline = outcome.analyser == OFFLINE_MODEL
    lines = [
        f"# Research digest {outcome.cycle_id}",
        "",
        f"- Status: **{outcome.status.replace('_', ' ')}**"
        + (f" ({outcome.stopped_reason})" if outcome.stopped_reason else ""),
        "- Analysed by: "
        + (
            "the **offline** analyser (lexical relevance to the configured interests; no LLM is configured)"
            if offline
            else f"`{outcome.analyser}`"
        ),
        f"- Items: {outcome.new_items} new, {outcome.analysed} analysed, {outcome.failed} failed, "
        f"{outcome.pending} left for the next cycle; cost ${outcome.cost_usd:.4f}",
    ]
    for source in outcome.sources:
        if source.status == "ok":
            lines.append(
                f"- Source {source.source}: {source.fetched} fetched, {source.new_items} new, "
                f"{source.updated_items} already known or updated"
            )
        else:
            lines.append(f"- Source {source.source}: **unavailable**: {source.error}")
    if outcome.experiments:
        lines.append(f"- Experiments proposed: {', '.join(f'`{e}`' for e in outcome.experiments)}")
    if any(row["source"] == SAMPLE for row in rows):
        lines.append(
            "- Items marked **sample** are synthetic examples shipped with Autarky (no real source "
            'answered, or `research.sample_source` is "always"): they show what research does.'
        )
    lines += ["", "## Items, best first", ""]
    ranked = sorted(rows, key=lambda r: (-r["score"], r["item_id"]))[:MAX_LISTED]
    if not ranked:
        lines.append("Nothing new was analysed in this cycle.")
    for row in ranked:
        label = "offline" if row["provider"] == OFFLINE_MODEL else f"{row['provider']}:{row['model']}"
        title = row["title"].replace("[", "(").replace("]", ")")
        link = f"[{title}]({row['url']})" if row["url"] else title
        rationale = " ".join((row["rationale"] or "").split())
        if len(rationale) > RATIONALE_CHARS:
            rationale = rationale[: RATIONALE_CHARS - 1] + "…"
        tags = f" · tags: {', '.join(row['tags'])}" if row["tags"] else ""
        sample = " **sample**" if row["source"] == SAMPLE else ""
        lines.append(
            f"- **{row['score']:.2f}**{sample} {link} ({row['source']} {row['source_id']}; {label}){tags}"
        )
        if rationale:
            lines.append(f"  {rationale}")
    if len(rows) > MAX_LISTED:
        lines.append(f"- … and {len(rows) - MAX_LISTED} more (`autarky research list`)")
    return "\n".join(lines) + "\n"


class DigestActivities:
    def __init__(self, settings: AutarkySettings, kb: KnowledgeBaseHandle) -> None:
        self.settings = settings
        self.kb = kb

    @property
    def directory(self) -> Path:
        return self.settings.data_dir / "research" / "digests"

    @activity.defn(name="write_research_digest")
    async def write_digest(self, request: DigestInput) -> str | None:
        """Write the cycle's page; returns where it is (the S3 URI when configured, else the file), or None
        when the cycle has nothing to say. Pages past their retention go first."""
        await asyncio.to_thread(self.prune)
        if nothing_to_say(request.outcome):
            return None
        ids = [s.item_id for s in request.scores]
        rows = await self.kb.run(lambda: self.kb.get().analysed_items(ids))
        text = render_digest(request.outcome, rows)
        path = self.directory / digest_name(request.outcome.cycle_id)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".md.partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)  # readers never see half a page

        await asyncio.to_thread(write)
        uri = self.settings.research.digest_s3_uri
        if uri is None:
            return str(path)
        return await asyncio.to_thread(self._upload, uri, path.name, text)

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete the local pages older than `research.digest_retention` (by their modification time); the
        pages deleted. Pages on S3 are left to the bucket's lifecycle rules."""
        if not self.directory.is_dir():
            return []
        retention = self.settings.research.digest_retention.total_seconds()
        cutoff = (time.time() if now is None else now) - retention
        pruned = []
        for page in self.directory.glob("*.md"):
            try:
                if page.stat().st_mtime < cutoff:
                    page.unlink()
                    pruned.append(page)
            except FileNotFoundError:  # another worker pruned it first
                continue
        if pruned:
            log.info("research digests pruned", count=len(pruned))
        return pruned

    def _upload(self, uri: str, name: str, text: str) -> str:
        import boto3  # only when digests go to S3
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(uri)
        bucket, prefix = parsed.netloc, parsed.path.strip("/")
        key = f"{prefix}/{name}" if prefix else name
        s3 = boto3.client("s3", endpoint_url=self.settings.research.digest_s3_endpoint_url)
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="text/markdown")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "Throttling"):
                raise  # transient: Temporal retries
            raise ApplicationError(
                f"S3 refused the digest at s3://{bucket}/{key} ({code}): check "
                "AUTARKY_RESEARCH__DIGEST_S3_URI and the credentials' permission to put objects",
                type="DigestRejected",
                non_retryable=True,
            ) from error
        except BotoCoreError:
            raise  # network and credential-chain trouble: retried, visible in the UI
        log.info("research digest uploaded", uri=f"s3://{bucket}/{key}")
        return f"s3://{bucket}/{key}"
