"""The re-choice of the agents' shipped defaults (bench/selfmod_defaults.py, issue 30 item 5) reads the
search part only: poisoning every decision-part file or example leaves the choice exactly as it was, while
poisoning one search-part file or example changes it (so the check can fail)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from activities.models.offline_variants import Example, examples
from activities.selfmod.evaluation import load_dataset, split_nab
from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import label_rows
from autarky.selfmod.agents import RELEVANCE_SCORER
from autarky.selfmod.settings import EvolutionSettings
from bench.selfmod_defaults import choose_detector, choose_relevance, part_examples

ROWS = 400  # 5-minute rows: 33 hours, past the detector's warm-up and NAB's 15 % probation
T0 = datetime(2020, 1, 1)


def series(key: str, seed: int, spike: int) -> NabFile:
    """Noise around a level with a spike at `spike`, labelled by a window starting there."""
    rng = random.Random(seed)
    values = [10.0 + rng.gauss(0, 1) for _ in range(ROWS)]
    for i in range(spike, spike + 5):
        values[i] += 25.0
    times = [T0 + timedelta(minutes=5 * i) for i in range(ROWS)]
    return NabFile(key, times, values, label_rows(ROWS, [(spike - 5, spike + 15)]))


def poisoned(f: NabFile) -> NabFile:
    """No usable value and the window moved: any use of the file shows in the choice."""
    return NabFile(f.key, f.timestamps, [math.nan] * ROWS, label_rows(ROWS, [(100, 140)]))


CORPUS = [
    series(f"{category}/{n}.csv", seed, spike)
    for seed, (category, n, spike) in enumerate(
        (c, n, s) for c in ("a", "b") for n, s in ((1, 250), (2, 300), (3, 280), (4, 330))
    )
]


def test_the_detector_rechoice_reads_no_decision_file() -> None:
    parts = split_nab(CORPUS)
    decision = {f.key for f in parts["decision"]}
    assert decision and len(parts["search"]) == 4
    clean = choose_detector(CORPUS)
    assert set(clean.files) == {f.key for f in parts["search"]}

    blind = choose_detector([poisoned(f) if f.key in decision else f for f in CORPUS])
    assert blind == clean

    one_search_file = parts["search"][0].key
    changed = choose_detector([poisoned(f) if f.key == one_search_file else f for f in CORPUS])
    assert (changed.by_nab.raw, changed.scores) != (clean.by_nab.raw, clean.scores)


def test_the_relevance_rechoice_reads_no_decision_example() -> None:
    items = examples()
    search_ids = set(load_dataset(RELEVANCE_SCORER.name, "search", EvolutionSettings()).units)
    assert {e.id for e in part_examples(items, "search")} == search_ids  # the judge's own split

    def poison(e: Example) -> Example:
        # Flipped label, and a text squarely about an interest: scores and accuracy would both move.
        title = "LLM agents with tool use, planning and function calling"
        return replace(e, title=title, abstract=title, relevant=not e.relevant)

    grid = {"core_weight": (1, 2), "half": (2.0, 2.7)}
    clean = choose_relevance(items, grid)
    assert set(clean.examples) == search_ids
    blind = choose_relevance([e if e.id in search_ids else poison(e) for e in items], grid)
    assert blind == clean

    # One search example's label flipped moves the accuracy by one example (1/88): the check can fail.
    first = min(search_ids)
    flipped = [replace(e, relevant=not e.relevant) if e.id == first else e for e in items]
    changed = choose_relevance(flipped, grid)
    assert abs(changed.shipped_accuracy - clean.shipped_accuracy) == pytest.approx(100 / len(search_ids))
