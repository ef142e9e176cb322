"""Research payloads passed between workflows and the knowledge-base activities.

Workflow histories keep every payload, so these carry ids and a few small fields; documents (abstracts,
rationales, plans) live in the knowledge base and are read there by the activities that need them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

ItemKind = Literal["paper", "repository"]
ExperimentState = Literal[
    "proposed", "planned", "awaiting_approval", "approved", "rejected", "expired", "failed"
]

OFFLINE_MODEL = "offline"

# arXiv ids: new style 2401.00001v2, old style hep-th/9901001v3; the version suffix is not part of the id.
_ARXIV_VERSION = re.compile(r"^(?P<base>.+?)v(?P<version>\d+)$")


def split_arxiv_id(source_id: str) -> tuple[str, int | None]:
    """``2401.00001v2`` → ``("2401.00001", 2)``; an id without a version → ``(id, None)``."""
    source_id = source_id.strip()
    for prefix in ("arXiv:", "arxiv:"):
        source_id = source_id.removeprefix(prefix)
    match = _ARXIV_VERSION.match(source_id)
    if match is None:
        return source_id, None
    return match["base"], int(match["version"])


def normalise_source_id(source: str, source_id: str) -> tuple[str, int | None]:
    """The id an item is stored under, and the version the raw id names (arXiv only)."""
    if source == "arxiv":
        return split_arxiv_id(source_id)
    return source_id.strip(), None


class ItemIn(BaseModel):
    """A paper or repository as a source activity found it (stored by `upsert_item`, then referred to by id).

    For arXiv the version suffix of `source_id` is split off into `version`, so v2 updates v1's item.
    """

    kind: ItemKind
    source: str = Field(min_length=1, max_length=32, description="e.g. 'arxiv', 'github'")
    source_id: str = Field(min_length=1, max_length=255)
    title: str = Field(min_length=1)
    authors: list[str] = Field(default_factory=list, description="authors of a paper, owner of a repository")
    abstract: str = ""
    url: str = ""
    version: int = Field(1, ge=1)
    # Keys the same item may be stored under from before (GitHub: its full_name, before numeric ids):
    # `upsert_item` rekeys such a row instead of adding a second one. Not stored itself.
    former_source_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _normalise(self) -> ItemIn:
        base, version = normalise_source_id(self.source, self.source_id)
        if not base:
            raise ValueError(f"source_id {self.source_id!r} has no id before its version")
        self.source_id = base
        if version is not None:
            self.version = max(self.version, version) if "version" in self.model_fields_set else version
        return self


class ItemRef(BaseModel):
    item_id: int
    created: bool


class AnalysisIn(BaseModel):
    """One analysis of one item; (item, provider, model, prompt_version) identifies it: a retry is a no-op."""

    item_id: int
    provider: str = Field(min_length=1, max_length=64, description="'openai', 'anthropic', … or 'offline'")
    model: str = Field(min_length=1, max_length=128)
    prompt_version: str = Field("1", min_length=1, max_length=64)
    score: float = Field(ge=0, le=1)
    rationale: str = ""
    tags: list[str] = Field(default_factory=list)
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    cost: float = Field(0.0, ge=0)


class AnalysisRef(BaseModel):
    analysis_id: int
    created: bool


class ScoredItem(BaseModel):
    """An item with its best score, as `items_above` lists it."""

    item_id: int
    kind: ItemKind
    source: str
    source_id: str
    title: str
    score: float


class ExperimentRef(BaseModel):
    experiment_id: int
    workflow_id: str
    item_id: int
    state: ExperimentState


class ExperimentUpdate(BaseModel):
    """Fields of an experiment to change; None leaves a field as it is."""

    workflow_id: str = Field(min_length=1)
    state: ExperimentState | None = None
    plan: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    cost: float | None = Field(None, ge=0, description="what planning it cost (USD)")
