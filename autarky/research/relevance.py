"""The offline analyser: how relevant a research item is to the interests, without an LLM (pure code).

When no LLM key is configured this scores the research cycle's items; its analyses say so everywhere
(provider `PROVIDER`, model `MODEL`).

Scoring, for each interest:
- The interest becomes a small document of terms: its phrase (counted twice) and its expansions (the
  keywords after a colon, e.g. ``"graph databases: neo4j, cypher"``, and for the default interests a
  built-in synonym list, `EXPANSIONS`). Terms are light-stemmed words and adjacent-word pairs
  ("kv_cach"), so a keyword that matches as a phrase counts more than its words apart. Words that say
  little alone (`GENERIC`: "system", "model", "inference", …) count only inside such pairs: "inference"
  alone is as likely Bayesian as LLM.
- bm25s indexes one document per interest and gives each term its BM25 weight for each interest: IDF
  across the interests (a term several interests share tells them apart less) times the saturated term
  frequency (the phrase and words many of its keywords share weigh more).
- An item is a query against that index: the weights of its distinct terms, each times
  ``tf·(1+K3)/(tf+K3)`` (BM25's query-side saturation; title words count twice), summed. So mentioning
  "agent" ten times is not ten matches, and the score reads only the item and the interests: it is the
  same whether the item is scored alone or in a batch of 200, and does not drift as items come and go.
- That sum x is expressed in units of the weight one exclusive expansion word has for the interest (a
  sentinel term in each interest document, weighed by the same index), so x ≈ "how many distinct
  matches", whatever the number of interests or the length of their lists. The score is the saturating
  ``x^N / (x^N + HALF^N)``: 0 at no match, ½ at `HALF` matches, → 1. With HALF = 2.7, N = 2: one match
  0.12, two 0.35, three 0.55, four 0.69, five 0.77, seven 0.87 (a two-word keyword matched as a phrase
  is about three: its pair and its two words). An item squarely about an interest (title and abstract
  use its vocabulary) lands above 0.7, one that touches it in passing in 0.3–0.7, one that shares a
  word or two with it below 0.3. HALF and N were set by eye on the hand-written items of
  tests/test_relevance.py; the test bands are the calibration's check.
- The item's score is its best interest's.

bm25s (and numpy) are imported on first scoring, not at import: a worker that never analyses does not
pay their memory (about 20 MiB RSS).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

PROVIDER = "offline"
# An analysis is identified by (item, provider, model, prompt version): bump the version here whenever
# the scores change (expansions, GENERIC, the constants below), or re-analysing keeps the old scores.
MODEL = "offline-bm25-v1"

DEFAULT_INTERESTS = (
    "AI agents",
    "autonomous systems",
    "LLM inference",
    "distributed systems",
    "ML optimisation",
)

# Built-in synonyms of the default interests (looked up by the phrase, case-insensitively). Chosen for
# what arXiv abstracts and GitHub descriptions about each really say, which is rarely the phrase itself.
EXPANSIONS: dict[str, str] = {
    "ai agents": (
        "agent, agentic, LLM agent, language agent, autonomous agent, tool use, tool calling, "
        "function calling, planning, planner, multi-agent, agent framework, web agent, "
        "computer use, task decomposition, self-reflection, orchestration, agent memory"
    ),
    "autonomous systems": (
        "autonomy, self-driving, autonomous driving, robot, robotics, self-healing, "
        "self-adaptive, self-managing, autonomic computing, MAPE-K, closed-loop control, control loop, "
        "unmanned, UAV, remediation, runtime adaptation"
    ),
    "llm inference": (
        "large language model, serving, quantization, KV cache, speculative decoding, "
        "vLLM, throughput, latency, continuous batching, PagedAttention, FlashAttention, TensorRT, "
        "prefill, decoding, time to first token, tokens per second, GPU, attention kernel"
    ),
    "distributed systems": (
        "consensus, Raft, Paxos, replication, fault tolerance, fault-tolerant, "
        "consistency, linearizability, sharding, partition tolerance, Byzantine, leader election, "
        "cluster, microservices, Kubernetes, container orchestration, RPC, scheduler, scheduling, "
        "workflow orchestration, geo-distributed"
    ),
    "ml optimisation": (
        "optimizer, gradient descent, stochastic gradient, SGD, Adam, learning rate, convergence, "
        "hyperparameter, hyperparameter tuning, mixed precision, training efficiency, second-order, "
        "loss landscape, weight decay, pruning, distillation, neural network training"
    ),
}

# Words that mean little on their own; inside a pair ("language model", "tool use") they still count.
GENERIC = (
    "ai system model learn data method network neural base use approach framework large language multi "
    "self time first rate precision mix function call new efficient fast high performance memory loop "
    "second order control computing managing task web driving geo weight loss inference efficiency"
)
STOPWORDS = (
    "a an and are as at be by for from has have in into is it its of on or that the their this to was "
    "were which with we our us via than then these those can not no such also both each more most per"
)
_STOPWORDS = frozenset(STOPWORDS.split())

CORE_WEIGHT = 2  # an interest phrase (its word pairs) counts this many times in its document
TITLE_WEIGHT = 2  # a title word counts as this many occurrences
K3 = 0.5  # item-side saturation: tf 1 → 1, tf 2 → 1.2, tf ∞ → 1.5: distinct terms count, repeats little
HALF = 2.7  # matches (in units of one exclusive expansion term) that score ½
STEEPNESS = 2.0  # N in x^N / (x^N + HALF^N): one or two stray matches stay well below ½
LOOSE = 0.3  # an interest scoring at least this is listed in the tags
MAX_TERMS = 8  # matched terms named in `matched_terms` and the rationale


class RelevanceParams(BaseModel):
    """The scorer's tunable numbers (self-modification's `relevance-scorer` agent searches them); the
    defaults are the constants above."""

    core_weight: int = Field(CORE_WEIGHT, ge=1, le=8)
    title_weight: float = Field(TITLE_WEIGHT, ge=1, le=6)
    k3: float = Field(K3, gt=0, le=10)
    half: float = Field(HALF, gt=0, le=20)
    steepness: float = Field(STEEPNESS, ge=0.5, le=8)


_SENTINEL = "\x00unit"  # one per interest document: the unit the matches are counted in
_WORD = re.compile(r"[a-z0-9]+")
_WORD_CASED = re.compile(r"[A-Za-z0-9]+")
_LABEL = "Offline lexical match (BM25 on keywords, no LLM):"


@dataclass(frozen=True)
class Relevance:
    """One item's offline analysis: `score` in [0, 1] for `interest` (None when nothing matched)."""

    score: float
    interest: str | None
    matched_terms: list[str] = field(default_factory=list)
    rationale: str = ""
    tags: list[str] = field(default_factory=list)
    provider: str = PROVIDER
    model: str = MODEL


