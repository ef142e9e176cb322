"""The three tables `make bench-nab` prints after the scoreboard (issue 17): the design chosen by
leave-one-category-out cross-validation, the long-run evaluation, and the alert budget.

Only the development set (../shared/data/nab, or --data/--windows) is used for any choice here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial

from autarky.config import AnalysisSettings
from autarky.detectors.anomaly import AnomalyConfig, AnomalyDetector
from autarky.evaluation.alert_budget import alert_rates
from autarky.evaluation.crossval import cross_validated, leave_one_category_out
from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import STANDARD
from bench.nab import Evaluation, by_category, evaluate, format_threshold, run_detector

# The designs cross-validation chooses among. Every one forgets (`memory`): a detector that never does
# is blinded for good by one burst, which no NAB file of a few thousand rows shows but a host would.
GRID = {
    "memory": (2000, 4000, 8000),
    "window": (64, 128, 256),
    "z_half": (2.0, 3.0, 4.0),
}
SAMPLE_SECONDS = 30.0  # the autopilot's default monitor interval
METRICS_PER_HOST = len(AnalysisSettings().anomaly_metrics)
# The shipped threshold's budget: one false anomaly alert per metric per day. One per host per day is
# marked too; on this data it costs most of the detector's sensitivity (see AnalysisSettings).
ALERT_BUDGET_PER_METRIC_DAY = 1.0
BUDGET_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.975, 0.98)


def design_name(config: AnomalyConfig) -> str:
    return ",".join(f"{k}={getattr(config, k):g}" for k in GRID)


def designs() -> list[AnomalyConfig]:
    keys = list(GRID)
    return [
        AnomalyConfig(**dict(zip(keys, combo, strict=True))) for combo in itertools.product(*GRID.values())
    ]


def print_cross_validation(files: Sequence[NabFile]) -> AnomalyConfig:
    """Score every design, choose by leave-one-category-out, print the folds; the overall choice."""
    configs = {design_name(c): c for c in designs()}
    scores = {name: run_detector(partial(AnomalyDetector, c), files)[0] for name, c in configs.items()}
    overall, folds = leave_one_category_out(scores, files)
    shipped = design_name(AnomalyConfig())
    print()
    print(f"Cross-validation: {len(configs)} designs ({', '.join(GRID)}), leave one category out, standard")
    print(f"  chosen on all categories: {overall.design} at {format_threshold(overall.threshold)}")
    print(f"  shipped default:          {shipped}{'' if shipped in configs else ' (not in the grid)'}")
    print(
        f"  {'left-out category':<22} {'in-sample':>9} {'left-out':>9} {'gap':>6} {'FP in/out':>10}"
        "  chosen without it"
    )
    for fold in folds:
        inside, outside = fold.figure(fold.in_sample), fold.figure(fold.left_out)
        cells = (
            ("n/a", "n/a", "")
            if inside is None or outside is None
            else (f"{inside:.1f}", f"{outside:.1f}", f"{outside - inside:+.1f}")
        )
        fps = f"{fold.in_sample.fp}/{fold.left_out.fp}"
        chosen = f"{fold.chosen_without.design} at {format_threshold(fold.chosen_without.threshold)}"
        print(f"  {fold.category:<22} {cells[0]:>9} {cells[1]:>9} {cells[2]:>6} {fps:>10}  {chosen}")
    print(f"  all left-out scores together: {cross_validated(folds):.1f} (the figure to expect on new data)")
    return configs[overall.design]


def print_long_run(config: AnomalyConfig, files: Sequence[NabFile]) -> None:
    """Fresh detector per file (NAB) beside one detector per category over all of its files."""
    factory = partial(AnomalyDetector, config)
    fresh, long = evaluate(factory, files), evaluate(factory, files, long_run=True)
    print()
    print(f"Long run ({design_name(config)}): one detector per category over all its files back to back")
    print(f"  {'category':<22} {'fresh':>7} {'long':>7} {'gap':>6}")
    for f_cat, l_cat in zip(by_category(fresh, files), by_category(long, files), strict=True):
        if f_cat.score is None or l_cat.score is None:
            fps = f"FP {f_cat.total.fp} / {l_cat.total.fp}"
            print(f"  {f_cat.category:<22} {'n/a':>7} {'n/a':>7} {'':>6}  {fps}")
            continue
        print(
            f"  {f_cat.category:<22} {f_cat.score:>7.1f} {l_cat.score:>7.1f} "
            f"{l_cat.score - f_cat.score:>+6.1f}"
        )
    f_all, l_all = fresh.profiles[STANDARD.name].score, long.profiles[STANDARD.name].score
    print(f"  {'all (own best threshold)':<22} {f_all:>7.1f} {l_all:>7.1f} {l_all - f_all:>+6.1f}")


def print_alert_budget(evaluation: Evaluation, files: Sequence[NabFile], shipped: float) -> None:
    """False alarms per day at the autopilot's sampling, for a range of thresholds and the shipped one."""
    thresholds = sorted({*BUDGET_THRESHOLDS, shipped, evaluation.profiles[STANDARD.name].threshold})
    thresholds = [t for t in thresholds if not math.isinf(t)]
    print()
    print(
        f"Alert budget: false anomaly alerts at {SAMPLE_SECONDS:g} s sampling, {METRICS_PER_HOST} metrics "
        f"per host (the default anomaly_metrics); budget of the shipped threshold: "
        f"{ALERT_BUDGET_PER_METRIC_DAY:g} per metric per day"
    )
    print(f"  {'threshold':>9} {'per metric/day':>15} {'per host/day':>13} {'NAB score':>10}")
    for rate in alert_rates(evaluation.scores, files, thresholds, SAMPLE_SECONDS):
        marks = []
        if rate.threshold == shipped:
            marks.append("shipped (anomaly_threshold)")
        if rate.threshold == evaluation.profiles[STANDARD.name].threshold:
            marks.append("NAB's best")
        if rate.per_day <= ALERT_BUDGET_PER_METRIC_DAY:
            marks.append("≤ 1/metric/day")
        if rate.per_day * METRICS_PER_HOST <= 1:
            marks.append("≤ 1/host/day")
        print(
            f"  {format_threshold(rate.threshold):>9} {rate.per_day:>15.3f} "
            f"{rate.per_day * METRICS_PER_HOST:>13.2f} {rate.nab_score:>10.1f}  {'; '.join(marks)}"
        )


def print_cost_by_window(files: Sequence[NabFile], windows: Sequence[int] = (64, 256, 1024, 4096)) -> None:
    """µs per update at growing windows, side by side in one run: linear cost shows as ~4× per row."""
    sample = sorted(files, key=lambda f: -len(f.values))[:3]
    print()
    print(f"Cost per update by window ({sum(len(f.values) for f in sample)} values from the longest files)")
    previous = None
    for window in windows:
        config = AnomalyConfig(window=window)
        _, seconds, _ = run_detector(partial(AnomalyDetector, config), sample)
        us = 1e6 * seconds / sum(len(f.values) for f in sample)
        ratio = f"  ×{us / previous:.1f}" if previous else ""
        print(f"  window {window:>5}: {us:8.1f} µs{ratio}")
        previous = us
