"""Leave-one-category-out cross-validation of detector designs on NAB-format data (pure code).

A design (a detector configuration) and its threshold are chosen together on every category but one and
then scored on the one left out, which took no part in the choice. Beside it stands the in-sample figure:
the design and threshold chosen on all categories, scored on the same category. A left-out figure far
below its in-sample one means the choice fitted that category rather than anomalies in general.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autarky.evaluation.nab_data import NabFile
from autarky.evaluation.nab_scoring import (
    STANDARD,
    FileScore,
    Profile,
    best_threshold,
    normalised,
    score_file,
)

Scores = Mapping[str, Sequence[float]]  # file key -> one score per row


@dataclass(frozen=True)
class Choice:
    design: str
    threshold: float
    raw: float  # summed over the files it was chosen on


@dataclass(frozen=True)
class Fold:
    category: str
    n_windows: int
    chosen_without: Choice  # chosen on the other categories
    left_out: FileScore  # that choice, scored on this category
    in_sample: FileScore  # the choice made on all categories, scored on this category

    def figure(self, total: FileScore, profile: Profile = STANDARD) -> float | None:
        """Normalised with the category's own null and perfect detectors; None without windows."""
        return normalised(total.raw, self.n_windows, profile) if self.n_windows else None


ThresholdRule = Callable[[Scores, Sequence[NabFile]], float]


def choose(
    designs: Mapping[str, Scores],
    files: Sequence[NabFile],
    profile: Profile = STANDARD,
    threshold_rule: ThresholdRule | None = None,
) -> Choice:
    """The design and threshold with the best summed raw score on `files` (ties: the first design). Each
    design's threshold is its best on `files`, or the one `threshold_rule` sets (e.g. the alert budget)."""
    best: Choice | None = None
    for name, scores in designs.items():
        if threshold_rule is None:
            threshold, raw = best_threshold([(f.labels, scores[f.key]) for f in files], profile)
        else:
            threshold = threshold_rule(scores, files)
            raw = sum(score_file(f.labels, scores[f.key], threshold, profile).raw for f in files)
        if best is None or raw > best.raw:
            best = Choice(name, threshold, raw)
    if best is None:
        raise ValueError("no designs to choose from")
    return best


def score_choice(
    choice: Choice, designs: Mapping[str, Scores], files: Sequence[NabFile], profile: Profile = STANDARD
) -> FileScore:
    total = FileScore(0.0, 0, 0, 0)
    for f in files:
        total += score_file(f.labels, designs[choice.design][f.key], choice.threshold, profile)
    return total


def leave_one_category_out(
    designs: Mapping[str, Scores], files: Sequence[NabFile], profile: Profile = STANDARD
) -> tuple[Choice, list[Fold]]:
    """The choice on all files, and one fold per category (sorted by name)."""
    overall = choose(designs, files, profile)
    folds = []
    for category in sorted({f.category for f in files}):
        inside = [f for f in files if f.category == category]
        others = [f for f in files if f.category != category]
        if not others:
            raise ValueError("cross-validation needs at least two categories")
        chosen = choose(designs, others, profile)
        folds.append(
            Fold(
                category=category,
                n_windows=sum(len(f.labels.windows) for f in inside),
                chosen_without=chosen,
                left_out=score_choice(chosen, designs, inside, profile),
                in_sample=score_choice(overall, designs, inside, profile),
            )
        )
    return overall, folds


def cross_validated(folds: Sequence[Fold], profile: Profile = STANDARD) -> float:
    """All left-out scores together, normalised over every window: the figure to expect on new data."""
    raw = sum(f.left_out.raw for f in folds)
    return normalised(raw, sum(f.n_windows for f in folds), profile)


Chooser = Callable[[Mapping[str, Scores], Sequence[NabFile]], Choice]


@dataclass(frozen=True)
class Split:
    training: tuple[str, ...]  # the categories the choice was made on
    chosen: Choice


def half_splits(
    designs: Mapping[str, Scores], files: Sequence[NabFile], chooser: Chooser = choose
) -> list[Split]:
    """The harder test's choices: everything (design and threshold, by `chooser`) chosen on half of the
    categories, for every such half."""
    categories = sorted({f.category for f in files})
    if len(categories) < 2:
        raise ValueError("cross-validation needs at least two categories")
    return [
        Split(training, chooser(designs, [f for f in files if f.category in training]))
        for training in itertools.combinations(categories, len(categories) // 2)
    ]


def held_out_halves(
    designs: Mapping[str, Scores],
    files: Sequence[NabFile],
    chooser: Chooser = choose,
    profile: Profile = STANDARD,
) -> dict[str, list[FileScore]]:
    """Per category, its scores under each half-split choice made without it (`half_splits`)."""
    held_out: dict[str, list[FileScore]] = {c: [] for c in sorted({f.category for f in files})}
    for split in half_splits(designs, files, chooser):
        for category, scores in held_out.items():
            if category not in split.training:
                inside = [f for f in files if f.category == category]
                scores.append(score_choice(split.chosen, designs, inside, profile))
    return held_out
