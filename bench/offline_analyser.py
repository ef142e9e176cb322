"""How fast the offline analyser (autarky.research.relevance) scores research items, without an LLM.

    .venv/bin/python -m bench.offline_analyser [--items N]

Items are synthetic but shaped like the research cycle's: an arXiv-style title and an abstract of about
600–1000 characters, or a repository name and a short description, drawn with a fixed seed from
on-topic, loosely related and unrelated vocabulary. The scorer is built and warmed up (bm25s imported,
the interests indexed) before the clock starts; that one-off cost is printed apart. Items/s is the
median of 5 runs of `score_many` over the same items. A benchmark, not a test: the exit code is 0.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence

from autarky.research.relevance import DEFAULT_INTERESTS, RelevanceScorer

SEED = 14
RUNS = 5

_TOPICS = [
    ["speculative decoding", "KV cache", "LLM serving", "quantization", "throughput", "p99 latency", "vLLM"],
    ["LLM agents", "tool use", "multi-agent planning", "function calling", "self-reflection", "web tasks"],
    ["consensus", "replication", "leader election", "fault tolerance", "geo-distributed clusters", "Raft"],
    ["Adam optimizer", "learning rate schedules", "convergence", "hyperparameter tuning", "weight decay"],
    ["self-healing", "control loop", "autonomous operations", "remediation", "self-adaptive services"],
    ["vector databases", "retrieval", "embeddings", "recall", "index build time", "LLM calls"],
    ["bird migration", "stopover duration", "geolocators", "wintering grounds", "fuel deposition"],
    ["CSS framework", "responsive variants", "design tokens", "dark mode", "utility classes"],
    ["protein stability", "molecular dynamics", "melting temperature", "surface mutations", "lipases"],
]
_SENTENCES = [
    "We study {a} and show that {b} matters more than previously assumed.",
    "Existing work on {a} ignores {b}, which limits {c} in practice.",
    "Our method combines {a} with {b} and is evaluated on {c}.",
    "Experiments across four settings show gains in {a} of up to {n}% with no loss in {b}.",
    "We release code and data for {a}, {b} and {c}.",
    "A simple baseline based on {a} is competitive with complex pipelines for {b}.",
    "The analysis explains when {a} helps and when {b} dominates.",
]


def synthetic_items(n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """`n` (title, text) pairs: two thirds papers (~600–1000 chars), one third repositories."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        topic = rng.choice(_TOPICS)
        if i % 3 == 2:
            a, b = rng.sample(topic, 2)
            items.append((f"{rng.choice(['fast', 'open', 'tiny'])}-{a.split()[0].lower()}", f"{a} with {b}."))
            continue
        a, b = rng.sample(topic, 2)
        title = f"{a[0].upper()}{a[1:]} for {b}: {rng.choice(['a study', 'revisited', 'at scale'])}"
        text = ""
        while len(text) < rng.randint(600, 1000):
            words = rng.sample(topic, 3) if rng.random() < 0.8 else rng.sample(rng.choice(_TOPICS), 3)
            text += (
                rng.choice(_SENTENCES).format(a=words[0], b=words[1], c=words[2], n=rng.randint(5, 60)) + " "
            )
        items.append((title, text.strip()))
    return items


def offline_items_per_second(n: int = 200) -> float:
    """Items per second `RelevanceScorer.score_many` scores, over `n` synthetic items (median of 5)."""
    items = synthetic_items(n)
    scorer = RelevanceScorer(list(DEFAULT_INTERESTS))
    scorer.score(*items[0])  # import bm25s and index the interests before timing
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        scorer.score_many(items)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="synthetic items per run (default 200)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    RelevanceScorer(list(DEFAULT_INTERESTS)).score("warm-up", "LLM serving")
    first = time.perf_counter() - start
    print(f"offline analyser: first score (import bm25s, index interests) {first * 1000:.0f} ms")
    print(f"offline analyser: {offline_items_per_second(args.items):,.0f} items/s over {args.items} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
