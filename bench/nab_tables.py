"""The three tables `make bench-nab` prints after the scoreboard (issue 17): the design chosen by
leave-one-category-out cross-validation, the long-run evaluation, and the alert budget.

Only the development set (../shared/data/nab, or --data/--windows) is used for any choice here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from functools import partial

from autarky.autopilot.detectors.anomaly import AnomalyConfig, AnomalyDetector
from autarky.autopilot.settings import AnalysisSettings
from autarky.evaluation.alert_budget import (
    THRESHOLD_STEPS,
    alert_rates,
    budget_threshold,
    false_alarms_per_day,
)
from autarky.evaluation.crossval import Choice, choose, half_splits, leave_one_category_out, score_choice
from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import STANDARD, normalised
from bench.nab import Evaluation, by_category, evaluate, format_threshold, run_detector, run_detector_long

# The designs cross-validation chooses among: how long the detector remembers levels, and how long an
# event keeps later ones at its strength quiet. Every one forgets: a detector that never does is blinded
# for good by one burst, which no NAB file of a few thousand rows shows but a host would.
GRID = {
    "memory_hours": (168.0, 336.0),
    "event_half_life_hours": (12.0, 24.0, 48.0),
}
Scores = dict[str, list[float]]
LONG = "#long"  # suffix of a file's key when it is scored by the long-lived detector (run_detector_long)
SAMPLE_SECONDS = 30.0  # the autopilot's default monitor interval
METRICS_PER_HOST = len(AnalysisSettings().anomaly_metrics)
# The shipped threshold's budget: one false anomaly alert per metric per day. One per host per day is
# marked too; on this data it costs most of the detector's sensitivity (see AnalysisSettings).
ALERT_BUDGET_PER_METRIC_DAY = 1.0
BUDGET_CANDIDATES = THRESHOLD_STEPS  # 0.5 … 0.995
BUDGET_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.975, 0.98)


def design_name(config: AnomalyConfig) -> str:
    return ",".join(f"{k}={getattr(config, k):g}" for k in GRID)


def designs() -> list[AnomalyConfig]:
    keys = list(GRID)
    return [
        AnomalyConfig(**dict(zip(keys, combo, strict=True))) for combo in itertools.product(*GRID.values())
    ]


def long_copies(files: Sequence[NabFile]) -> list[NabFile]:
    """The same files under keys that name the long-lived detector's scores (same category)."""
    return [NabFile(f.key + LONG, f.timestamps, f.values, f.labels) for f in files]


def both_runs(config: AnomalyConfig, files: Sequence[NabFile]) -> dict[str, list[float]]:
    """Scores of a fresh detector per file, and (keys + LONG) of one detector per category."""
    factory = partial(AnomalyDetector, config)
    long, _, _ = run_detector_long(factory, files)
    return {**run_detector(factory, files)[0], **{k + LONG: v for k, v in long.items()}}


def design_scores(files: Sequence[NabFile]) -> dict[str, dict[str, list[float]]]:
    """Every design's scores, fresh and long-run (`both_runs`), by design name."""
    return {design_name(c): both_runs(c, files) for c in designs()}


def choose_at_budget(designs: Mapping[str, Scores], files: Sequence[NabFile]) -> Choice:
    """The product's rule: each design's threshold is the lowest that keeps its long-lived detector
    within the alert budget on `files`; the design is the one scoring best (fresh and long) there."""
    return choose(designs, files, threshold_rule=_budget_rule)


def _budget_rule(scores: Scores, files: Sequence[NabFile]) -> float:
    long = [f for f in files if f.key.endswith(LONG)] or files
    return budget_threshold(scores, long, BUDGET_CANDIDATES, ALERT_BUDGET_PER_METRIC_DAY, SAMPLE_SECONDS)


