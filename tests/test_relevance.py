"""The offline analyser on hand-written items: calibration bands, batch independence, edge cases, laziness."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autarky.research.relevance import (
    DEFAULT_INTERESTS,
    MAX_TERMS,
    MODEL,
    PROVIDER,
    Relevance,
    RelevanceScorer,
    offline_plan,
    stem,
)

# (title, abstract or description, the interest it is squarely about)
ON_TOPIC = [
    (
        "EAGLE-Lite: Speculative Decoding with a Shared KV Cache for Faster LLM Inference",
        "Autoregressive decoding makes large language model inference memory-bound. We propose a "
        "speculative decoding scheme whose draft head reuses the target model's KV cache, avoiding a "
        "second cache. Integrated into vLLM with continuous batching, it raises throughput by 2.1x and "
        "cuts p99 latency by 38% on Llama-3 70B without changing the output distribution.",
        "LLM inference",
    ),
    (
        "ToolWeaver: Multi-Agent Planning with Tool Use for LLM Agents",
        "LLM agents fail on long-horizon tasks because they plan one tool call at a time. ToolWeaver "
        "splits a task into sub-goals with a planner agent, assigns them to executor agents that call "
        "tools through function calling, and lets a critic agent trigger self-reflection when a step "
        "fails. On WebArena and SWE-bench our multi-agent framework solves 23% more tasks than ReAct.",
        "AI agents",
    ),
    (
        "Flexible Paxos in Practice: Fast Leader Election and Replication for Geo-Distributed Consensus",
        "We present a consensus protocol for geo-distributed clusters that shrinks the quorum used for "
        "replication while keeping fault tolerance under leader failure. Leader election completes in "
        "one round trip, and the protocol preserves linearizability. Compared with Raft on a 5-region "
        "deployment, commit latency drops by 41% and throughput rises 1.8x.",
        "distributed systems",
    ),
    (
        "Schedule-Free Adam: Optimizer Convergence without Learning Rate Schedules",
        "Choosing a learning rate schedule is the most expensive part of hyperparameter tuning. We "
        "analyse a schedule-free variant of the Adam optimizer and prove convergence for stochastic "
        "gradient descent on smooth non-convex losses. In neural network training on ImageNet and "
        "GPT-2 it matches tuned cosine schedules with no warm-up or weight decay sweep.",
        "ML optimisation",
    ),
    (
        "Self-Healing Control Loops for Autonomous Cloud Operations",
        "Operating large fleets needs systems that detect and repair faults on their own. We build a "
        "self-adaptive MAPE-K control loop that monitors services, diagnoses anomalies and applies "
        "remediation without operators, with a safety layer that asks for approval before risky "
        "actions. In six months of production the autonomous system resolved 71% of incidents.",
        "autonomous systems",
    ),
    (
        "vllm-project/vllm",
        "A high-throughput and memory-efficient inference and serving engine for LLMs. PagedAttention, "
        "continuous batching, quantization (GPTQ, AWQ, FP8), speculative decoding, prefix caching and "
        "optimized CUDA kernels with FlashAttention.",
        "LLM inference",
    ),
]

# Items that touch an interest in passing: relevant background, not what the interest is about.
LOOSELY_RELATED = [
    (
        "Benchmarking Vector Databases for Retrieval-Augmented Generation",
        "Retrieval-augmented generation adds a vector search before each LLM call. We benchmark five "
        "vector databases on recall, query latency and index build time with embeddings from three "
        "encoders, and find that approximate indexes trade up to 9% recall for a 20x lower latency.",
    ),
    (
        "Federated Learning with Client Sampling under Non-IID Data",
        "Federated learning trains a model across many devices without sharing their data. We study "
        "client sampling when device data are non-IID and show that importance sampling speeds up "
        "convergence of federated averaging by 30% while keeping communication per round fixed.",
    ),
    (
        "A Survey of Deep Reinforcement Learning for Robotic Manipulation",
        "We survey deep reinforcement learning for robot manipulation: grasping, pushing and "
        "in-hand dexterity. We compare simulation-to-real transfer methods, reward design and "
        "sample efficiency, and discuss what limits autonomy in unstructured homes.",
    ),
]

OFF_TOPIC = [
    (
        "Stopover Duration Predicts Arrival Timing in Long-Distance Songbird Migration",
        "Using light-level geolocators on 112 wood thrushes, we show that the duration of autumn "
        "stopovers explains most of the variation in arrival dates at wintering grounds. Birds that "
        "fuelled longer in the Gulf coast flew faster across the Caribbean, suggesting fuel deposition "
        "rate constrains migration speed more than weather.",
    ),
    (
        "tailwindlabs/tailwindcss",
        "A utility-first CSS framework for rapidly building custom user interfaces. Design tokens, "
        "responsive variants, dark mode and a JIT engine that generates only the styles your HTML "
        "uses.",
    ),
    (
        "Thermal Stability of Engineered Lipases from Molecular Dynamics Simulations",
        "We simulate twelve lipase variants for 2 microseconds each and relate the flexibility of "
        "their lid domains to measured melting temperatures. Two surface mutations rigidify the lid "
        "and raise the melting point by 6 degrees without loss of activity.",
    ),
    (
        "react-day-picker",
        "Customizable date picker component for React. Accessible, localized, with range selection "
        "and keyboard navigation; styled with plain CSS or your own class names.",
    ),
]

ALL_ITEMS = [(t, x) for t, x, _ in ON_TOPIC] + LOOSELY_RELATED + OFF_TOPIC


@pytest.fixture(scope="module")
def scorer() -> RelevanceScorer:
    return RelevanceScorer(list(DEFAULT_INTERESTS))


@pytest.mark.parametrize(("title", "text", "interest"), ON_TOPIC, ids=[t for t, _, _ in ON_TOPIC])
def test_an_item_squarely_about_an_interest_scores_above_the_experiment_threshold(
    scorer: RelevanceScorer, title: str, text: str, interest: str
) -> None:
    result = scorer.score(title, text)
    assert result.score > 0.7, result
    assert result.interest == interest


@pytest.mark.parametrize(("title", "text"), LOOSELY_RELATED, ids=[t for t, _ in LOOSELY_RELATED])
def test_a_loosely_related_item_scores_in_the_middle(scorer: RelevanceScorer, title: str, text: str) -> None:
    result = scorer.score(title, text)
    assert 0.3 <= result.score <= 0.7, result
    assert result.interest is not None


@pytest.mark.parametrize(("title", "text"), OFF_TOPIC, ids=[t for t, _ in OFF_TOPIC])
def test_an_unrelated_item_scores_below_0_3(scorer: RelevanceScorer, title: str, text: str) -> None:
    assert scorer.score(title, text).score < 0.3


def test_the_bands_order_the_items(scorer: RelevanceScorer) -> None:
    on = [scorer.score(t, x).score for t, x, _ in ON_TOPIC]
    loose = [scorer.score(t, x).score for t, x in LOOSELY_RELATED]
    off = [scorer.score(t, x).score for t, x in OFF_TOPIC]
    assert min(on) > max(loose) > max(off)


def test_scores_are_in_the_unit_interval_and_labelled_offline(scorer: RelevanceScorer) -> None:
    for title, text in ALL_ITEMS:
        result = scorer.score(title, text)
        assert 0.0 <= result.score <= 1.0
        assert (result.provider, result.model) == (PROVIDER, MODEL) == ("offline", "offline-bm25-v1")
        assert result.tags[0] == "offline"


def test_a_keyword_flood_saturates_below_one(scorer: RelevanceScorer) -> None:
    flood = scorer.score("agents", "agent " * 500)
    assert flood.score < scorer.score(*ON_TOPIC[1][:2]).score
    assert flood.score < 1.0


def test_an_items_score_does_not_depend_on_the_batch(scorer: RelevanceScorer) -> None:
    alone = [RelevanceScorer(list(DEFAULT_INTERESTS)).score(t, x) for t, x in ALL_ITEMS]
    fresh = RelevanceScorer(list(DEFAULT_INTERESTS))
    batch = fresh.score_many(ALL_ITEMS * 15 + [("unrelated filler about cooking pasta", "salt water")] * 50)
    assert batch[: len(ALL_ITEMS)] == alone
    reversed_batch = fresh.score_many(list(reversed(ALL_ITEMS)))
    assert list(reversed(reversed_batch)) == alone
    assert scorer.score_many(ALL_ITEMS[:1]) == alone[:1]


def test_scoring_is_deterministic_across_processes() -> None:
    code = (
        "import json; from autarky.research.relevance import RelevanceScorer; "
        f"print(json.dumps([RelevanceScorer().score(t, x).score for t, x in {ALL_ITEMS!r}]))"
    )
    # One other process, with a string hash seed surely not this one's: this file runs in the sandbox for
    # every self-modification candidate, so each interpreter start here is paid many times over.
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    environ = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=environ)
    assert json.loads(done.stdout) == [RelevanceScorer().score(t, x).score for t, x in ALL_ITEMS]


@pytest.mark.parametrize(("title", "text"), [("", ""), ("   ", "\n\t "), ("", "  "), ("the of and", "")])
def test_empty_or_whitespace_items_score_zero_with_a_clear_rationale(
    scorer: RelevanceScorer, title: str, text: str
) -> None:
    result = scorer.score(title, text)
    assert result == Relevance(0.0, None, [], result.rationale, ["offline"])
    assert "empty" in result.rationale and "Offline" in result.rationale


def test_an_item_with_no_matching_term_names_the_interests(scorer: RelevanceScorer) -> None:
    result = scorer.score("Sourdough hydration and crumb structure", "We bake 40 loaves.")
    assert (result.score, result.interest, result.matched_terms) == (0.0, None, [])
    assert "no term" in result.rationale and "LLM inference" in result.rationale


def test_a_title_alone_is_scored(scorer: RelevanceScorer) -> None:
    result = scorer.score("Speculative decoding and KV cache quantization for LLM serving in vLLM", "")
    assert result.score > 0.7 and result.interest == "LLM inference"


def test_the_rationale_says_offline_and_names_the_matched_terms(scorer: RelevanceScorer) -> None:
    result = scorer.score(*ON_TOPIC[0][:2])
    assert "Offline" in result.rationale and "no LLM" in result.rationale
    assert {"LLM inference", "speculative decoding", "KV cache"} <= set(result.matched_terms)
    assert len(result.matched_terms) == MAX_TERMS  # more matched; the strongest are named
    for term in result.matched_terms:
        assert term in result.rationale
    assert "llm-inference" in result.tags


def test_custom_interests_with_keywords() -> None:
    scorer = RelevanceScorer(["graph databases: Neo4j, Cypher, property graph", "bird migration"])
    assert scorer.interests == ["graph databases", "bird migration"]
    graph = scorer.score(
        "Cypher Query Planning for Property Graph Databases",
        "We optimise Cypher queries over property graphs in Neo4j and other graph databases.",
    )
    assert graph.interest == "graph databases" and graph.score > 0.7
    birds = scorer.score(*OFF_TOPIC[0])
    assert birds.interest == "bird migration" and birds.score > 0.3
    assert scorer.score(*ON_TOPIC[0][:2]).score < 0.3  # LLM inference is not an interest here


def test_a_single_custom_interest_still_scores() -> None:
    scorer = RelevanceScorer(["LLM inference"])
    assert scorer.score(*ON_TOPIC[0][:2]).score > 0.7
    assert scorer.score(*OFF_TOPIC[1]).score < 0.3


def test_no_interest_is_refused() -> None:
    with pytest.raises(ValueError, match="interest"):
        RelevanceScorer(["", "  : only keywords"])


@pytest.mark.parametrize(
    ("variants", "same"),
    [
        (["optimisation", "optimization", "optimizer", "optimised"], True),
        (["agents", "agent"], True),
        (["GPUs", "GPU"], True),
        (["caching", "cache", "caches"], True),
        (["planning", "plans", "plan"], True),
        (["distributed", "distribution"], False),
        (["status", "statu"], False),
    ],
)
def test_stemming(variants: list[str], same: bool) -> None:
    assert (len({stem(v.lower()) for v in variants}) == 1) is same


def test_offline_plan_is_a_labelled_template() -> None:
    plan = offline_plan("EAGLE-Lite", "LLM inference", ["speculative decoding", "KV cache"])
    assert plan["provider"] == "offline" and plan["model"] == MODEL and "offline" in plan["label"]
    assert "latency" in plan["metric"] and "serving" in plan["baseline"]
    assert "5 %" in plan["success_criterion"]
    assert any("speculative decoding" in step for step in plan["try"])
    json.dumps(plan)  # stored as an experiment's plan
    generic = offline_plan("Some repo", None, [])
    assert generic["interest"] is None and generic["metric"] and "its main idea" in generic["try"][0]


def test_importing_the_module_does_not_import_bm25s() -> None:
    code = (
        "import sys; from autarky.research.relevance import RelevanceScorer; "
        "s = RelevanceScorer(); print('bm25s' in sys.modules, 'numpy' in sys.modules); "
        "s.score('LLM serving', 'KV cache'); print('bm25s' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False", "True"]


def test_a_title_word_counts_more_than_the_same_word_in_the_text(scorer: RelevanceScorer) -> None:
    in_title = scorer.score("Speculative decoding", "A note on a method.")
    in_text = scorer.score("A note on a method", "Speculative decoding.")
    assert in_title.score > in_text.score > 0


def test_an_ambiguous_word_alone_does_not_count_but_the_phrase_does(scorer: RelevanceScorer) -> None:
    bayesian = scorer.score(
        "Bayesian Inference of Stork Migration Routes",
        "We use Bayesian inference with hidden Markov models to infer stopover sites from GPS tracks.",
    )
    assert bayesian.score == 0.0 and bayesian.interest is None
    llm = scorer.score("Notes on LLM inference", "")
    assert llm.interest == "LLM inference" and "LLM inference" in llm.matched_terms