def stem(word: str) -> str:
    """A light, consistent stemmer: plurals, -ing/-ed, -ise/-ize (British and American spell alike)."""
    w = word
    for british, american in (("isation", "ization"), ("ising", "izing"), ("ised", "ized"), ("iser", "izer")):
        if w.endswith(british) and len(w) > len(british) + 2:
            w = w[: -len(british)] + american
    for suffix in ("ization", "izing", "izer", "ized", "izes", "ize", "ise"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            return w[: -len(suffix)] + "iz"
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif (
        w.endswith("s")
        and len(w) > 3
        and not w.endswith(("ss", "is"))
        and not (w.endswith("us") and len(w) > 4)
    ):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and not w.endswith("eed"):
            base = w[: -len(suffix)]
            if len(base) >= 3 and re.search(r"[aeiouy]", base):
                w = base
                if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                    w = w[:-1]  # planning → plann → plan
                return w
    if w.endswith("e") and len(w) > 4 and not w.endswith("ee"):
        w = w[:-1]  # decode / decoding, cache / caching
    return w


_GENERIC_STEMS = frozenset(stem(w) for w in GENERIC.split())


def words(text: str) -> list[str]:
    """Lower-cased, stemmed words without stopwords; hyphens and punctuation separate words."""
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS]


def terms(text: str) -> list[str]:
    """Words and adjacent-word pairs ("kv_cach"), in order, with repeats."""
    ws = words(text)
    return ws + [f"{a}_{b}" for a, b in itertools.pairwise(ws)]


def _phrase_terms(phrase: str) -> tuple[list[str], list[str]]:
    """A phrase's pairs, and its words unless generic (a one-word phrase keeps its word)."""
    ws = words(phrase)
    pairs = [f"{a}_{b}" for a, b in itertools.pairwise(ws)]
    specific = [w for w in ws if w not in _GENERIC_STEMS]
    return pairs, specific or ([] if pairs else ws)


