"""Which agent a research experiment names, by each agent's declared purpose (issue 30, item 7), and the
brief an approved one hands to that agent's evolution.

The plans are as the research analyser stores them: an LLM's (what to try, steps, metric, success) or the
offline template's. Several say what an agent is for without its topic words, which the topic regexes
these replace did not see.
"""

from __future__ import annotations

from typing import Any

import pytest

from autarky.research.relevance import DEFAULT_INTERESTS, RelevanceScorer, offline_plan
from autarky.selfmod.agents import AGENTS, ANOMALY_DETECTOR, RELEVANCE_SCORER, agent_for, purposes
from autarky.selfmod.experiments import (
    BRIEF_MAX_CHARS,
    MIN_SCORE,
    experiment_brief,
    match_purpose,
    plan_text,
)

DETECTOR, SCORER = ANOMALY_DETECTOR.name, RELEVANCE_SCORER.name


def llm_plan(what: str, steps: list[str], metric: str, success: str) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-test",
        "what_to_try": what,
        "steps": steps,
        "metric": metric,
        "baseline": "the current version on the same data",
        "success_criterion": success,
        "risks": [],
    }


def named(title: str, abstract: str, plan: dict[str, Any] | None = None) -> str | None:
    """As the analyser names an agent: the item's title, its abstract and what the plan says of it."""
    return agent_for(title, f"{abstract}\n{plan_text(plan or {})}")


# (title, abstract, plan): none uses the old topic words (anomal*, outlier, change point, novelty
# detection; retrieval, ranking, relevance, bm25, rerank).
IN_OTHER_WORDS = [
    (
        DETECTOR,
        "Catching the moment a service starts misbehaving",
        "We flag unusual latency spikes and sudden drops in request rates from production telemetry in "
        "real time, before an outage, while keeping false alarms rare.",
        None,
    ),
    (
        DETECTOR,
        "Robust online scoring of irregular telemetry",
        "We study how to tell when a production service's signals depart from their usual behaviour, "
        "using robust statistics over a sliding window, evaluated on the Numenta benchmark.",
        llm_plan(
            "Replace the rarity score with a robust sliding-window deviation score.",
            ["Implement the score", "Evaluate at the shipped alert threshold", "Count false alarms"],
            "NAB standard score at the alert threshold",
            "NAB score up 3 points with no more false alarms",
        ),
    ),
    (
        SCORER,
        "Which preprints should a researcher read?",
        "We order new publications for a reader by how well their abstracts match the reader's stated "
        "interests, and learn from which ones people approve or reject to recommend better.",
        None,
    ),
    (
        SCORER,
        "Personalised filtering of new preprints from feedback",
        "A reader approves or rejects suggested articles; we learn which abstracts match their stated "
        "interests and reorder the queue accordingly.",
        llm_plan(
            "Weigh interest terms by what people approved and rejected.",
            ["Fit weights on approvals", "Score the labelled examples", "Compare accuracy"],
            "accuracy on labelled examples",
            "accuracy up 2 points",
        ),
    ),
]

# With the old topic words, and short (title only).
WITH_TOPIC_WORDS = [
    (DETECTOR, "Streaming anomaly detection on cloud metrics"),
    (DETECTOR, "Change-point detection with Bayesian online updates"),
    (SCORER, "Learned sparse retrieval beats BM25"),
    (SCORER, "Query expansion for document search and text matching"),
]

# One item of each default interest with an LLM's plan for it: about none of the agents. Their words
# overlap the purposes here and there ("latency", "incidents", "points", "change"): not enough.
DEFAULT_INTEREST_PLANS = [
    (
        "AI agents",
        "Tool-using AI agents that plan multi-step tasks",
        "Autonomous AI agents with tool use and planning: a multi-agent framework where LLM agents "
        "decompose tasks, call tools and reflect, improving agent success rates on benchmarks.",
        llm_plan(
            "Let the autopilot's LLM planner decompose a remediation into tool calls with self-reflection.",
            ["Replay last month's incidents", "Run the planner with and without reflection"],
            "task success rate on replayed incidents",
            "success rate up 10 points at equal cost",
        ),
    ),
    (
        "autonomous systems",
        "Self-healing microservices with closed-loop remediation",
        "An autonomic MAPE-K control loop restarts and reschedules failing containers in Kubernetes, "
        "cutting time to recovery.",
        llm_plan(
            "Add a restart-and-reschedule remediation to the autopilot.",
            ["Replay incidents", "Measure time to recovery"],
            "time to recovery on replayed incidents",
            "recovery 30% faster, no more restarts than today",
        ),
    ),
    (
        "LLM inference",
        "Speculative decoding with a KV cache for faster LLM inference serving",
        "We speed up LLM inference: speculative decoding and paged KV cache management raise serving "
        "throughput 2.1x and cut latency on vLLM, with quantization of the draft model.",
        llm_plan(
            "Add speculative decoding with a small draft model to the model-serving path.",
            ["Measure p95 latency and tokens per second", "Enable the draft model behind a flag"],
            "p95 latency and tokens per second",
            "latency drops by 20% when output quality stays the same",
        ),
    ),
    (
        "distributed systems",
        "Raft consensus under partial network partitions",
        "In this paper we propose a replication protocol that keeps linearizability and fault tolerance "
        "when the network partitions; code is available.",
        llm_plan(
            "Evaluate the protocol for the knowledge base's replicas.",
            ["Inject partitions in a test cluster", "Measure availability and p99 latency"],
            "availability and p99 latency under partitions",
            "no lost writes, availability above 99.9%",
        ),
    ),
    (
        "ML optimisation",
        "Adam with decoupled weight decay converges faster",
        "We study optimizers and learning rate schedules; our method reaches the target validation loss "
        "in fewer steps.",
        llm_plan(
            "Change the optimizer of the fine-tuning recipe and see whether accuracy gains 3 points.",
            ["Change the learning rate schedule", "Measure accuracy at three points during training"],
            "accuracy points, and the change in wall time",
            "2 points better",
        ),
    ),
]


