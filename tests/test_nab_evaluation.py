"""Leave-one-category-out cross-validation, the long-run runner and the alert budget, on tiny corpora
whose right answers can be worked out by hand."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from autarky.evaluation.alert_budget import alert_rates, budget_threshold
from autarky.evaluation.crossval import choose, cross_validated, held_out_halves, leave_one_category_out
from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import label_rows
from bench.nab import run_detector, run_detector_long

N = 100  # rows per file: probation 15; one window at rows 50..59 in files that have one
T0 = datetime(2020, 1, 1)


def nab_file(key: str, window: bool = True) -> NabFile:
    times = [T0 + timedelta(minutes=5 * i) for i in range(N)]
    return NabFile(key, times, [float(i) for i in range(N)], label_rows(N, [(50, 59)] if window else []))


def hit(*rows: int) -> list[float]:
    return [1.0 if i in rows else 0.0 for i in range(N)]


FILES = [nab_file("a/1"), nab_file("a/2"), nab_file("b/1"), nab_file("b/2"), nab_file("c/1")]
# Design "early" finds a's windows at their left edge and misses b's; "b-only" is the reverse; both
# find c's. "noisy" finds everything but raises a false alarm in every file.
DESIGNS = {
    "early": {"a/1": hit(50), "a/2": hit(50), "b/1": hit(), "b/2": hit(), "c/1": hit(50)},
    "b-only": {"a/1": hit(), "a/2": hit(), "b/1": hit(50), "b/2": hit(50), "c/1": hit(50)},
    "noisy": {k: hit(20, 50) for k in ("a/1", "a/2", "b/1", "b/2", "c/1")},
}


def test_choose_takes_the_best_design_and_threshold_on_the_files_given() -> None:
    only_b = [f for f in FILES if f.category == "b"]
    assert choose(DESIGNS, only_b).design == "b-only"  # all of b, no false alarm
    assert choose(DESIGNS, FILES).design == "noisy"  # 5 windows for 5 false alarms beats 3 windows


def test_each_category_is_scored_with_a_choice_made_without_it() -> None:
    overall, folds = leave_one_category_out(DESIGNS, FILES)
    assert overall.design == "noisy"
    by_category = {f.category: f for f in folds}
    assert sorted(by_category) == ["a", "b", "c"]
    # Without a, the choice is made on b and c, where b-only is perfect: a's windows are then missed.
    assert by_category["a"].chosen_without.design == "b-only"
    assert (by_category["a"].left_out.tp, by_category["a"].left_out.fn) == (0, 2)
    assert by_category["a"].figure(by_category["a"].left_out) == 0.0  # the null detector's figure
    # In sample, a is scored with the overall choice: both windows found, two false alarms.
    assert (by_category["a"].in_sample.tp, by_category["a"].in_sample.fp) == (2, 2)
    assert by_category["a"].figure(by_category["a"].in_sample) == pytest.approx(100 * (2 * 0.89 + 2) / 4)
    assert by_category["b"].chosen_without.design == "early"
    # Without c the choice (on a and b) is "noisy": c's window found, one false alarm before it (-0.11).
    assert by_category["c"].chosen_without.design == "noisy"
    # All left-out raw scores over all 5 windows: a and b missed (-4), c 1 - 0.11.
    assert cross_validated(folds) == pytest.approx(100 * (-4 + 0.89 + 5) / 10)


def test_cross_validation_needs_two_categories() -> None:
    with pytest.raises(ValueError, match="two categories"):
        leave_one_category_out(DESIGNS, [f for f in FILES if f.category == "a"])


def test_alert_rates_count_false_alarms_per_day_of_samples() -> None:
    files = [nab_file("a/1"), nab_file("a/2", window=False)]
    scores = {"a/1": [0.0] * N, "a/2": [0.0] * N}
    scores["a/1"][20], scores["a/1"][55], scores["a/2"][30], scores["a/2"][31] = 0.9, 0.95, 0.5, 0.99
    scores["a/1"][5] = 1.0  # in probation: never an alarm
    low, high = alert_rates(scores, files, [0.5, 0.95], sample_seconds=30)
    quiet_rows = (N - 15 - 10) + (N - 15)  # after probation, outside the window
    assert low.sample_days == pytest.approx(quiet_rows * 30 / 86400)
    assert low.false_alarms == 3 and high.false_alarms == 1
    assert low.per_day == pytest.approx(3 / low.sample_days)
    # At 0.95: the window found at row 55 (y = -0.5: worth 0.8597926), one false alarm before any
    # window (-0.11); one window in all: normalised 100 (raw + 1) / 2.
    assert high.nab_score == pytest.approx(100 * (0.8597926 - 0.11 + 1) / 2)
    assert high.nab_score > low.nab_score  # fewer false alarms, the same window found


def test_the_budget_threshold_is_the_lowest_with_at_most_the_budget_of_false_alarms() -> None:
    files = [nab_file("a/1"), nab_file("a/2", window=False)]
    scores = {"a/1": [0.0] * N, "a/2": [0.0] * N}
    scores["a/1"][20], scores["a/1"][55], scores["a/2"][30], scores["a/2"][31] = 0.9, 0.95, 0.5, 0.99
    scores["a/1"][5] = 1.0  # in probation: never an alarm
    days = ((N - 25) + (N - 15)) * 30 / 86400  # 160 quiet rows at 30 s: 0.056 days
    candidates = [0.5, 0.6, 0.9, 0.95, 0.99, 0.999]
    # 3 alarms at 0.5, 2 from 0.6 (0.9, 0.99), 1 from 0.95 (0.99; the 0.95 is in the window), 0 above.
    assert budget_threshold(scores, files, candidates, per_day=3 / days) == 0.5
    assert budget_threshold(scores, files, candidates, per_day=2.5 / days) == 0.6
    assert budget_threshold(scores, files, candidates, per_day=1 / days) == 0.95
    assert budget_threshold(scores, files, candidates, per_day=0.5 / days) == 0.999
    assert budget_threshold(scores, files, [0.5, 0.9], per_day=0.5 / days) == math.inf


def test_held_out_halves_choose_on_half_the_categories_and_score_the_others() -> None:
    held_out = held_out_halves(DESIGNS, FILES)  # 3 categories: chosen on one, scored on the two others
    assert sorted(held_out) == ["a", "b", "c"]
    assert [len(scores) for scores in held_out.values()] == [2, 2, 2]
    # Chosen on a: "early" (a perfect, no false alarm), which misses b's windows; chosen on c: a tie of
    # all three on c's window, the first ("early") wins. So b is missed in both splits that hold it out.
    assert [(s.tp, s.fn) for s in held_out["b"]] == [(0, 2), (0, 2)]
    # a is held out when chosen on b ("b-only": misses a) and on c ("early": finds a).
    assert sorted((s.tp, s.fn) for s in held_out["a"]) == [(0, 2), (2, 0)]


class Counter:
    """A detector whose score is how many values it has seen: shows which detector saw what."""

    def __init__(self) -> None:
        self.seen = 0

    def update(self, value: float, at: datetime | None = None) -> float:
        self.seen += 1
        return float(self.seen)


def test_the_long_run_feeds_one_detector_per_category_its_files_back_to_back() -> None:
    long, _, _ = run_detector_long(Counter, FILES)
    assert long["a/1"][0] == 1 and long["a/2"][0] == N + 1  # a's second file continues a's detector
    assert long["b/1"][0] == 1 and long["b/2"][-1] == 2 * N
    assert long["c/1"][-1] == N
    fresh, _, _ = run_detector(Counter, FILES)
    assert all(scores[0] == 1 for scores in fresh.values())  # a fresh detector per file


def test_the_budget_rule_takes_each_designs_lowest_threshold_within_budget_then_the_best_design() -> None:
    from bench.nab_tables import LONG, choose_at_budget, long_copies

    files = [nab_file("a/1"), nab_file("a/2")]
    corpus = [*files, *long_copies(files)]
    noisy = hit(50)
    noisy[20] = 0.6  # a false alarm before the window, below the window's score
    designs = {
        "late": {f.key: [0.7 if i == 58 else 0.0 for i in range(N)] for f in corpus},  # right edge: worth ~0
        "noisy": {f.key: noisy for f in corpus},
    }
    assert {f.key for f in corpus} == {"a/1", "a/2", "a/1" + LONG, "a/2" + LONG}
    chosen = choose_at_budget(designs, corpus)
    # Far under a day of samples, the budget allows no false alarm: "noisy" needs a threshold over 0.6,
    # and then finds all four windows at their left edge, which beats "late" at its lowest candidate.
    assert (chosen.design, chosen.threshold) == ("noisy", 0.605)
    assert chosen.raw == pytest.approx(4.0)
