"""The research analyser's relevance scorer when the active `relevance-scorer` version changed the code:
that code scores the items in the sandbox every candidate gets (activities/selfmod/sandbox.py: no
network, no secrets, limits), never in the worker process beside the LLM keys and the clients.

Each run gets a fresh work directory holding the items and parameters; the version's code tree
(activities/selfmod/live_code.py) is lent read-only and checked against its git blobs first. Analyses
that arrive together (the research cycle runs several at once) share one run. What the run writes is
read with a size bound and validated (a finite score in [0, 1], strings capped); a failed run, a bad
output or a tampered file scores with the shipped code and the version's parameters instead, with a
warning. A version whose sources are the shipped ones is shipped code: it runs here, in process.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from activities.selfmod.evaluation import read_own_file
from activities.selfmod.live_code import TamperedCode, differs_from_shipped, export_code, verify_code
from activities.selfmod.sandbox import (
    DATA_ROOT,
    SandboxUnavailable,
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_python,
)
from activities.selfmod.versions import AgentRepository, VersionStoreError
from autarky.research.relevance import Relevance, RelevanceParams, RelevanceScorer
from autarky.selfmod.agents import RELEVANCE_SCORER
from autarky.selfmod.types import SandboxLimits

if TYPE_CHECKING:
    from activities.selfmod.agent_store import AgentStore

log = structlog.get_logger(__name__)

LIMITS = SandboxLimits(cpu_seconds=60, wall_seconds=90, file_size_mib=8, output_bytes=16 * 1024)
BATCH_WINDOW = 0.05  # seconds the first analysis waits for others to join its run
MAX_BATCH = 64
OUTPUT_PER_ITEM = 16 * 1024  # bytes of scores.json an item may take: its rationale, tags and terms fit
MAX_RATIONALE = 1000
MAX_LIST = 8  # tags, matched terms
MAX_WORD = 80  # characters of a tag, a term or an interest


class BadScores(ValueError):
    """What the sandboxed run wrote (or how it ended) is not a valid answer for the items asked."""


@dataclass
class _Request:
    title: str
    text: str
    done: threading.Event = field(default_factory=threading.Event)
    result: Relevance | None = None


class SandboxedScorer:
    """Scores like `RelevanceScorer` (`score`, `params`), running version `commit`'s code in the sandbox."""

    def __init__(
        self,
        root: Path,
        commit: str,
        interests: Sequence[str],
        params: RelevanceParams,
        limits: SandboxLimits = LIMITS,
        workdir_parent: Path | None = None,
        require_totals: bool = True,
        store: AgentStore | None = None,
    ) -> None:
        self.fallback = RelevanceScorer(interests, params)  # the shipped code with the version's parameters
        self.params = self.fallback.params
        self.interests = list(interests)
        # With the store every host shares, a version promoted on another host is fetched by its hash.
        self.repo = AgentRepository(root, RELEVANCE_SCORER.name, store)
        self.commit = commit
        self.limits = limits
        self.workdir_parent = workdir_parent
        # Code other than the shipped sources: where the machine cannot bound the run's totals it does not
        # run (UnboundedTotals, a SandboxUnavailable) unless evolution.allow_unbounded_totals is "always".
        self.require_totals = require_totals
        self.refused: str | None = None  # why the version's code is not run at all (then the shipped)
        self._prepared = False
        self._code: tuple[Path, dict[str, str]] | None = None  # None once prepared: shipped sources
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._serving = False

    def score(self, title: str, text: str = "") -> Relevance:
        """Blocks (call it in a thread): joins the next sandboxed run, or starts one."""
        request = _Request(title, text)
        with self._lock:
            self._pending.append(request)
            lead, self._serving = not self._serving, True
        if lead:
            time.sleep(BATCH_WINDOW)
            while batch := self._take():
                try:
                    results = self.score_many([(r.title, r.text) for r in batch])
                except Exception as error:  # a bug here must not hang the analyses waiting on this run
                    log.warning("evolved_relevance_scorer_failed", commit=self.commit[:12], error=repr(error))
                    results = [self.fallback.score(r.title, r.text) for r in batch]
                for r, result in zip(batch, results, strict=True):
                    r.result = result
                    r.done.set()
        request.done.wait()
        assert request.result is not None
        return request.result

    def _take(self) -> list[_Request]:
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._serving = bool(batch)
            return batch

    def score_many(self, items: Sequence[tuple[str, str]]) -> list[Relevance]:
        """One sandboxed run for all `items`; the shipped code (and a warning) when it cannot be used."""
        if self._prepare():
            assert self._code is not None
            try:
                return self._run(items, *self._code)
            except (SandboxUnavailable, TamperedCode) as error:
                self.refused = str(error)  # neither mends itself: not tried again for this version
                log.warning(
                    "evolved_relevance_scorer_refused",
                    commit=self.commit[:12],
                    why=self.refused,
                    instead="the shipped code with the version's parameters",
                )
            except BadScores as error:
                log.warning(
                    "evolved_relevance_scorer_output_rejected",
                    commit=self.commit[:12],
                    why=str(error),
                    instead="the shipped code with the version's parameters, for these items",
                )
        return [self.fallback.score(title, text) for title, text in items]

    def _prepare(self) -> bool:
        """Whether the version's own code is to run (else the shipped code does, `refused` saying why)."""
        if self.refused is not None:
            return False
        if not self._prepared:
            self._prepared = True
            try:
                if shutil.which("bwrap") is None:
                    raise SandboxUnavailable("bubblewrap is not installed (`apt-get install bubblewrap`)")
                if differs_from_shipped(self.repo, self.commit, RELEVANCE_SCORER.source_files):
                    self._code = export_code(self.repo, self.commit, RELEVANCE_SCORER.source_files)
            except (SandboxUnavailable, VersionStoreError, OSError) as error:
                self.refused = f"{type(error).__name__}: {error}"
                log.warning(
                    "evolved_relevance_scorer_not_run",
                    commit=self.commit[:12],
                    why=self.refused,
                    instead="the shipped code with the version's parameters",
                )
                return False
        return self._code is not None

    def _run(self, items: Sequence[tuple[str, str]], tree: Path, blobs: dict[str, str]) -> list[Relevance]:
        verify_code(tree, blobs)  # right before the run: a file changed since the export is refused
        work = new_workdir(self.workdir_parent, prefix="autarky-score-")
        try:
            (work / "params.json").write_text(self.params.model_dump_json())
            inputs = {"interests": self.interests, "items": [{"title": t, "abstract": a} for t, a in items]}
            (work / "items.json").write_text(json.dumps(inputs))
            command = [sandbox_python(), "-m", "autarky.selfmod.harness", "score", RELEVANCE_SCORER.name]
            command += ["--params", "params.json", "--data", "items.json", "--out", "scores.json"]
            result = run_sandboxed(
                command,
                work,
                self.limits,
                data={"code": tree},
                env={"PYTHONPATH": f"{DATA_ROOT}/code"},
                outputs=["scores.json"],
                require_totals=self.require_totals,
            )
            if not result.ok:
                tail = (result.output.strip().splitlines() or [""])[-1][:300]
                raise BadScores(f"the run failed in the sandbox ({result.summary()}): {tail}")
            raw = read_bounded(work / "scores.json", OUTPUT_PER_ITEM * len(items) + 1024)
            return parse_scores(raw, len(items))
        finally:
            remove_workdir(work)


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """A file the sandbox wrote: a regular file (not a symlink to the host, not a FIFO), ≤ `max_bytes`."""
    try:
        return read_own_file(path, max_bytes, ": larger than its items can need", error=BadScores)
    except FileNotFoundError as error:
        raise BadScores(f"{path.name} cannot be opened: {error.strerror}") from error


