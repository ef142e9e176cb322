"""What an approved research experiment tells self-modification: which agent it is about, and the brief
its evolution's LLM reads.

An experiment names an agent when its item and plan match that agent's declared purpose (AgentSpec.purpose,
prose written for this): a BM25 similarity (bm25s, through the offline analyser's scorer with its shipped
constants, so matches are stemmed, word pairs count and repeats saturate) bounded in [0, 1], with a floor
below which the plan names no agent. The brief carries the plan and its source (title, link, abstract) to
the evolution, bounded so a long abstract cannot crowd the agent's sources out of the prompt.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autarky.research.relevance import RelevanceParams, RelevanceScorer

# A plan names an agent only from this score on: about three distinct terms of the purpose (HALF = 2.7
# terms score ½); one or two stray words ("incidents", "points") stay below. Measured on the plans of
# tests/test_experiment_purpose.py: those about an agent score ≥ 0.55, the others ≤ 0.36.
MIN_SCORE = 0.5
DISTINCT = 0.01  # BM25's query-term saturation k3: a term repeated counts (almost) as once
BRIEF_MAX_CHARS = 4000  # the brief in the patch prompt; the agent's sources matter more
ABSTRACT_MAX_CHARS = 1800
PLAN_FIELD_MAX_CHARS = 400
# Words of prose that say nothing of a topic (the scorer's stopwords are for keyword lists): left out of
# purposes and plans alike, so "when" or "how" never counts as a match.
_PROSE_TEXT = (
    "when how what who whom whose why where while whether one ones first new so most only own read tried "
    "try people person someone something make makes made them they he she you your i do does did done "
    "there here if but just any some all very well"
)
PROSE_WORDS = frozenset(_PROSE_TEXT.split())
_PROSE = re.compile(r"\b(?:" + "|".join(sorted(PROSE_WORDS)) + r")\b", re.I)


@dataclass(frozen=True)
class PurposeMatch:
    """The agent a plan is about (None: none reaches MIN_SCORE), its score and the terms that matched."""

    agent: str | None
    score: float
    closest: str | None = None  # the best-scoring agent, named even below the floor (for the record)
    matched: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """For the stored plan: why it names (or does not name) an agent."""
        return {"agent": self.agent, "score": self.score, "closest": self.closest, "matched": self.matched}


@functools.lru_cache(maxsize=8)
def _scorer(purposes: tuple[tuple[str, str], ...]) -> RelevanceScorer:
    # One "interest" per agent: its name as the phrase, its purpose as the text (a colon would end the
    # phrase early, commas split it into keywords: both only shape the word pairs).
    interests = [
        f"{name.replace('-', ' ')}: {_content(purpose).replace(':', ',')}" for name, purpose in purposes
    ]
    # Fixed constants, not the relevance-scorer agent's evolved ones: which agent a plan is about must not
    # change when that agent is promoted. A term counts once however often it occurs (k3 → 0) and titles
    # weigh as text: the score counts the purpose's distinct terms a plan mentions, so a plan repeating
    # one or two common words ("change", "points") does not add up to a match.
    return RelevanceScorer(interests, RelevanceParams(k3=DISTINCT, title_weight=1.0))


def match_purpose(
    purposes: Mapping[str, str], title: str, text: str = "", minimum: float = MIN_SCORE
) -> PurposeMatch:
    """The agent whose purpose `title` (weighed as a title) and `text` match best, if it reaches `minimum`."""
    named = [(name, purpose) for name, purpose in purposes.items() if purpose.strip()]
    if not named or not (title.strip() or text.strip()):
        return PurposeMatch(None, 0.0)
    relevance = _scorer(tuple(named)).score(_content(title), _content(text))
    by_phrase = {name.replace("-", " "): name for name, _ in named}
    closest = by_phrase.get(relevance.interest or "")
    agent = closest if relevance.score >= minimum else None
    return PurposeMatch(agent, relevance.score, closest, list(relevance.matched_terms))


def _content(text: str) -> str:
    return _PROSE.sub(" ", text)


def plan_text(plan: Mapping[str, Any]) -> str:
    """What an LLM's plan says about the item (what to try, steps, metric, success criterion). An offline
    template's wording is the same for every item and says nothing of it: its text is left out."""
    if plan.get("provider") == "offline" or "what_to_try" not in plan:
        return ""
    parts: list[str] = [str(plan.get("what_to_try", ""))]
    parts += [str(step) for step in plan.get("steps") or []]
    parts += [str(plan.get("metric", "")), str(plan.get("success_criterion", ""))]
    return "\n".join(p for p in parts if p)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plan_lines(plan: Mapping[str, Any]) -> list[str]:
    if "what_to_try" in plan:  # an LLM's plan
        lines = [f"What to try: {_cut(str(plan['what_to_try']), PLAN_FIELD_MAX_CHARS)}"]
        steps: Sequence[Any] = plan.get("steps") or []
        lines += [f"Step {i}: {_cut(str(s), PLAN_FIELD_MAX_CHARS)}" for i, s in enumerate(steps, start=1)]
    else:  # the offline template
        steps = plan.get("try") or []
        lines = [f"Step {i}: {_cut(str(s), PLAN_FIELD_MAX_CHARS)}" for i, s in enumerate(steps, start=1)]
    for key, label in (
        ("metric", "Metric"),
        ("baseline", "Baseline"),
        ("success_criterion", "Success criterion"),
    ):
        if plan.get(key):
            lines.append(f"{label}: {_cut(str(plan[key]), PLAN_FIELD_MAX_CHARS)}")
    return lines


def experiment_brief(item: Mapping[str, Any], plan: Mapping[str, Any], experiment: str = "") -> str:
    """The approved experiment for the evolution's LLM: its source (title, link, abstract) and the plan,
    at most BRIEF_MAX_CHARS."""
    head = f"Research experiment {experiment}".strip() + " (approved by a person):"
    source = [
        head,
        f"Source: {_cut(str(item.get('title', '')), 300)}",
        f"Link: {item.get('url') or str(item.get('source', '')) + ' ' + str(item.get('source_id', ''))}",
        f"Abstract: {_cut(str(item.get('abstract') or '(none)'), ABSTRACT_MAX_CHARS)}",
        "Plan:",
    ]
    brief = "\n".join(source + _plan_lines(plan))
    return brief if len(brief) <= BRIEF_MAX_CHARS else brief[: BRIEF_MAX_CHARS - 1] + "…"
