"""The offline analyser that learns from people (pure code, no I/O): their approve/reject decisions on
experiments and their ratings of items (`autarky research rate ITEM good|bad`).

As arxiv-sanity-lite does per user, a linear classifier on TF-IDF features of the decided items, with the
shipped lexical scorer (BM25 against the interests, autarky/research/relevance.py) as the cold start:

- Features: the item's terms as the shipped scorer reads them (light-stemmed words and adjacent-word
  pairs, title words counted `title_weight` times), sublinear tf × smoothed idf over the decided items,
  terms in fewer than `min_df` decided items dropped, each row L2-normalised (sklearn's TfidfVectorizer).
- Model: logistic regression whose offset is the cold start's logit,
  ``logit p = logit(cold) + w·tfidf(x) + b·BIAS + c·logit(cold)``, L2-regularised by `l2`. The cold start
  is the prior and the learned part a correction of it: with few decisions the regularisation keeps the
  correction small, and its weight grows with the evidence. `c` lets the decisions say how far the cold
  start is to be trusted, `b` where the threshold lies.
- Both classes are needed: until a person has said "good" to one item and "bad" to another, the score is
  the cold start's, exactly.
- Fitting: Newton's method in the dual (the representer theorem: w = Zᵀa for the n decided rows Z), so
  each step solves an n×n system, whatever the vocabulary: a few hundred decisions fit in milliseconds.
  Deterministic: no random initialisation, no sampling; the decisions' order does not matter.

numpy is imported on first fit (it comes with bm25s), not at import.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import BaseModel, Field

from autarky.research.relevance import MODEL, Relevance, terms

LEARNER = "lr"  # the label's mark for the learned part
_CLIP = 0.02  # cold scores are clipped to [CLIP, 1 − CLIP] before their logit: 0 and 1 are not certainties
_MAX_STEPS = 50
_TOLERANCE = 1e-8


class LearningParams(BaseModel):
    """The learner's constants. Chosen on the 'dev' part of bench/data/research_labels.json only
    (bench/research_quality.py); the held-out figures are measured on its 'eval' part."""

    l2: float = Field(
        0.3, gt=0, description="L2 regularisation of the correction (higher: trusts decisions less)"
    )
    min_df: int = Field(2, ge=1, description="a term counts when at least this many decided items have it")
    title_weight: float = Field(2.0, ge=1, description="a title term counts as this many occurrences")
    bias_scale: float = Field(
        1.0, gt=0, description="the bias feature's value (its regularisation is 1/this²)"
    )
    cold_scale: float = Field(0.0, ge=0, description="the cold-start feature's scale (0: trust it as it is)")


@dataclass(frozen=True)
class Decision:
    """A person's verdict on an item: `good` (approved, rated good) or not (rejected, rated bad)."""

    item_id: int
    title: str
    text: str
    good: bool


class ColdScorer(Protocol):
    """What the learner needs of the cold start: the shipped scorer, an evolved version, or its sandbox."""

    def score(self, title: str, text: str = "") -> Relevance: ...

    def score_many(self, items: Sequence[tuple[str, str]]) -> list[Relevance]: ...


def decisions_digest(decisions: Iterable[Decision]) -> str:
    """A short name for a set of decisions (ids and verdicts, in any order): the learned model's identity."""
    text = ";".join(f"{d.item_id}:{int(d.good)}" for d in sorted(decisions, key=lambda d: d.item_id))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def learned_label(decisions: Sequence[Decision], base: str = MODEL) -> str:
    """The model name of analyses scored with these decisions: `base` while nothing can be learned
    (fewer than one decision of each kind), else ``base+lr<n>-<digest>``, so any new or changed decision
    names a new model."""
    if not _both_classes(decisions):
        return base
    return f"{base}+{LEARNER}{len(decisions)}-{decisions_digest(decisions)}"


def _both_classes(decisions: Sequence[Decision]) -> bool:
    return any(d.good for d in decisions) and not all(d.good for d in decisions)


def _logit(score: float) -> float:
    p = min(max(score, _CLIP), 1 - _CLIP)
    return math.log(p / (1 - p))


def _counts(title: str, text: str, title_weight: float) -> Counter[str]:
    counts: Counter[str] = Counter()
    for term in terms(title):
        counts[term] += title_weight
    counts.update(terms(text))
    return counts


@dataclass(frozen=True)
class LearnedModel:
    """A fitted correction: per term its weight (idf folded in), and the bias and cold-start weights."""

    idf: dict[str, float]
    weights: dict[str, float]
    bias: float
    cold: float
    decisions: int
    params: LearningParams

    def correction(self, title: str, text: str, cold_score: float) -> float:
        """The learned part of the logit for an item the cold start scored `cold_score`."""
        row = _tfidf(_counts(title, text, self.params.title_weight), self.idf)
        linear = sum(value * self.weights.get(term, 0.0) for term, value in row.items())
        return (
            linear
            + self.bias * self.params.bias_scale
            + self.cold * self.params.cold_scale * _logit(cold_score)
        )

    def probability(self, title: str, text: str, cold_score: float) -> float:
        z = _logit(cold_score) + self.correction(title, text, cold_score)
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    def top_terms(self, title: str, text: str, count: int = 3) -> list[tuple[str, float]]:
        """The item's terms that moved its score most (signed), to say why in the rationale."""
        row = _tfidf(_counts(title, text, self.params.title_weight), self.idf)
        moved = [(t, v * self.weights[t]) for t, v in row.items() if self.weights.get(t)]
        return sorted(moved, key=lambda tv: (-abs(tv[1]), tv[0]))[:count]


