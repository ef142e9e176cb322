"""The NAB scorer against hand-worked numbers, and its exact threshold search against brute force.

The hand-worked file: 100 rows, so probation = floor(0.15 * 100) = 15 rows (0..14 ignored), and one
window at rows 50..59 (width 10, r - l = 9). S(y) = 2 / (1 + e^(5y)) - 1; S(-1) = 2 / 1.0067379 - 1 =
0.9866143. Inside the window y = -(r - i + 1) / (r - l + 1), as NAB computes it: -1 at the left edge,
-0.1 at the right edge.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from autarky.evaluation.nab_scoring import (
    PROFILES,
    REWARD_LOW_FN,
    REWARD_LOW_FP,
    STANDARD,
    Labels,
    Profile,
    best_threshold,
    label_rows,
    normalised,
    probation_rows,
    scaled_sigmoid,
    score_file,
    window_rows,
)
from bench.nab import DataError, evaluate, load_corpus
from bench.reference_detectors import RandomDetector, WindowedGaussian

N = 100
LEFT, RIGHT = 50, 59


def labels() -> Labels:
    return label_rows(N, [(LEFT, RIGHT)])


def detections(*rows: int) -> list[float]:
    scores = [0.0] * N
    for i in rows:
        scores[i] = 1.0
    return scores


def raw(*rows: int, profile: Profile = STANDARD) -> float:
    return score_file(labels(), detections(*rows), 0.5, profile).raw


def test_profiles_and_sigmoid() -> None:
    assert [(p.tp, p.fp, p.fn) for p in PROFILES] == [(1.0, 0.11, 1.0), (1.0, 0.22, 1.0), (1.0, 0.11, 2.0)]
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866143, abs=1e-7)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == pytest.approx(-0.9999994, abs=1e-7)  # 2 / (1 + e^15) - 1
    assert scaled_sigmoid(3.0001) == -1.0


def test_probation_rows() -> None:
    assert probation_rows(100) == 15
    assert probation_rows(4032) == 604  # 0.15 * 4032 = 604.8
    assert probation_rows(5000) == 750  # 0.15 * 5000 = 750
    assert probation_rows(22695) == 750  # capped


def test_left_edge_is_worth_exactly_the_tp_weight() -> None:
    result = score_file(labels(), detections(LEFT), 0.5, STANDARD)
    assert result.raw == 1.0  # y = -1: S(-1) / S(-1)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)


def test_right_edge_is_worth_little_but_is_no_miss() -> None:
    result = score_file(labels(), detections(RIGHT), 0.5, STANDARD)
    # y = -1/10: S = 2 / (1 + e^-0.5) - 1 = 2 / 1.6065307 - 1 = 0.2449187; / 0.9866143 = 0.2482415
    assert result.raw == pytest.approx(0.2482415, abs=1e-6)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)


def test_inside_window_value() -> None:
    # row 55: y = -(59 - 55 + 1) / 10 = -0.5; S = 2 / (1 + e^-2.5) - 1 = 2 / 1.0820850 - 1 = 0.8482836;
    # / 0.9866143 = 0.8597926
    assert raw(55) == pytest.approx(0.8597926, abs=1e-6)


def test_just_after_the_window_costs_little() -> None:
    # row 60: d = (60 - 59) / 9 = 1/9; S(1/9) = 2 / (1 + e^0.5556) - 1 = 2 / 2.7429090 - 1 = -0.2708471;
    # cost 0.11 * -0.2708471 = -0.0297932; plus the left-edge TP worth 1.0
    assert raw(LEFT, 60) == pytest.approx(1.0 - 0.0297932, abs=1e-6)
    assert raw(LEFT, 60, profile=REWARD_LOW_FP) == pytest.approx(1.0 - 0.0595864, abs=1e-6)  # 0.22 * S


def test_far_after_the_window_costs_nearly_the_fp_weight() -> None:
    # row 80: d = 21 / 9 = 2.333; S = 2 / (1 + e^11.667) - 1 = -0.9999829
    assert raw(LEFT, 80) == pytest.approx(1.0 - 0.11 * 0.9999829, abs=1e-6)
    # row 99: d = 40 / 9 = 4.44 > 3: S = -1 exactly
    assert raw(LEFT, 99) == 1.0 - 0.11


def test_before_the_window_costs_the_full_fp_weight() -> None:
    result = score_file(labels(), detections(20), 0.5, STANDARD)
    assert result.raw == -0.11 - 1.0  # full FP cost, and the window is missed
    assert (result.tp, result.fp, result.fn) == (0, 1, 1)


def test_no_detection_costs_the_fn_weight() -> None:
    assert raw() == -1.0
    assert raw(profile=REWARD_LOW_FN) == -2.0


def test_probationary_detections_are_ignored() -> None:
    assert raw(0, 10, 14) == -1.0  # rows 0..14 are probationary: as if nothing was detected
    assert raw(15) == -0.11 - 1.0  # row 15 is the first that counts
    # a window reaching into probation: only its rows from 15 on can detect
    partly = label_rows(N, [(10, 19)])
    assert score_file(partly, detections(12), 0.5, STANDARD).raw == -1.0


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # row 52: y = -8/10; S = 2 / (1 + e^-4) - 1 = 2 / 1.0183156 - 1 = 0.9640276; / 0.9866143 = 0.9771068
    assert raw(52, 57) == pytest.approx(0.9771068, abs=1e-6)
    assert raw(52, 57) == raw(52)
    assert raw(LEFT, RIGHT) == 1.0


def test_one_row_window() -> None:
    single = label_rows(N, [(50, 50)])
    assert score_file(single, detections(50), 0.5, STANDARD).raw == 1.0  # y = -1 for a one-row window
    # after it the divisor is 1: row 51 costs 0.11 * S(1) = 0.11 * (2 / (1 + e^5) - 1) = 0.11 * -0.9866143
    assert score_file(single, detections(51), 0.5, STANDARD).raw == pytest.approx(-1.0 - 0.11 * 0.9866143)


def test_normalisation() -> None:
    for profile in PROFILES:
        assert normalised(profile.tp * 3, 3, profile) == 100.0  # perfect: each left edge
        assert normalised(-profile.fn * 3, 3, profile) == 0.0  # null: nothing detected
    assert normalised(0.0, 1, STANDARD) == 50.0  # (0 - -1) / (1 - -1)
    with pytest.raises(ValueError):
        normalised(0.0, 0, STANDARD)


def test_window_rows_from_timestamps() -> None:
    t0 = datetime(2014, 4, 1)
    timestamps = [t0 + timedelta(minutes=5 * i) for i in range(20)]
    # start between rows 2 and 3 -> row 3 (first >= start); end between rows 7 and 8 -> row 7 (last <= end)
    start, end = t0 + timedelta(minutes=12), t0 + timedelta(minutes=38)
    assert window_rows(timestamps, [(start, end)]) == [(3, 7)]
    assert window_rows(timestamps, [(timestamps[3], timestamps[7])]) == [(3, 7)]  # exact hits are inside
    with pytest.raises(ValueError, match="no rows"):
        window_rows(timestamps, [(t0 + timedelta(minutes=11), t0 + timedelta(minutes=12))])


def test_window_rows_in_file_order_when_the_clock_steps_back_or_repeats() -> None:
    t0 = datetime(2014, 10, 26, 0, 0)
    # Hourly rows; at 03:00 the clock is set back to 02:00 (as at a daylight-saving change), and one
    # timestamp is repeated: 00 01 02 02 02 03 04 ...
    hours = [0, 1, 2, 2, 2, 3, 4, 5, 6]
    timestamps = [t0 + timedelta(hours=h) for h in hours]
    # A window over 02:00..03:00 spans the rows in file order from the first 02:00 to the 03:00.
    assert window_rows(timestamps, [(timestamps[2], timestamps[5])]) == [(2, 5)]
    stepped_back = [t0 + timedelta(hours=h) for h in [0, 1, 2, 3, 2, 3, 4, 5]]
    assert window_rows(stepped_back, [(t0 + timedelta(hours=3), t0 + timedelta(hours=4))]) == [(3, 6)]
    assert window_rows(stepped_back, [(t0, t0 + timedelta(hours=1))]) == [(0, 1)]
    with pytest.raises(ValueError, match="no rows"):
        window_rows(stepped_back, [(t0 + timedelta(hours=7), t0 + timedelta(hours=8))])
    # The window ends where the clock first passes its end, as NAB's does (at the first row stamped
    # with it), not at a later row that carries an earlier time again.
    twice = [t0 + timedelta(hours=h) for h in [0, 1, 2, 3, 4, 1, 2, 3, 4, 5]]
    assert window_rows(twice, [(t0 + timedelta(hours=2), t0 + timedelta(hours=3))]) == [(2, 3)]


def test_overlapping_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        label_rows(N, [(10, 20), (20, 30)])


def test_best_threshold_hand_worked() -> None:
    scores = [0.0] * N
    scores[20] = 0.9  # before the window: -0.11
    scores[80] = 0.7  # far after: 0.11 * S(21/9) = -0.1099981
    scores[55] = 0.5  # window first detection at 55: +0.8597926 instead of -1
    scores[52] = 0.3  # window first detection at 52: +0.9771068
    # t = inf: -1 (null)              t = 0.9: -1 - 0.11 = -1.11
    # t = 0.7: -1.11 - 0.1099981 = -1.2199981
    # t = 0.5: 0.8597926 - 0.2199981 = 0.6397945
    # t = 0.3: 0.9771068 - 0.2199981 = 0.7571087   <- best
    # t = 0.0: every row from 15 on detects: window worth 1.0, but 35 rows before it cost 0.11 each alone
    threshold, best = best_threshold([(labels(), scores)], STANDARD)
    assert threshold == 0.3
    assert best == pytest.approx(0.7571087, abs=1e-6)
    assert best == pytest.approx(score_file(labels(), scores, 0.3, STANDARD).raw)
    # FPs ten times dearer: 0.9771068 - 10 * 1.9999829 < -1, so detecting nothing is best
    harsh = Profile("harsh", tp=1.0, fp=10.0, fn=1.0)
    assert best_threshold([(labels(), scores)], harsh) == (math.inf, -1.0)


def random_corpus(rng: random.Random) -> list[tuple[Labels, list[float]]]:
    corpus = []
    for _ in range(rng.randint(1, 6)):
        n = rng.randint(20, 200)
        windows, start = [], rng.randint(0, n // 3)
        while start < n and rng.random() < 0.7:
            end = min(n - 1, start + rng.randint(0, 15))
            windows.append((start, end))
            start = end + 1 + rng.randint(1, 40)
        # few distinct values, so ties are common; an occasional NaN never detects
        scores = [round(rng.random(), 1) if rng.random() > 0.01 else math.nan for _ in range(n)]
        corpus.append((label_rows(n, windows), scores))
    return corpus


def test_best_threshold_agrees_with_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(200):
        corpus = random_corpus(rng)
        candidates = {s for _, scores in corpus for s in scores if not math.isnan(s)} | {math.inf}
        for profile in PROFILES:
            brute = {t: sum(score_file(lab, sc, t, profile).raw for lab, sc in corpus) for t in candidates}
            threshold, best = best_threshold(corpus, profile)
            assert best == pytest.approx(max(brute.values()), abs=1e-9)
            assert brute[threshold] == pytest.approx(best, abs=1e-9)


def test_reference_detectors() -> None:
    gauss = WindowedGaussian(window=50)
    rng = random.Random(1)
    scores = [gauss.update(rng.gauss(10.0, 1.0)) for _ in range(500)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert gauss.update(30.0) > 0.999999  # 20 sigma away
    assert gauss.update(10.0) < 0.9
    at = datetime(2014, 4, 1)
    first = [RandomDetector().update(1.0, at) for _ in range(2)]
    assert first[0] == first[1]  # same first row, same seed: same sequence
    assert RandomDetector().update(2.0, at) != first[0]


def test_runner_loads_and_scores_a_tiny_corpus(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    t0 = datetime(2014, 4, 1)
    lines = ["timestamp,value"] + [f"{t0 + timedelta(minutes=5 * i)},{i % 7}" for i in range(N)]
    (tmp_path / "data" / "cat" / "a.csv").write_text("\n".join(lines) + "\n")
    windows = tmp_path / "windows.json"
    window = [str(t0 + timedelta(minutes=5 * LEFT)), str(t0 + timedelta(minutes=5 * RIGHT))]
    windows.write_text(f'{{"cat/a.csv": [["{window[0]}", "{window[1]}"]]}}')
    files = load_corpus(tmp_path / "data", windows)
    assert [f.key for f in files] == ["cat/a.csv"]
    assert files[0].labels.windows == ((LEFT, RIGHT),)
    result = evaluate(lambda: WindowedGaussian(window=20), files)
    assert set(result.profiles) == {p.name for p in PROFILES}
    assert result.profiles["standard"].score >= 0.0  # never below the null detector
    assert result.updates == N

    windows.write_text('{"cat/a.csv": [], "cat/b.csv": []}')
    with pytest.raises(DataError, match=r"b\.csv"):
        load_corpus(tmp_path / "data", windows)
    windows.write_text('{"cat/a.csv": []}')
    (tmp_path / "data" / "cat" / "a.csv").write_text("timestamp,value\n2014-04-01 00:00:00,1\nnot a row,x\n")
    with pytest.raises(DataError, match=r"a\.csv:3"):
        load_corpus(tmp_path / "data", windows)


def test_runner_scores_a_file_whose_clock_steps_back(tmp_path: Path) -> None:
    # 100 five-minute rows, but at row 40 the clock is set back an hour and row 41 repeats row 40's time.
    (tmp_path / "data" / "cat").mkdir(parents=True)
    t0 = datetime(2014, 10, 26)
    times = [t0 + timedelta(minutes=5 * i) for i in range(N)]
    times = times[:40] + [t - timedelta(hours=1) for t in times[40:]]
    times[41] = times[40]
    lines = ["timestamp,value"] + [f"{t},{i % 7}" for i, t in enumerate(times)]
    (tmp_path / "data" / "cat" / "a.csv").write_text("\n".join(lines) + "\n")
    windows = tmp_path / "windows.json"
    windows.write_text(f'{{"cat/a.csv": [["{times[60]}", "{times[69]}"]]}}')
    files = load_corpus(tmp_path / "data", windows)
    assert files[0].timestamps == times  # file order kept
    assert files[0].labels.windows == ((60, 69),)
    assert evaluate(lambda: WindowedGaussian(window=20), files).updates == N
    # Rows 50 and 51 are stamped as rows 38 and 39 were before the clock went back: a window from that
    # time on starts at the first row in file order that carries it.
    windows.write_text(f'{{"cat/a.csv": [["{times[50]}", "{times[59]}"]]}}')
    assert times[50] == times[38]
    assert load_corpus(tmp_path / "data", windows)[0].labels.windows == ((38, 59),)
