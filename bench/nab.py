"""Score streaming anomaly detectors on NAB-format data, as the NAB paper does.

    .venv/bin/python bench/nab.py [--data DIR] [--windows FILE] [--detectors autarky,gaussian,random]
                                  [--by-category] [--tables]

DIR holds CSVs (`timestamp,value`, searched recursively); FILE maps each CSV's path relative to DIR to its
anomaly windows `[[start, end], ...]`. Every CSV must have an entry and every entry a CSV. Each detector
sees each file's rows in order; its best threshold per profile over the whole corpus is found exactly
(autarky/evaluation/nab_scoring.py) and the normalised scores are printed next to NAB's published scoreboard.

From Python (e.g. a tuning script):

    files = load_corpus(DEFAULT_DATA, DEFAULT_WINDOWS)
    result = evaluate(MyDetector, files)
    result.profiles["standard"].score
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autarky.evaluation.nab_data import DataError, NabFile, load_corpus, read_csv, read_windows
from autarky.evaluation.nab_scoring import (
    PROFILES,
    STANDARD,
    FileScore,
    Profile,
    best_threshold,
    normalised,
    score_file,
)
from bench.reference_detectors import RandomDetector, WindowedGaussian

__all__ = ["DataError", "NabFile", "load_corpus", "read_csv", "read_windows"]  # moved; old imports work

# The development set lives beside the project (../shared/data/nab); --data/--windows point elsewhere.
NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
DEFAULT_DATA = NAB_DIR / "data"
DEFAULT_WINDOWS = NAB_DIR / "combined_windows.json"

PUBLISHED = [  # name, standard, reward_low_fp, reward_low_fn (None: not quoted in our README)
    ("ARTime", 74.9, 65.1, 80.4),
    ("Numenta HTM", 70.5, None, None),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("earthgecko Skyline", 58.2, None, None),
    ("KNN CAD", 58.0, None, None),
    ("Relative Entropy", 54.6, None, None),
    ("Random Cut Forest", 51.7, None, None),
    ("Twitter ADVec", 47.1, 33.6, 53.5),
    ("Windowed Gaussian", 39.6, 20.9, 47.4),
    ("Etsy Skyline", 35.7, None, None),
    ("Bayesian changepoint", 17.7, None, None),
    ("random", 11.0, None, None),
    ("null", 0.0, 0.0, 0.0),
]


class Detector(Protocol):
    def update(self, value: float, at: datetime | None = None) -> float: ...


Factory = Callable[[], Detector]


# ------------------------------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class ProfileResult:
    threshold: float  # detections are scores >= threshold; inf: detecting nothing was best
    raw: float
    score: float  # normalised: null detector 0, perfect 100


@dataclass(frozen=True)
class Evaluation:
    scores: dict[str, list[float]]  # per file key, one score per row
    profiles: dict[str, ProfileResult]
    n_windows: int
    updates: int
    seconds_in_update: float
    state_bytes: int | None  # largest state_size_bytes() after a file, if the detector reports it

    @property
    def us_per_update(self) -> float:
        return 1e6 * self.seconds_in_update / max(self.updates, 1)


def run_detector(
    factory: Factory, files: Sequence[NabFile], long_run: bool = False
) -> tuple[dict[str, list[float]], float, int | None]:
    """Stream every file through a detector: scores per file, seconds inside update(), state size.

    A fresh detector per file, as NAB scores; or, with `long_run`, as a host's detector lives: one per
    category, fed all of its files back to back (by key) through every change of regime between them.
    """
    scores: dict[str, list[float]] = {}
    seconds = 0.0
    state_bytes: int | None = None
    detectors: dict[str, Detector] = {}
    for f in sorted(files, key=lambda f: f.key) if long_run else files:
        if not long_run:
            detector = factory()
        elif (detector := detectors.get(f.category)) is None:
            detector = detectors[f.category] = factory()
        update = detector.update
        start = time.perf_counter()
        out = [float(update(value, at)) for at, value in zip(f.timestamps, f.values, strict=True)]
        seconds += time.perf_counter() - start
        scores[f.key] = out
        size = getattr(detector, "state_size_bytes", None)
        if callable(size):
            state_bytes = max(state_bytes or 0, int(size()))
    return scores, seconds, state_bytes


def run_detector_long(
    factory: Factory, files: Sequence[NabFile]
) -> tuple[dict[str, list[float]], float, int | None]:
    """`run_detector` with one long-lived detector per category."""
    return run_detector(factory, files, long_run=True)


def evaluate(
    factory: Factory, files: Sequence[NabFile], profiles: Sequence[Profile] = PROFILES, long_run: bool = False
) -> Evaluation:
    """Score a detector on the corpus with the best threshold per profile; `long_run`: one detector per
    category over all of its files instead of a fresh one per file."""
    scores, seconds, state_bytes = run_detector(factory, files, long_run)
    n_windows = sum(len(f.labels.windows) for f in files)
    pairs = [(f.labels, scores[f.key]) for f in files]
    results = {}
    for profile in profiles:
        threshold, raw = best_threshold(pairs, profile)
        results[profile.name] = ProfileResult(threshold, raw, normalised(raw, n_windows, profile))
    return Evaluation(
        scores=scores,
        profiles=results,
        n_windows=n_windows,
        updates=sum(len(f.values) for f in files),
        seconds_in_update=seconds,
        state_bytes=state_bytes,
    )


@dataclass(frozen=True)
class CategoryResult:
    category: str
    n_files: int
    n_windows: int
    total: FileScore
    score: float | None  # normalised with the category's own null/perfect; None without windows


def by_category(
    evaluation: Evaluation, files: Sequence[NabFile], profile: Profile = STANDARD
) -> list[CategoryResult]:
    """Per-category scores at the corpus-wide threshold of `profile` (for tuning, not for ranking)."""
    threshold = evaluation.profiles[profile.name].threshold
    groups: dict[str, list[NabFile]] = {}
    for f in files:
        groups.setdefault(f.category, []).append(f)
    results = []
    for category, members in sorted(groups.items()):
        total = FileScore(0.0, 0, 0, 0)
        for f in members:
            total += score_file(f.labels, evaluation.scores[f.key], threshold, profile)
        n_windows = sum(len(f.labels.windows) for f in members)
        score = normalised(total.raw, n_windows, profile) if n_windows else None
        results.append(CategoryResult(category, len(members), n_windows, total, score))
    return results


# ------------------------------------------------------------------------------------------ detectors
def _autarky_factory() -> Factory:
    from autarky.autopilot.detectors.anomaly import AnomalyDetector

    return AnomalyDetector


def _round2_factory() -> Factory:
    from autarky.autopilot.detectors.anomaly_round2 import AnomalyDetectorRound2

    return AnomalyDetectorRound2


DETECTORS: dict[str, Callable[[], Factory]] = {
    "autarky": _autarky_factory,
    "autarky-round2": _round2_factory,  # releases 17-28, beside round 3
    "gaussian": lambda: WindowedGaussian,
    "random": lambda: RandomDetector,
}


# ------------------------------------------------------------------------------------------ output
def format_threshold(t: float) -> str:
    if math.isinf(t):
        return "none"
    if 0.99 < t < 1.0:  # erf-like scores crowd near 1: show how far below 1
        return f"1-{1.0 - t:.2g}"
    return f"{t:.4g}"


def print_table(results: dict[str, Evaluation], files: Sequence[NabFile]) -> None:
    n_rows = sum(len(f.values) for f in files)
    n_windows = sum(len(f.labels.windows) for f in files)
    names = [p.name for p in PROFILES]
    print(f"NAB: {len(files)} files, {n_rows} rows, {n_windows} windows")
    print()
    header = f"{'detector':<22} {names[0]:>9} {names[1]:>14} {names[2]:>14}   {'thresholds':<32}"
    print(f"{header} {'µs/update':>10} {'state/metric':>13}")
    print("-" * (len(header) + 25))
    for name, ev in results.items():
        s = [ev.profiles[n].score for n in names]
        thresholds = " / ".join(format_threshold(ev.profiles[n].threshold) for n in names)
        state = "n/a" if ev.state_bytes is None else f"{ev.state_bytes} B"
        print(
            f"{name:<22} {s[0]:>9.1f} {s[1]:>14.1f} {s[2]:>14.1f}   {thresholds:<32} "
            f"{ev.us_per_update:>10.2f} {state:>13}"
        )
    print()
    print("published, whole NAB corpus (ours is the development set without one category):")
    for name, *scores in PUBLISHED:
        cells = [f"{v:.1f}" if v is not None else "" for v in scores]
        print(f"  {name:<20} {cells[0]:>9} {cells[1]:>14} {cells[2]:>14}")


def print_by_category(name: str, evaluation: Evaluation, files: Sequence[NabFile]) -> None:
    threshold = format_threshold(evaluation.profiles[STANDARD.name].threshold)
    print()
    print(f"{name}: standard profile per category, at the corpus threshold {threshold}")
    columns = f"{'files':>5} {'windows':>7} {'score':>7} {'raw':>8} {'TP':>4} {'FP':>6} {'FN':>4}"
    print(f"  {'category':<24} {columns}")
    for c in by_category(evaluation, files):
        score = "n/a" if c.score is None else f"{c.score:.1f}"
        t = c.total
        print(
            f"  {c.category:<24} {c.n_files:>5} {c.n_windows:>7} {score:>7} {t.raw:>8.2f} "
            f"{t.tp:>4} {t.fp:>6} {t.fn:>4}"
        )


NAB_REPOSITORY = "https://github.com/numenta/NAB"


def missing_data_message(data_dir: Path, windows_file: Path) -> str:
    """Where the data was looked for, and how to get NAB (a fresh clone has no ../shared/data/nab)."""
    missing = data_dir if not data_dir.is_dir() else windows_file
    return (
        f"error: NAB data not found: {missing}\n"
        f"Get the Numenta Anomaly Benchmark and point at it:\n"
        f"    git clone {NAB_REPOSITORY}\n"
        f"    .venv/bin/python bench/nab.py --data NAB/data --windows NAB/labels/combined_windows.json"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of NAB-format CSVs")
    parser.add_argument(
        "--windows", type=Path, help="windows JSON (default: combined_windows.json next to DIR)"
    )
    parser.add_argument(
        "--detectors", default="autarky,autarky-round2,gaussian,random", help="comma-separated names"
    )
    parser.add_argument("--by-category", action="store_true", help="standard score per category, too")
    parser.add_argument(
        "--tables",
        action="store_true",
        help="also: the design chosen by leave-one-category-out cross-validation, the long run (one "
        "detector per category over all its files), the alert budget and the cost by window",
    )
    args = parser.parse_args(argv)
    windows_file = args.windows or args.data.parent / "combined_windows.json"

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        print(f"unknown detector(s) {unknown}; choose from {', '.join(DETECTORS)}", file=sys.stderr)
        return 2
    if not args.data.is_dir() or not windows_file.is_file():
        print(missing_data_message(args.data, windows_file), file=sys.stderr)
        return 2
    try:
        files = load_corpus(args.data, windows_file)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no CSV files under {args.data}", file=sys.stderr)
        return 2
    if not any(f.labels.windows for f in files):
        print(f"error: no anomaly windows in {windows_file}; scores cannot be normalised", file=sys.stderr)
        return 2

    results: dict[str, Evaluation] = {}
    for name in names:
        try:
            factory = DETECTORS[name]()
        except Exception as e:  # the autarky detector may be missing or broken: score the others
            print(f"skipping {name}: cannot load its detector ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        print(f"scoring {name} ...", file=sys.stderr, flush=True)
        results[name] = evaluate(factory, files)
    if not results:
        return 1
    print_table(results, files)
    if args.by_category:
        for name, evaluation in results.items():
            print_by_category(name, evaluation, files)
    if args.tables:
        print_tables(files)
    return 0


def print_tables(files: Sequence[NabFile]) -> None:
    from autarky.autopilot.detectors.anomaly import AnomalyConfig
    from autarky.autopilot.settings import AnalysisSettings
    from bench import nab_tables

    if len({f.category for f in files}) > 1:
        scores = nab_tables.design_scores(files)
        nab_tables.print_cross_validation(files, scores)  # warns if its choice is not the shipped default
        nab_tables.print_held_out_halves(files, scores)
    else:
        print("\ncross-validation needs at least two categories (subdirectories of --data)")
    shipped = AnomalyConfig()  # the long run and the alert budget are of what the product runs
    runs = nab_tables.fresh_and_long(shipped, files)  # both tables read the same two runs
    nab_tables.print_long_run(shipped, files, runs)
    nab_tables.print_alert_budget(shipped, files, AnalysisSettings().anomaly_threshold, runs)
    nab_tables.print_cost_by_window(files)


if __name__ == "__main__":
    sys.exit(main())