def _tfidf(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    row = {t: (1 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf and c > 0}
    norm = math.sqrt(sum(v * v for v in row.values()))
    return {t: v / norm for t, v in row.items()} if norm else {}


def fit(
    decisions: Sequence[Decision], cold_scores: Sequence[float], params: LearningParams | None = None
) -> LearnedModel | None:
    """The correction learned from `decisions` (whose cold-start scores are `cold_scores`); None while
    the decisions are all of one kind."""
    import numpy as np  # lazy: see the module's docstring

    p = params or LearningParams()
    if len(decisions) != len(cold_scores):
        raise ValueError(f"{len(decisions)} decisions but {len(cold_scores)} cold-start scores")
    if not _both_classes(decisions):
        return None
    counts = [_counts(d.title, d.text, p.title_weight) for d in decisions]
    df: Counter[str] = Counter(t for c in counts for t in c)
    n = len(decisions)
    vocabulary = sorted(t for t, k in df.items() if k >= p.min_df)
    idf = {t: math.log((1 + n) / (1 + df[t])) + 1 for t in vocabulary}
    column = {t: j for j, t in enumerate(vocabulary)}
    colds = np.array([_logit(s) for s in cold_scores])
    z = np.zeros((n, len(vocabulary) + 2))
    for i, c in enumerate(counts):
        for t, v in _tfidf(c, idf).items():
            z[i, column[t]] = v
    z[:, -2] = p.bias_scale
    z[:, -1] = p.cold_scale * colds
    y = np.array([1.0 if d.good else 0.0 for d in decisions])
    a = _newton(z @ z.T, colds, y, p.l2)
    w = z.T @ a
    return LearnedModel(
        idf=idf,
        weights={t: float(w[j]) for t, j in column.items() if w[j] != 0},
        bias=float(w[-2]),
        cold=float(w[-1]),
        decisions=n,
        params=p,
    )


def _newton(kernel: Any, offset: Any, y: Any, l2: float) -> Any:
    """Dual coefficients a of L2-regularised logistic regression with logits offset + K·a: minimises
    Σ log-loss + l2/2 · aᵀKa. Newton's step is (WK + l2·I)⁻¹(p − y + l2·a) (W = diag p(1−p)), halved
    while it does not lower the objective."""
    import numpy as np

    def objective(a: Any) -> float:
        f = offset + kernel @ a
        # log(1 + e^f) − y·f, computed without overflow
        return float(np.sum(np.logaddexp(0.0, f) - y * f) + l2 / 2 * a @ kernel @ a)

    a = np.zeros(len(y))
    current = objective(a)
    for _ in range(_MAX_STEPS):
        prob = 1 / (1 + np.exp(-(offset + kernel @ a)))
        weight = prob * (1 - prob)
        step = np.linalg.solve(weight[:, None] * kernel + l2 * np.eye(len(y)), prob - y + l2 * a)
        scale = 1.0
        while scale > 1e-4:
            candidate = a - scale * step
            value = objective(candidate)
            if value <= current:
                break
            scale /= 2
        else:
            break
        a, improvement, current = candidate, current - value, value
        if improvement < _TOLERANCE * (1 + abs(current)):
            break
    return a


class LearningScorer:
    """The cold scorer corrected by what `decisions` taught; with no decision of each kind, the cold
    scorer's results unchanged. `score` and `score_many` as RelevanceScorer's, labelled `model`."""

    def __init__(
        self,
        cold: ColdScorer,
        decisions: Sequence[Decision],
        params: LearningParams | None = None,
        base: str = MODEL,
    ) -> None:
        self.cold = cold
        self.decisions = list(decisions)
        self.model_name = learned_label(self.decisions, base)
        self.learned: LearnedModel | None = None
        if _both_classes(self.decisions):
            scores = cold.score_many([(d.title, d.text) for d in self.decisions])
            self.learned = fit(self.decisions, [r.score for r in scores], params)

    def score(self, title: str, text: str = "") -> Relevance:
        cold = self.cold.score(title, text)  # one by one: the sandboxed scorer batches concurrent calls
        return cold if self.learned is None else self._corrected(title, text, cold)

    def score_many(self, items: Sequence[tuple[str, str]]) -> list[Relevance]:
        colds = self.cold.score_many(items)
        if self.learned is None:
            return colds
        return [self._corrected(title, text, cold) for (title, text), cold in zip(items, colds, strict=True)]

    def _corrected(self, title: str, text: str, cold: Relevance) -> Relevance:
        assert self.learned is not None
        score = round(self.learned.probability(title, text, cold.score), 4)
        moved = self.learned.top_terms(title, text)
        said = (
            ", ".join(f"{t.replace('_', ' ')} {'+' if v > 0 else '−'}" for t, v in moved) or "no known term"
        )
        rationale = (
            f"{cold.rationale} Learned from {self.learned.decisions} decisions of people: "
            f"{cold.score:.2f} → {score:.2f} ({said})."
        )
        return replace(cold, score=score, rationale=rationale, model=self.model_name)