def parse_interest(interest: str) -> tuple[str, list[str]]:
    """``"phrase: kw1, kw2"`` → (phrase, [kw1, kw2]); the built-in synonyms of a default phrase added."""
    phrase, _, keywords = interest.partition(":")
    phrase = " ".join(phrase.split())
    listed = [k.strip() for k in keywords.split(",") if k.strip()]
    builtin = EXPANSIONS.get(phrase.lower(), "").split(", ")
    return phrase, listed + [k for k in builtin if k]


@dataclass(frozen=True)
class _Index:
    """Per term, its BM25 weight for each interest, in units of that interest's sentinel."""

    weights: dict[str, tuple[float, ...]]


class RelevanceScorer:
    """Scores items against `interests` (phrases, optionally ``"phrase: keyword, keyword"``)."""

    def __init__(
        self, interests: Sequence[str] = DEFAULT_INTERESTS, params: RelevanceParams | None = None
    ) -> None:
        self.params = p = params or RelevanceParams()
        parsed = [parse_interest(i) for i in interests]
        self.interests = [phrase for phrase, _ in parsed if phrase]
        if not self.interests:
            raise ValueError("at least one non-empty interest is needed")
        self._documents: list[list[str]] = []
        self._display: dict[str, str] = {}  # term → how to name it in a rationale
        self._source: dict[str, str] = {}  # pair → the phrase or keyword it is part of
        for phrase, expansions in (p for p in parsed if p[0]):
            # The phrase itself is what weighs most, not its words apart: "inference" alone is as
            # likely Bayesian as LLM.
            pairs, singles = _phrase_terms(phrase)
            document = (pairs or singles) * p.core_weight + (singles if pairs else [])
            for keyword in expansions:
                pairs, singles = _phrase_terms(keyword)
                document += pairs + singles
            for text in (phrase, *expansions):
                self._name_terms(text)
            self._documents.append(document)
        self._index: _Index | None = None
        self._lock = threading.Lock()

    def _name_terms(self, text: str) -> None:
        """Remember how the interests spell each term ("multi-agent", "KV cache"), to name matches."""
        spans = [m for m in _WORD_CASED.finditer(text) if len(m[0]) > 1 and m[0].lower() not in _STOPWORDS]
        for here, after in itertools.zip_longest(spans, spans[1:]):
            self._display.setdefault(stem(here[0].lower()), here[0])
            if after is not None:
                pair = f"{stem(here[0].lower())}_{stem(after[0].lower())}"
                self._display.setdefault(pair, text[here.start() : after.end()])
                self._source.setdefault(pair, text.strip())

    def _weights(self) -> _Index:
        """Build the index on first use (imports bm25s); the result depends only on the interests."""
        if self._index is not None:
            return self._index
        with self._lock:  # activities may score from several threads; build once
            if self._index is None:
                import bm25s  # lazy: ~20 MiB of numpy and bm25s, paid only by a worker that analyses

                # b = 0: an interest's document length is how many synonyms it was given, not how
                # diluted its topic is; the sentinel normalisation already makes long lists comparable.
                retriever = bm25s.BM25(k1=1.2, b=0.0, method="lucene")
                documents = [[*doc, _SENTINEL + str(i)] for i, doc in enumerate(self._documents)]
                retriever.index(documents, show_progress=False)
                units = [float(retriever.get_scores([_SENTINEL + str(i)])[i]) for i in range(len(documents))]
                weights = {}
                for term, term_id in retriever.vocab_dict.items():
                    if not term or term.startswith(_SENTINEL):
                        continue
                    scores = retriever.get_scores_from_ids([term_id])
                    weights[term] = tuple(float(s) / u for s, u in zip(scores, units, strict=True))
                self._index = _Index(weights)
            return self._index

    def score(self, title: str, text: str = "") -> Relevance:
        """The item's relevance to its best-matching interest."""
        counts: Counter[str] = Counter(terms(title))
        for term in counts:
            counts[term] *= self.params.title_weight
        counts.update(terms(text))
        if not counts:
            return Relevance(
                0.0,
                None,
                [],
                f"{_LABEL} nothing to score: the title and text are empty (or only stopwords).",
                [PROVIDER],
            )
        weights = self._weights().weights
        totals = [0.0] * len(self.interests)
        contributions: list[dict[str, float]] = [{} for _ in self.interests]
        for term, tf in counts.items():
            per_interest = weights.get(term)
            if per_interest is None:
                continue
            k3 = self.params.k3
            saturated = tf * (1 + k3) / (tf + k3)
            for i, w in enumerate(per_interest):
                if w > 0:
                    totals[i] += w * saturated
                    contributions[i][term] = w * saturated
        scores = [_saturate(x, self.params) for x in totals]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        if scores[best] == 0:
            listed = ", ".join(self.interests)
            return Relevance(
                0.0,
                None,
                [],
                f"{_LABEL} no term of any interest ({listed}) appears in the title or text.",
                [PROVIDER],
            )
        matched = self._named(contributions[best])
        interest = self.interests[best]
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        tags = [PROVIDER] + [_slug(self.interests[i]) for i in ranked if scores[i] >= LOOSE]
        tags += [_slug(t) for t in matched[:3] if _slug(t) not in tags]
        rationale = (
            f"{_LABEL} {scores[best]:.2f} for “{interest}”, matching {', '.join(matched)}."
            if scores[best] >= LOOSE
            else f"{_LABEL} only {', '.join(matched)} matched (closest interest “{interest}”), "
            f"so {scores[best]:.2f}."
        )
        return Relevance(round(scores[best], 4), interest, matched, rationale, tags)

    def score_many(self, items: Iterable[tuple[str, str]]) -> list[Relevance]:
        """`score` for each (title, text); each result depends on its own item only."""
        return [self.score(title, text) for title, text in items]

    def _named(self, contributions: dict[str, float]) -> list[str]:
        """Matched terms by contribution, named as the interests spell them. Words a matched pair covers
        are left out; pairs of one keyword that all matched ("large language", "language model") are
        named by the keyword."""
        ranked = sorted(contributions, key=lambda t: (-contributions[t], t))
        covered = {w for t in ranked if "_" in t for w in t.split("_")}
        sources = Counter(self._source.get(t) for t in ranked if "_" in t)
        names = []
        for t in ranked:
            if "_" not in t:
                if t not in covered:
                    names.append(self._display.get(t, t))
                continue
            source = self._source.get(t)
            whole = source is not None and sources[source] == len(words(source)) - 1
            names.append(source if whole else self._display.get(t, t.replace("_", " ")))
        return list(dict.fromkeys(names))[:MAX_TERMS]