def print_cross_validation(
    files: Sequence[NabFile], scores: Mapping[str, Scores] | None = None
) -> AnomalyConfig:
    """Score every design as NAB does (a fresh detector per file) and as a host runs it (one detector
    through all of a category's files); choose design and threshold on both together by leaving one
    category out; print the folds. Returns the design chosen on all categories."""
    configs = {design_name(c): c for c in designs()}
    scores = scores if scores is not None else design_scores(files)
    corpus = [*files, *long_copies(files)]
    overall, folds = leave_one_category_out(scores, corpus)
    shipped = design_name(AnomalyConfig())
    print()
    print(
        f"Cross-validation: {len(configs)} designs ({', '.join(GRID)}), each scored fresh (NAB) and "
        "long-run; design and threshold chosen on both, leaving one category out (standard profile)"
    )
    print(f"  chosen on all categories: {overall.design} at {format_threshold(overall.threshold)}")
    note = "" if shipped == overall.design else "  <- differs from the choice: update AnomalyConfig"
    print(f"  shipped default:          {shipped}{note}")
    print(
        f"  {'category':<22} {'fresh in':>8} {'out':>6} {'gap':>6} {'long in':>8} {'out':>6} {'gap':>6}"
        "  chosen without it"
    )
    left_out_raw = {"fresh": 0.0, "long": 0.0}
    for fold in folds:
        cells = []
        for run, members in (
            ("fresh", _fresh(corpus, fold.category)),
            ("long", _long(corpus, fold.category)),
        ):
            inside = score_choice(overall, scores, members)
            outside = score_choice(fold.chosen_without, scores, members)
            left_out_raw[run] += outside.raw
            if fold.n_windows == 0:
                cells += ["n/a", f"FP {outside.fp}", ""]
                continue
            i, o = (normalised(t.raw, fold.n_windows // 2, STANDARD) for t in (inside, outside))
            cells += [f"{i:.1f}", f"{o:.1f}", f"{o - i:+.1f}"]
        chosen = f"{fold.chosen_without.design} at {format_threshold(fold.chosen_without.threshold)}"
        print(
            f"  {fold.category:<22} {cells[0]:>8} {cells[1]:>6} {cells[2]:>6} {cells[3]:>8} {cells[4]:>6} "
            f"{cells[5]:>6}  {chosen}"
        )
    n_windows = sum(len(f.labels.windows) for f in files)
    fresh, long = (normalised(left_out_raw[r], n_windows, STANDARD) for r in ("fresh", "long"))
    print(f"  all left-out scores together: fresh {fresh:.1f}, long {long:.1f} (what to expect on new data)")
    return configs[overall.design]


def print_held_out_halves(files: Sequence[NabFile], scores: Mapping[str, Scores]) -> None:
    """The harder test: design and threshold chosen on half of the categories (every such split), scored
    on each category of the other half, fresh and long-run; by NAB's best threshold and by the alert
    budget (the product's rule), with the held-out long run's false alerts per metric per day."""
    corpus = [*files, *long_copies(files)]
    splits = {
        rule: half_splits(scores, corpus, chooser)
        for rule, chooser in (("best", choose), ("budget", choose_at_budget))
    }
    print()
    print(
        f"Held-out halves: the design (of the {len(scores)} above) and its threshold chosen on half of the "
        f"categories ({len(splits['best'])} splits), scored on the others; per category the mean over the "
        "splits that held it out (standard profile). The rest of the design (the event layer, collapse, "
        "window, z_half) was chosen on all categories."
    )
    print(
        f"  {'category':<22} {'NAB-best: fresh':>15} {'long':>6} {'budget: fresh':>14} {'long':>6} "
        f"{'alerts/day':>10}"
    )
    n_windows = sum(len(f.labels.windows) for f in files)
    totals = [0.0] * 4
    for category in sorted({f.category for f in files}):
        windows = sum(len(f.labels.windows) for f in files if f.category == category)
        cells, rates = [], []
        for rule in ("best", "budget"):
            held = [s.chosen for s in splits[rule] if category not in s.training]
            for run, members in (("fresh", _fresh(corpus, category)), ("long", _long(corpus, category))):
                raw = sum(score_choice(c, scores, members).raw for c in held) / len(held)
                totals[len(cells)] += raw
                cells.append(f"{normalised(raw, windows, STANDARD):.1f}" if windows else "n/a")
                if rule == "budget" and run == "long":
                    rates = [
                        false_alarms_per_day(scores[c.design], members, c.threshold, SAMPLE_SECONDS)
                        for c in held
                    ]
        rate = sum(rates) / len(rates)
        print(f"  {category:<22} {cells[0]:>15} {cells[1]:>6} {cells[2]:>14} {cells[3]:>6} {rate:>10.2f}")
    row = [f"{normalised(t, n_windows, STANDARD):.1f}" for t in totals]
    print(f"  {'all held-out together':<22} {row[0]:>15} {row[1]:>6} {row[2]:>14} {row[3]:>6}")


def _fresh(corpus: Sequence[NabFile], category: str) -> list[NabFile]:
    return [f for f in corpus if f.category == category and not f.key.endswith(LONG)]


def _long(corpus: Sequence[NabFile], category: str) -> list[NabFile]:
    return [f for f in corpus if f.category == category and f.key.endswith(LONG)]


def fresh_and_long(config: AnomalyConfig, files: Sequence[NabFile]) -> tuple[Evaluation, Evaluation]:
    """A fresh detector per file (NAB), and one detector per category over all of its files."""
    factory = partial(AnomalyDetector, config)
    return evaluate(factory, files), evaluate(factory, files, long_run=True)


def print_long_run(
    config: AnomalyConfig, files: Sequence[NabFile], runs: tuple[Evaluation, Evaluation] | None = None
) -> None:
    """Fresh detector per file (NAB) beside one detector per category over all of its files (`runs`:
    `fresh_and_long`, when the caller has them already)."""
    fresh, long = runs or fresh_and_long(config, files)
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


def print_alert_budget(
    config: AnomalyConfig,
    files: Sequence[NabFile],
    shipped: float,
    runs: tuple[Evaluation, Evaluation] | None = None,
) -> None:
    """False alarms per day at the autopilot's sampling, for a range of thresholds and the shipped one,
    from the long-lived detector (as a host runs it), with the NAB scores at each threshold."""
    fresh, long = runs or fresh_and_long(config, files)
    thresholds = sorted({*BUDGET_THRESHOLDS, shipped})
    print()
    print(
        f"Alert budget ({design_name(config)}, long-lived detector): false anomaly alerts at "
        f"{SAMPLE_SECONDS:g} s sampling, {METRICS_PER_HOST} metrics per host (the default anomaly_metrics); "
        f"the shipped threshold is the lowest with at most {ALERT_BUDGET_PER_METRIC_DAY:g} per metric per "
        "day. Each NAB row counts as one 30 s sample, while the detector works in the rows' own hours "
        "(mostly 5 minutes): an estimate of a host's rate, not a measurement at 30 s"
    )
    print(f"  {'threshold':>9} {'per metric/day':>15} {'per host/day':>13} {'NAB fresh':>10} {'NAB long':>9}")
    fresh_rates = alert_rates(fresh.scores, files, thresholds, SAMPLE_SECONDS)
    long_rates = alert_rates(long.scores, files, thresholds, SAMPLE_SECONDS)
    for f_rate, rate in zip(fresh_rates, long_rates, strict=True):
        marks = []
        if rate.threshold == shipped:
            marks.append("shipped (anomaly_threshold)")
        if rate.per_day <= ALERT_BUDGET_PER_METRIC_DAY:
            marks.append("≤ 1/metric/day")
        if rate.per_day * METRICS_PER_HOST <= 1:
            marks.append("≤ 1/host/day")
        print(
            f"  {format_threshold(rate.threshold):>9} {rate.per_day:>15.3f} "
            f"{rate.per_day * METRICS_PER_HOST:>13.2f} {f_rate.nab_score:>10.1f} {rate.nab_score:>9.1f}  "
            f"{'; '.join(marks)}"
        )
    chosen = budget_threshold(
        long.scores, files, BUDGET_CANDIDATES, ALERT_BUDGET_PER_METRIC_DAY, SAMPLE_SECONDS
    )
    note = "" if chosen == shipped else "  <- differs from the shipped one: update AnalysisSettings"
    print(f"  the budget rule chooses {format_threshold(chosen)} (steps of 0.005){note}")
    at = {
        run: alert_rates(ev.scores, files, [shipped], SAMPLE_SECONDS)[0]
        for run, ev in (("fresh", fresh), ("long", long))
    }
    best_fresh, best_long = (ev.profiles[STANDARD.name].score for ev in (fresh, long))
    print(
        f"  operating point: NAB at the shipped {format_threshold(shipped)}: fresh "
        f"{at['fresh'].nab_score:.1f} (at its best threshold {best_fresh:.1f}), long-lived "
        f"{at['long'].nab_score:.1f} (best {best_long:.1f}); {at['long'].per_day:.2f} false alerts per "
        f"metric per day; {fresh.us_per_update:.1f} µs per value; state ≤ {long.state_bytes} B per metric"
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
