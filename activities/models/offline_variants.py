"""The built-in model slot `research-relevance-offline`: two variants of the offline relevance analyser,
and the labelled examples (`relevance_labels.json`) an offline A/B evaluation scores them on.

- `bm25` (active): `RelevanceScorer` as the research cycle uses it, on title and abstract.
- `bm25-title`: the same scorer on the title only: cheaper, and much worse: it misses items whose title
  does not name the topic. On the 176 labelled examples, with "relevant" meaning score > 0.5, `bm25` is
  right on 148 (84.1 %), `bm25-title` on 118 (67.0 %) (`labelled_accuracy`; tests/test_model_registry.py
  checks the gap). A known-worse challenger: an A/B test of the slot must keep the incumbent.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from autarky.models.types import Variant
from autarky.research.relevance import MODEL, PROVIDER, RelevanceScorer

if TYPE_CHECKING:
    from activities.models.registry import ModelRegistry

OFFLINE_SLOT = "research-relevance-offline"
LABELS_FILE = Path(__file__).with_name("relevance_labels.json")
THRESHOLD = 0.5  # an example counts as judged relevant when its score is above this


@dataclass(frozen=True)
class Example:
    id: str
    title: str
    abstract: str
    relevant: bool


_scorer: RelevanceScorer | None = None
_lock = threading.Lock()


def scorer() -> RelevanceScorer:
    """One scorer (default interests) per process: its index is built once."""
    global _scorer
    with _lock:
        if _scorer is None:
            _scorer = RelevanceScorer()
        return _scorer


def _full(example: Example) -> float:
    return scorer().score(example.title, example.abstract).score


def _title_only(example: Example) -> float:
    return scorer().score(example.title, "").score


# variant name → how it scores an example (0..1)
SCORERS: dict[str, Callable[[Example], float]] = {"bm25": _full, "bm25-title": _title_only}

VARIANTS = [
    Variant(name="bm25", provider=PROVIDER, model=MODEL, prompt_version="title+abstract"),
    Variant(name="bm25-title", provider=PROVIDER, model=MODEL, prompt_version="title-only"),
]
ACTIVE = "bm25"
DESCRIPTION = "offline relevance analyser of research items (no LLM): A/B-evaluated on labelled examples"


@cache
def examples() -> tuple[Example, ...]:
    """The labelled examples, in file order."""
    document = json.loads(LABELS_FILE.read_text(encoding="utf-8"))
    return tuple(
        Example(id=e["id"], title=e["title"], abstract=e["abstract"], relevant=bool(e["relevant"]))
        for e in document["examples"]
    )


def draw(slot: str, batch: int, size: int) -> list[Example]:
    """`size` examples for batch `batch` of `slot`, the same on every call: a shuffle seeded by both
    (repeated, reshuffled, when `size` exceeds the examples)."""
    pool = examples()
    rng = random.Random(f"{slot}\0{batch}")
    drawn: list[Example] = []
    while len(drawn) < size:
        order = list(pool)
        rng.shuffle(order)
        drawn.extend(order[: size - len(drawn)])
    return drawn


def score(variant: str, example: Example) -> float:
    try:
        return SCORERS[variant](example)
    except KeyError:
        raise ValueError(
            f"no offline scorer for variant {variant!r} (offline variants: {', '.join(SCORERS)})"
        ) from None


def quality(variant: str, example: Example) -> float:
    """1.0 when the variant judges the example as its label says, else 0.0."""
    return 1.0 if (score(variant, example) > THRESHOLD) == example.relevant else 0.0


def labelled_accuracy(variant: str) -> float:
    """The variant's mean quality over every labelled example."""
    pool = examples()
    return sum(quality(variant, e) for e in pool) / len(pool)


def ensure_default_slots(registry: ModelRegistry) -> list[str]:
    """Register the built-in offline slot (again: a no-op, also after an A/B test changed its routing)."""
    info = registry.register_slot(OFFLINE_SLOT, VARIANTS, ACTIVE, DESCRIPTION)
    return [info.name]