def _saturate(x: float, params: RelevanceParams) -> float:
    if x <= 0:
        return 0.0
    n = params.steepness
    return x**n / (x**n + params.half**n)


def _slug(text: str) -> str:
    return "-".join(_WORD.findall(text.lower()))


# What an experiment on an item of each default interest measures: (metric, baseline).
_MEASURES: dict[str, tuple[str, str]] = {
    "ai agents": (
        "task success rate on a fixed suite of agent tasks (and cost per solved task)",
        "the current agent on the same suite, same model and tool set",
    ),
    "autonomous systems": (
        "incidents remediated without a person and time to recovery, on replayed incidents",
        "the current autopilot on the same replayed incidents",
    ),
    "llm inference": (
        "p95 latency and tokens per second on a fixed prompt set, at equal output quality",
        "the current serving setup on the same prompts and hardware",
    ),
    "distributed systems": (
        "p99 latency, throughput and error rate under the same load, including one injected failure",
        "the current deployment under the same load and failure",
    ),
    "ml optimisation": (
        "steps and wall time to reach the target validation loss, and the final validation metric",
        "the current training recipe on the same data, model and seed set",
    ),
}


def offline_plan(title: str, interest: str | None, matched_terms: Sequence[str]) -> dict[str, Any]:
    """An integration plan template for an item, for experiments when no LLM is configured."""
    key = parse_interest(interest)[0].lower() if interest else ""
    about = ", ".join(matched_terms[:5]) or "its main idea"
    metric, baseline = _MEASURES.get(
        key,
        (
            f"the figure the item reports as its improvement{f' for {interest}' if interest else ''}",
            "the current system on the same benchmark, measured just before the change",
        ),
    )
    return {
        "provider": PROVIDER,
        "model": MODEL,
        "label": "offline template (no LLM): review before running",
        "item": title,
        "interest": interest,
        "try": [
            f"Read “{title}” and isolate the change it proposes ({about}).",
            "Reproduce the baseline below on the current system (3 runs, to know the noise).",
            "Apply the change behind a flag, smallest version first, in a throwaway environment.",
            "Measure the same metric the same way (3 runs) and compare.",
        ],
        "metric": metric,
        "baseline": baseline,
        "success_criterion": "the metric improves by at least 5 % and by more than the baseline's "
        "run-to-run spread, with no other measured figure worse by more than 2 %",
    }