def parse_scores(raw: bytes, count: int) -> list[Relevance]:
    """`{"results": [...]}` with one valid analysis per item asked, in order; BadScores otherwise."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise BadScores(f"scores.json is not JSON: {str(error)[:200]}") from error
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise BadScores(f"scores.json does not hold one result for each of the {count} items")
    return [_relevance(r, i) for i, r in enumerate(results)]


def _relevance(raw: Any, index: int) -> Relevance:
    if not isinstance(raw, dict):
        raise BadScores(f"result {index} is not an object")
    score = raw.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise BadScores(f"result {index}: score {str(score)[:40]!r} is not a finite number")
    if not 0.0 <= score <= 1.0:
        raise BadScores(f"result {index}: score {score} is outside [0, 1]")
    interest = raw.get("interest")
    if interest is not None and not isinstance(interest, str):
        raise BadScores(f"result {index}: interest is not a string")
    rationale = raw.get("rationale", "")
    if not isinstance(rationale, str):
        raise BadScores(f"result {index}: rationale is not a string")
    return Relevance(
        score=float(score),
        interest=None if interest is None else _cap(interest, MAX_WORD),
        matched_terms=_words(raw.get("matched_terms", []), index, "matched_terms"),
        rationale=_cap(rationale, MAX_RATIONALE),
        tags=_words(raw.get("tags", []), index, "tags"),
    )


def _words(raw: Any, index: int, name: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
        raise BadScores(f"result {index}: {name} is not a list of strings")
    return [_cap(w, MAX_WORD) for w in raw[:MAX_LIST]]


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
