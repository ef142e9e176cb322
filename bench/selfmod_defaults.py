"""Each evolvable agent's shipped defaults, re-chosen on the self-modification search part alone (issue 30,
item 5).

    .venv/bin/python -m bench.selfmod_defaults [--agents anomaly-detector,relevance-scorer]
                                               [--data DIR] [--windows FILE] [--look-at-decision]

The judge splits each agent's data into a search part and a decision part (activities/selfmod/evaluation.py).
The shipped defaults were chosen on all of the data, decision part included, so "unseen" was partly seen.
Here the same choices are made again on the search part only, and printed beside the shipped values:

- anomaly detector: bench/nab_tables.py's procedure, restricted to the search files (`split_nab`): every
  design of its GRID scored fresh and long-lived, the design with the best NAB standard score over both
  (`crossval.choose`, what `make bench-nab` compares with AnomalyConfig), then its threshold by the alert
  budget on its long-lived run (`budget_threshold`, what chose AnalysisSettings.anomaly_threshold). Beside
  it, the budget rule for design and threshold together (`choose_at_budget`). The parameters outside the
  GRID (window, levels, z_half, collapse) are not re-chosen: no reproducible procedure chose them.
- relevance scorer: the scorer's defaults were set by eye on tests/test_relevance.py's items, before the
  labelled examples existed (git: f8c4746, then 61769a8); here a small grid (`RELEVANCE_GRID`) is searched
  on the odd examples for the judge's metric (accuracy at > 0.5). `steepness` is left out: at the 0.5 cut a
  score is above ½ exactly when its matches exceed `half`, whatever the steepness, so the metric cannot
  choose it. Ties go to the configuration that changes fewest shipped values (then grid order).

--look-at-decision adds one look at the decision part (the choice beside the shipped defaults, by the
judge's own scoring): each look spends some of that part's unseenness, so it is off by default.
A benchmark, not a test: the exit code is 0 unless data is missing.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.models.offline_variants import Example, examples
from activities.selfmod.evaluation import PARTS, Dataset, Part, load_dataset, nab_paths, split_nab
from autarky.autopilot.detectors.anomaly import AnomalyConfig, AnomalyDetector
from autarky.autopilot.settings import AnalysisSettings
from autarky.evaluation.alert_budget import alert_rates, budget_threshold
from autarky.evaluation.crossval import Choice, choose
from autarky.evaluation.nab_data import NabFile, load_corpus
from autarky.evaluation.nab_scoring import STANDARD, normalised
from autarky.research.relevance import DEFAULT_INTERESTS, RelevanceParams, RelevanceScorer
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER
from autarky.selfmod.harness import run_anomaly
from autarky.selfmod.settings import EvolutionSettings
from bench.nab import run_detector, run_detector_long
from bench.nab_tables import (
    ALERT_BUDGET_PER_METRIC_DAY,
    BUDGET_CANDIDATES,
    GRID,
    SAMPLE_SECONDS,
    choose_at_budget,
    design_name,
    design_scores,
    designs,
    long_copies,
)

# Around the shipped values (2, 2, 0.5, 2.7), each parameter's plausible range: 384 configurations.
RELEVANCE_GRID: dict[str, tuple[float, ...]] = {
    "core_weight": (1, 2, 3, 4),
    "title_weight": (1.0, 1.5, 2.0, 3.0),
    "k3": (0.25, 0.5, 1.0, 2.0),
    "half": (1.5, 2.0, 2.3, 2.7, 3.0, 3.5),
}


@dataclass(frozen=True)
class DetectorChoice:
    config: AnomalyConfig  # the shipped AnomalyConfig with the chosen GRID values
    threshold: float  # the alert budget's, for the chosen design's long-lived run
    by_nab: Choice  # crossval.choose on fresh + long-lived search runs (threshold: NAB's best)
    by_budget: Choice  # choose_at_budget: design and threshold by the alert budget
    scores: Mapping[str, float]  # per design: normalised NAB standard at its best threshold, fresh + long
    files: tuple[str, ...]  # the search files the choice read

    @property
    def design(self) -> str:
        return self.by_nab.design


def search_files(files: Sequence[NabFile]) -> list[NabFile]:
    """The files the judge lends the search (`split_nab`); nothing else may reach the choice."""
    return split_nab(list(files))["search"]


def choose_detector(files: Sequence[NabFile]) -> DetectorChoice:
    """bench/nab_tables.py's choice of the detector's design and threshold, made on the search part of
    `files` alone (the decision part is dropped before any detector runs)."""
    search = search_files(files)
    scores = design_scores(search)
    corpus = [*search, *long_copies(search)]
    by_nab = choose(scores, corpus)
    threshold = budget_threshold(
        scores[by_nab.design],
        long_copies(search),
        BUDGET_CANDIDATES,
        ALERT_BUDGET_PER_METRIC_DAY,
        SAMPLE_SECONDS,
    )
    n_windows = sum(len(f.labels.windows) for f in corpus)
    per_design = {
        name: normalised(choose({name: s}, corpus).raw, n_windows, STANDARD) if n_windows else math.nan
        for name, s in scores.items()
    }
    chosen = {design_name(c): c for c in designs()}[by_nab.design]
    return DetectorChoice(
        config=chosen,
        threshold=threshold,
        by_nab=by_nab,
        by_budget=choose_at_budget(scores, corpus),
        scores=per_design,
        files=tuple(f.key for f in search),
    )


@dataclass(frozen=True)
class DetectorLook:
    """One configuration on the decision part: NAB standard at a fixed threshold (fresh and long-lived, as
    bench/nab.py runs them on the files' own timestamps), false alerts per metric per day there
    (long-lived), and the judge's figure: the harness's long-lived run scored by `Dataset.score` (at the
    budget threshold the judge chooses on the part itself)."""

    threshold: float
    fresh: float
    long: float
    per_day: float
    judge: float


def look_detector(
    config: AnomalyConfig, threshold: float, files: Sequence[NabFile], judged: Dataset
) -> DetectorLook:
    """`judged`: the judge's decision part of the same files (`load_dataset`)."""
    decision = split_nab(list(files))["decision"]
    factory = partial(AnomalyDetector, config)
    fresh = run_detector(factory, decision)[0]
    long = run_detector_long(factory, decision)[0]
    at_fresh = alert_rates(fresh, decision, [threshold], SAMPLE_SECONDS)[0]
    at_long = alert_rates(long, decision, [threshold], SAMPLE_SECONDS)[0]
    judge = judged.score(run_anomaly(config.model_dump(), judged.inputs)).metric
    return DetectorLook(threshold, at_fresh.nab_score, at_long.nab_score, at_long.per_day, judge)


@dataclass(frozen=True)
class RelevanceChoice:
    params: RelevanceParams
    accuracy: float  # % on the search examples
    shipped_accuracy: float  # the shipped defaults' % there
    ties: int  # configurations with the same best accuracy
    configurations: int
    examples: tuple[str, ...]  # the ids of the examples the choice read


def part_examples(items: Sequence[Example], part: Part) -> list[Example]:
    """The judge's split of the labelled examples: in file order they alternate, search first."""
    return [e for i, e in enumerate(items) if PARTS[i % 2] == part]


def relevance_accuracy(params: RelevanceParams, items: Sequence[Example], part: Part = "search") -> float:
    """The judge's metric (`Dataset.score`: accuracy in %, relevant when the score is above 0.5)."""
    scorer = RelevanceScorer(DEFAULT_INTERESTS, params)
    scores = {e.id: scorer.score(e.title, e.abstract).score for e in items}
    dataset = _part(RELEVANCE_SCORER.name, part, {e.id: e.relevant for e in items})
    return dataset.score({"scores": scores}).metric


def choose_relevance(
    items: Sequence[Example], grid: Mapping[str, Sequence[float]] = RELEVANCE_GRID
) -> RelevanceChoice:
    """The grid's best accuracy on the search examples of `items` (the decision ones are dropped first);
    ties to the configuration changing fewest shipped values, then grid order."""
    search = part_examples(items, "search")
    shipped = RelevanceParams()
    best: tuple[float, int, RelevanceParams] | None = None
    ties = 0
    combos = list(itertools.product(*grid.values()))
    for combo in combos:
        params = RelevanceParams(**dict(zip(grid, combo, strict=True)))
        accuracy = relevance_accuracy(params, search)
        changed = sum(getattr(params, k) != getattr(shipped, k) for k in grid)
        if best is None or accuracy > best[0] + 1e-9:
            best, ties = (accuracy, changed, params), 1
        elif abs(accuracy - best[0]) <= 1e-9:
            ties += 1
            if changed < best[1]:
                best = (accuracy, changed, params)
    if best is None:
        raise ValueError("an empty grid")
    return RelevanceChoice(
        params=best[2],
        accuracy=best[0],
        shipped_accuracy=relevance_accuracy(shipped, search),
        ties=ties,
        configurations=len(combos),
        examples=tuple(e.id for e in search),
    )


def _part(agent: str, part: Part, labels: dict[str, object]) -> Dataset:
    """A part with its labels only: enough for the judge's `score`."""
    return Dataset(agent, part, {}, labels, list(labels))


def report_detector(files: Sequence[NabFile], look: bool, settings: EvolutionSettings) -> None:
    chosen = choose_detector(files)
    shipped, shipped_threshold = AnomalyConfig(), AnalysisSettings().anomaly_threshold
    search = set(chosen.files)
    windows = sum(len(f.labels.windows) for f in files if f.key in search)
    print(
        f"anomaly-detector: re-chosen on the search part ({len(search)} of {len(files)} files, {windows} "
        f"windows), bench/nab_tables.py's GRID ({', '.join(GRID)}) and rules"
    )
    print("  design (NAB standard at its best threshold, fresh + long-lived runs of the search files):")
    for name, score in sorted(chosen.scores.items(), key=lambda kv: -kv[1]):
        marks = [
            m
            for m, on in (("chosen", name == chosen.design), ("shipped", name == design_name(shipped)))
            if on
        ]
        print(f"    {name:<45} {score:6.1f}  {', '.join(marks)}".rstrip())
    same_design, same_threshold = chosen.design == design_name(shipped), chosen.threshold == shipped_threshold
    print(f"  search-part choice: {chosen.design} at {chosen.threshold:g} (alert budget, long-lived)")
    print(f"  shipped:            {design_name(shipped)} at {shipped_threshold:g}")
    print(
        f"  agree: {'yes' if same_design and same_threshold else 'NO'} (design "
        f"{'yes' if same_design else 'NO'}, threshold {'yes' if same_threshold else 'NO'})"
    )
    budget = chosen.by_budget
    print(
        f"  (the budget rule for design and threshold together would take {budget.design} at "
        f"{budget.threshold:g})"
    )
    if not look:
        return
    print(
        "  decision part, one look: NAB standard at the threshold (bench/nab.py's runs); judge: the "
        "harness's long-lived run at the budget threshold of the part itself (Dataset.score)"
    )
    judged = load_dataset(ANOMALY_DETECTOR.name, "decision", settings)
    print(f"    {'':<14} {'threshold':>9} {'fresh':>6} {'long':>6} {'alerts/metric/day':>17} {'judge':>6}")
    rows = [("shipped", shipped, shipped_threshold), ("search choice", chosen.config, chosen.threshold)]
    for label, config, threshold in rows:
        r = look_detector(config, threshold, files, judged)
        print(
            f"    {label:<14} {r.threshold:>9g} {r.fresh:>6.1f} {r.long:>6.1f} {r.per_day:>17.2f} "
            f"{r.judge:>6.1f}"
        )


def report_relevance(look: bool) -> None:
    items = examples()
    chosen = choose_relevance(items)
    shipped = RelevanceParams()
    keys = list(RELEVANCE_GRID)
    print(
        f"relevance-scorer: re-chosen on the search part ({len(chosen.examples)} of {len(items)} labelled "
        f"examples), {chosen.configurations} configurations of {', '.join(keys)}"
    )
    print(
        f"  search-part choice: {_params(chosen.params, keys)}: {chosen.accuracy:.1f} % ({chosen.ties} tied)"
    )
    print(f"  shipped:            {_params(shipped, keys)}: {chosen.shipped_accuracy:.1f} %")
    print(f"  agree: {'yes' if chosen.params == shipped else 'NO'}")
    if look:
        decision = part_examples(items, "decision")
        print(
            f"  decision part, one look ({len(decision)} examples): shipped "
            f"{relevance_accuracy(shipped, decision, 'decision'):.1f} %, search choice "
            f"{relevance_accuracy(chosen.params, decision, 'decision'):.1f} %"
        )


def _params(params: RelevanceParams, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={getattr(params, k):g}" for k in keys)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=f"{ANOMALY_DETECTOR.name},{RELEVANCE_SCORER.name}")
    parser.add_argument("--data", type=Path, help="NAB-format CSVs (default: the evolution's, nab_paths)")
    parser.add_argument("--windows", type=Path, help="windows JSON (default: combined_windows.json by DIR)")
    parser.add_argument("--look-at-decision", action="store_true", help="one look at the decision part")
    args = parser.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = [a for a in agents if a not in (ANOMALY_DETECTOR.name, RELEVANCE_SCORER.name)]
    if unknown:
        print(f"unknown agent(s) {unknown}", file=sys.stderr)
        return 2
    if RELEVANCE_SCORER.name in agents:
        report_relevance(args.look_at_decision)
    if ANOMALY_DETECTOR.name in agents:
        settings = EvolutionSettings(nab_data_dir=args.data, nab_windows_file=args.windows)
        try:
            data, windows = nab_paths(settings)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        report_detector(load_corpus(data, windows), args.look_at_decision, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
