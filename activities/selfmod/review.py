"""`review_promotion`: what the person asked to approve a promotion must see. Whether the version's
sources differ from the ones this release ships (PROJECT_ROOT), whoever wrote them: an LLM in this run,
an earlier run, or an earlier release (after an upgrade, a parameter-only candidate carries the previous
release's code). When they do, the whole diff goes to the knowledge base, which every approver reads
(`autarky approvals --diff ID`), and the workflow gets its id and an excerpt marked where it is cut.
"""

from __future__ import annotations

import asyncio
import difflib

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.selfmod.shipped import shipped_text
from activities.selfmod.versions import AgentRepository, VersionStoreError
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import agent_spec
from autarky.selfmod.types import PromotionReview, ReviewInput

DIFF_EXCERPT = 3000  # characters of the diff in the approval itself


def source_diff(repo: AgentRepository, commit: str, source_files: list[str]) -> str:
    """Unified diff from the shipped sources to the version's ("" when they are the same)."""
    out: list[str] = []
    for path in source_files:
        try:
            shipped = shipped_text(path)  # a generated agent's from its registration
        except FileNotFoundError:
            shipped = ""
        try:
            version = repo.read_file(commit, path)
        except VersionStoreError:  # a path the version lacks: all of the shipped file is removed
            version = ""
        lines = difflib.unified_diff(
            shipped.splitlines(keepends=True),
            version.splitlines(keepends=True),
            f"shipped/{path}",
            f"{commit[:10]}/{path}",
        )
        out += (line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n" for line in lines)
    return "".join(out)


def excerpt(diff: str, diff_id: int, limit: int = DIFF_EXCERPT) -> str:
    """The diff's start, at most `limit` characters cut at a line end, then a line that says whether
    anything is cut, how much, and where the whole diff is."""
    where = f"autarky approvals --diff {diff_id}"
    if len(diff) <= limit:
        return f"{diff}(end of the diff; stored as {where})"
    head = diff[:limit]
    if "\n" in head[limit // 2 :]:
        head = head[: head.rindex("\n") + 1]
    return f"{head}… {len(diff) - len(head)} more characters, full diff: {where}"


def changed_lines(diff: str) -> int:
    return sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++ ", "--- ")))


class PromotionReviewActivities:
    def __init__(self, settings: AutarkySettings, kb: KnowledgeBaseHandle) -> None:
        self.root = settings.data_dir / "agents"
        self.kb = kb

    @activity.defn
    async def review_promotion(self, request: ReviewInput) -> PromotionReview:
        try:
            spec = agent_spec(request.agent)
        except ValueError as error:
            raise ApplicationError(str(error), type="BadAgent", non_retryable=True) from error
        from activities.selfmod.agent_store import AgentStore  # SQLAlchemy: loaded on first use

        repo = AgentRepository(self.root, spec.name, AgentStore(self.kb))
        diff = await asyncio.to_thread(source_diff, repo, request.commit, spec.source_files)
        if not diff:
            return PromotionReview(differs=False)
        from activities.selfmod.diff_store import store_diff  # SQLAlchemy: loaded on first use (handle.py)

        diff_id = await self.kb.run(lambda: store_diff(self.kb.get(), spec.name, request.commit, diff))
        return PromotionReview(
            differs=True, diff_id=diff_id, diff_lines=changed_lines(diff), excerpt=excerpt(diff, diff_id)
        )