@pytest.mark.parametrize(("agent", "title", "abstract", "plan"), IN_OTHER_WORDS)
def test_a_plan_saying_what_an_agent_is_for_in_other_words_names_it(
    agent: str, title: str, abstract: str, plan: dict[str, Any] | None
) -> None:
    assert named(title, abstract, plan) == agent


@pytest.mark.parametrize(("agent", "title"), WITH_TOPIC_WORDS)
def test_a_title_with_an_agents_own_terms_names_it(agent: str, title: str) -> None:
    assert agent_for(title) == agent


@pytest.mark.parametrize(("interest", "title", "abstract", "plan"), DEFAULT_INTEREST_PLANS)
def test_plans_of_the_default_interests_name_no_agent(
    interest: str, title: str, abstract: str, plan: dict[str, Any]
) -> None:
    assert interest in DEFAULT_INTERESTS
    match = match_purpose(purposes(), title, f"{abstract}\n{plan_text(plan)}")
    assert match.agent is None and match.score < MIN_SCORE, match
    # The offline template, as a cycle without an LLM plans the same item: no agent either.
    relevance = RelevanceScorer().score(title, abstract)
    offline = offline_plan(title, relevance.interest, relevance.matched_terms) | {"provider": "offline"}
    assert plan_text(offline) == ""  # its wording is the same for every item: not matched
    assert named(title, abstract, offline) is None


def test_unrelated_or_empty_text_names_no_agent() -> None:
    assert agent_for("Bird migration timing in Northern Europe", "We ringed 4,000 swallows.") is None
    assert agent_for("Speculative decoding for faster LLM inference") is None
    assert agent_for("") is None
    # Repeating one or two common words of a purpose does not add up to a match.
    assert agent_for("Notes", "latency. " * 50 + "incidents. " * 50) is None


def test_every_agent_declares_a_purpose_and_the_match_explains_itself() -> None:
    assert all(spec.purpose for spec in AGENTS.values())
    match = match_purpose(purposes(), *IN_OTHER_WORDS[0][1:3])
    assert match.agent == DETECTOR and match.closest == DETECTOR and match.score >= MIN_SCORE
    assert {"spikes", "telemetry"} <= set(match.matched), match
    below = match_purpose(purposes(), "Self-healing microservices", "replayed incidents")
    record = below.record()
    assert record["agent"] is None and record["closest"] == DETECTOR and record["matched"] == ["incidents"]


def test_the_brief_carries_the_plan_and_the_source_bounded() -> None:
    item = {
        "title": "Personalised filtering of new preprints from feedback",
        "url": "https://arxiv.org/abs/2612.00001",
        "abstract": "A reader approves or rejects suggested articles. " * 200,  # long
        "source": "arxiv",
        "source_id": "2612.00001",
    }
    plan = IN_OTHER_WORDS[3][3]
    assert plan is not None
    brief = experiment_brief(item, plan, "experiment-arxiv-2612.00001")
    assert len(brief) <= BRIEF_MAX_CHARS
    assert "experiment-arxiv-2612.00001" in brief
    assert f"Source: {item['title']}" in brief and f"Link: {item['url']}" in brief
    assert "Abstract: A reader approves" in brief and "…" in brief  # the abstract is cut, not dropped
    assert "What to try: Weigh interest terms by what people approved and rejected." in brief
    assert "Step 1: Fit weights on approvals" in brief and "Metric: accuracy on labelled examples" in brief
    offline = experiment_brief(item | {"url": ""}, offline_plan(item["title"], None, []))
    assert "Link: arxiv 2612.00001" in offline and "Step 1: Read" in offline


def test_the_patch_prompt_carries_the_brief_when_there_is_one() -> None:
    from activities.selfmod.patches import patch_request

    sources = {path: "x = 1\n" for path in RELEVANCE_SCORER.source_files}
    brief = "Source: Personalised filtering\nLink: https://arxiv.org/abs/2612.00001\nPlan:\nWhat to try: it"
    asked = patch_request(RELEVANCE_SCORER, sources, "accuracy", 86.4, [], brief=brief).prompt
    assert brief in asked and "research a person approved" in asked
    assert asked.index(brief) < asked.index("Rules:")  # before the rules, which stay the last word
    plain = patch_request(RELEVANCE_SCORER, sources, "accuracy", 86.4, []).prompt
    assert "research a person approved" not in plain
    huge = patch_request(RELEVANCE_SCORER, sources, "accuracy", 86.4, [], brief="y" * 50_000).prompt
    assert len(huge) < len(plain) + BRIEF_MAX_CHARS + 200
