"""Raw anomaly scores against raw → anomaly likelihood on the NAB development set (issue 29, prototype).

    .venv/bin/python bench/nab_likelihood.py

A record of the prototype, kept as it was measured: on round 2's detector (anomaly_round2.py) and its
shipped threshold 0.95; round 3 took another way (anomaly.py's EventFilter). A fresh detector per
file, as NAB scores (bench/nab.py's loader and scorer, the development set in ../shared/data/nab only).
Two raw inputs are fed to the likelihood layer (autarky/autopilot/detectors/likelihood.py): round 2's
output (its `suppression` zeroes a score that does not beat the last 50) and the same detector with
`suppression=0` (every raw score).

Thresholds:
- "best": NAB's own best threshold over the corpus (in-sample: an upper bound, not a prediction);
- "fixed": for the raw detector the shipped `anomaly_threshold` (0.95); for the likelihood a tail
  probability of 1e-4 (likelihood >= 1 - 1e-4), chosen once before any measurement from the alert
  budget arithmetic: at 30 s sampling a calibrated metric then exceeds it at most 2880 × 1e-4 ≈ 0.3 times
  a day. It was not tuned on this data.

The likelihood's interval per file is the median gap between its timestamps (the autopilot knows its
monitor interval; NAB files do not say theirs). Its parameters (history_hours, short_samples, min_std)
are the module's defaults, set from the paper's idea and not tuned here; the last table chooses them, and
the raw input, by leave-one-category-out (design and threshold chosen without the category, then scored
on it), which is the figure to read as "on data it was not tuned on".

Likelihoods round to 1.0 beyond z ≈ 8 (and tails to 0 beyond z ≈ 38), so NAB is scored on the layer's
z-score, which is monotone in the likelihood: the same detections as thresholding it, without ties.
Thresholds are printed as z and its Gaussian tail.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autarky.autopilot.detectors.anomaly import AnomalyConfig
from autarky.autopilot.detectors.anomaly_round2 import AnomalyDetectorRound2
from autarky.autopilot.detectors.likelihood import AnomalyLikelihood, LikelihoodConfig, gaussian_upper_tail
from autarky.evaluation.crossval import Choice, cross_validated, leave_one_category_out, score_choice
from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import STANDARD, FileScore, best_threshold, normalised, score_file
from bench.nab import DEFAULT_DATA, DEFAULT_WINDOWS, load_corpus, run_detector

ROUND_2_THRESHOLD = 0.95  # round 2's shipped anomaly_threshold
FIXED_TAIL = 1e-4  # the likelihood's fixed threshold as a tail probability (see the docstring)
GRID = {  # the designs leave-one-category-out chooses among
    "history_hours": (6.0, 24.0, 96.0),
    "short_samples": (1, 5, 10),
    "min_std": (0.01, 0.05, 0.1, 0.2),
}

Scores = dict[str, list[float]]


def z_for_tail(tail: float) -> float:
    """The z whose Gaussian upper tail is `tail` (bisection: no scipy in bench code either)."""
    low, high = -10.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if gaussian_upper_tail(mid) > tail else (low, mid)
    return high


FIXED_Z = z_for_tail(FIXED_TAIL)


def interval_seconds(f: NabFile) -> float:
    gaps = [(b - a).total_seconds() for a, b in zip(f.timestamps, f.timestamps[1:], strict=False)]
    positive = [g for g in gaps if g > 0]
    return statistics.median(positive) if positive else 300.0


def likelihood_scores(raw: Scores, files: Sequence[NabFile], config: LikelihoodConfig) -> Scores:
    out: Scores = {}
    for f in files:
        layer = AnomalyLikelihood(interval_seconds(f), config)
        row = []
        for r in raw[f.key]:
            layer.update(r)
            row.append(layer.z)
        out[f.key] = row
    return out


def at_threshold(
    scores: Mapping[str, Sequence[float]], files: Sequence[NabFile], threshold: float
) -> FileScore:
    total = FileScore(0.0, 0, 0, 0)
    for f in files:
        total += score_file(f.labels, scores[f.key], threshold, STANDARD)
    return total


def best(scores: Mapping[str, Sequence[float]], files: Sequence[NabFile]) -> tuple[float, FileScore]:
    threshold, _ = best_threshold([(f.labels, scores[f.key]) for f in files], STANDARD)
    return threshold, at_threshold(scores, files, threshold)


def design_name(source: str, c: LikelihoodConfig) -> str:
    return f"{source},h={c.history_hours:g},k={c.short_samples},min_std={c.min_std:g}"


def main() -> int:
    files = load_corpus(DEFAULT_DATA, DEFAULT_WINDOWS)
    n_windows = sum(len(f.labels.windows) for f in files)
    print(f"NAB development set: {len(files)} files, {n_windows} windows; fresh detector per file")
    raws = {
        "suppressed": run_detector(AnomalyDetectorRound2, files)[0],
        "every": run_detector(partial(AnomalyDetectorRound2, AnomalyConfig(suppression=0)), files)[0],
    }
    shipped = ROUND_2_THRESHOLD

    def row(name: str, best_fs: tuple[float, FileScore], fixed: FileScore, threshold_text: str) -> None:
        b_t, b = best_fs
        cells = [normalised(x.raw, n_windows, STANDARD) for x in (b, fixed)]
        print(
            f"  {name:<34} {cells[0]:>6.1f} {b.tp:>3}/{b.fp:<4} {_t(b_t, name):>22}   {cells[1]:>6.1f} "
            f"{fixed.tp:>3}/{fixed.fp:<4} {threshold_text}"
        )

    print()
    print(f"  {'scores':<34} {'best':>6} {'TP/FP':<8} {'at':>22}   {'fixed':>6} {'TP/FP':<8} at")
    for source, raw in raws.items():
        row(f"raw ({source})", best(raw, files), at_threshold(raw, files, shipped), f"{shipped:g}")
    default = LikelihoodConfig()
    for source, raw in raws.items():
        lk = likelihood_scores(raw, files, default)
        row(f"likelihood of raw ({source})", best(lk, files), at_threshold(lk, files, FIXED_Z), "tail 1e-4")
    print(f"  likelihood defaults: {design_name('', default)[1:]}, warmup {default.warmup_hours:g} h")

    # Leave-one-category-out over input × GRID: design and threshold chosen without the category.
    designs: dict[str, Scores] = {}
    for source, raw in raws.items():
        for h in GRID["history_hours"]:
            for k in GRID["short_samples"]:
                for s in GRID["min_std"]:
                    c = LikelihoodConfig(history_hours=h, short_samples=k, min_std=s)
                    designs[design_name(source, c)] = likelihood_scores(raw, files, c)
    overall, folds = leave_one_category_out(designs, files)
    print()
    print(f"Leave-one-category-out over {len(designs)} likelihood designs (input × {', '.join(GRID)}):")
    print(f"  chosen on all: {overall.design} at {_tail_text(overall.threshold)}")
    print(f"  {'category':<22} {'in':>6} {'out':>6} {'fixed out':>9}  chosen without it")
    fixed_raw = 0.0
    for fold in folds:
        members = [f for f in files if f.category == fold.category]
        others = [f for f in files if f.category != fold.category]
        # The same, with the threshold held at the fixed tail: only the design is chosen.
        fixed_choice = max(
            (Choice(name, FIXED_Z, at_threshold(s, others, FIXED_Z).raw) for name, s in designs.items()),
            key=lambda c: c.raw,
        )
        fixed_out = score_choice(fixed_choice, designs, members)
        fixed_raw += fixed_out.raw
        if fold.n_windows:
            cells = [
                normalised(x.raw, fold.n_windows, STANDARD)
                for x in (fold.in_sample, fold.left_out, fixed_out)
            ]
            text = f"{cells[0]:>6.1f} {cells[1]:>6.1f} {cells[2]:>9.1f}"
        else:
            text = f"{'n/a':>6} {'FP ' + str(fold.left_out.fp):>6} {'FP ' + str(fixed_out.fp):>9}"
        chosen = f"{fold.chosen_without.design} at {_tail_text(fold.chosen_without.threshold)}"
        print(f"  {fold.category:<22} {text}  {chosen}")
    print(
        f"  all left-out together: {cross_validated(folds):.1f} (own threshold), "
        f"{normalised(fixed_raw, n_windows, STANDARD):.1f} (fixed tail 1e-4)"
    )
    # The same question for the raw scores (only their threshold is chosen without the category).
    _, raw_folds = leave_one_category_out({"raw": raws["suppressed"]}, files)
    print(f"  raw (suppressed), threshold chosen the same way: {cross_validated(raw_folds):.1f}")
    return 0


def _tail_text(z: float) -> str:
    if math.isinf(z):
        return "none"
    return f"z {z:.3g} (tail {gaussian_upper_tail(z):.1g})"


def _t(threshold: float, name: str) -> str:
    return _tail_text(threshold) if name.startswith("likelihood") else f"{threshold:.4g}"


if __name__ == "__main__":
    sys.exit(main())
