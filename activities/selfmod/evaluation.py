"""The judge: data parts without labels for the sandbox, and the scoring of a candidate's outputs with the
labels, outside the sandbox.

Each agent's data is split once, by a fixed rule recorded in its spec, into the part the search sees
(`search`) and the part that decides promotion (`decision`). A candidate's code only ever receives the
inputs of a part (values, texts), read-only; the labels stay here. A part's score is a sum of per-unit
contributions (one per data file, one per labelled example), so a paired bootstrap over units can say
how sure an improvement is. The anomaly detector is judged as the product runs it: one long-lived
detector per category, at the threshold the alert budget chooses (`_score_nab`).

A candidate's outputs are read only up to what its inputs need (`Dataset.output_budget`: bytes per score
plus each unit's key, and a small constant), checked on the opened file before a byte is parsed: a huge
outputs file fails the candidate instead of filling the worker's memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from autarky.evaluation.alert_budget import budget_threshold
from autarky.evaluation.nab_data import NabFile, load_corpus
from autarky.evaluation.nab_scoring import STANDARD, null_and_perfect, score_file
from autarky.selfmod import genesis
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER
from autarky.selfmod.settings import EvolutionSettings

Part = Literal["search", "decision"]
PARTS: tuple[Part, ...] = ("search", "decision")
DEV_SET = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
RELEVANCE_THRESHOLD = 0.5  # as the offline model slot judges an example (offline_variants.THRESHOLD)
# What one score may take in the outputs' JSON: the longest float ("-2.2250738585072014e-308") and ", ".
BYTES_PER_SCORE = 32
BYTES_PER_UNIT = 8  # around each unit's key: quotes are in json.dumps(key); ": ", "[]", ", "
BYTES_OUTPUTS = 1024  # {"scores": {}} and room


class BadOutputs(ValueError):
    """A candidate's outputs do not fit its inputs: it fails, as a candidate failing a test does."""


@dataclass(frozen=True)
class PartScore:
    metric: float
    units: dict[str, float]  # sums to `metric`


@dataclass(frozen=True)
class Dataset:
    """One part of an agent's data: the inputs lent to the sandbox and the labels kept back."""

    agent: str
    part: Part
    inputs: dict[str, Any]
    labels: Any
    units: list[str]
    label_files: tuple[Path, ...] = ()  # where the labels are read from: masked in the sandbox

    def digest(self) -> str:
        """Names the inputs by their content: other data (a user's NAB files) never meets stale inputs."""
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode()).hexdigest()[:12]

    def version(self) -> str:
        """Names the part's inputs and labels together: new labelled data is a new version, whose decision
        part has not been looked at (activities/selfmod/decision_looks.py)."""
        both = json.dumps({"inputs": self.inputs, "labels": self.labels}, sort_keys=True, default=str)
        return hashlib.sha256(both.encode()).hexdigest()[:16]

    def write_inputs(self, directory: Path) -> Path:
        """inputs.json in `directory`, written once (atomically), readable by the sandbox's user."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "inputs.json"
        if not path.exists():
            with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as tmp:
                json.dump(self.inputs, tmp)
            os.replace(tmp.name, path)
        path.chmod(0o644)
        directory.chmod(0o755)
        return path

    def output_budget(self) -> tuple[int, int]:
        """(the most bytes honest outputs of these inputs take, how many scores they hold)."""
        if "files" in self.inputs:
            scores = sum(len(values) for values in self.inputs["files"].values())
        else:
            scores = len(self.units)
        keys = sum(len(json.dumps(unit)) + BYTES_PER_UNIT for unit in self.units)
        return BYTES_OUTPUTS + keys + BYTES_PER_SCORE * scores, scores

    def read_outputs(self, path: Path) -> dict[str, Any]:
        """The outputs a run wrote at `path`, parsed only when their size fits the inputs; BadOutputs
        otherwise (a symlink, a FIFO, too large, not JSON)."""
        budget, scores = self.output_budget()
        raw = read_own_file(path, budget, f" for {scores} inputs")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise BadOutputs(f"{path.name} is not JSON: {str(e)[:200]}") from e

    def score(self, outputs: dict[str, Any]) -> PartScore:
        if self.agent == ANOMALY_DETECTOR.name:
            return _score_nab(self.labels, outputs)
        return _score_relevance(self.labels, outputs)


def read_own_file(
    path: Path, max_bytes: int, what_for: str = "", error: type[Exception] = BadOutputs
) -> bytes:
    """A file a sandboxed run wrote: a regular file (not a symlink to the host, not a FIFO that would
    block the worker), of at most `max_bytes`, checked on the opened file and read no further than that.
    FileNotFoundError when it is not there; `error` (the caller's own) for the rest."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink
        raise error(f"{path.name} cannot be opened: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{path.name} is {info.st_size} bytes; at most {max_bytes}{what_for}")
        data = f.read(max_bytes + 1)  # a file still growing (a process left behind) stops here
    if len(data) > max_bytes:
        raise error(f"{path.name} is more than {max_bytes} bytes{what_for}")
    return data


def nab_paths(settings: EvolutionSettings) -> tuple[Path, Path]:
    data = settings.nab_data_dir or DEV_SET / "data"
    windows = settings.nab_windows_file or (data.parent / "combined_windows.json")
    if not data.is_dir() or not windows.is_file():
        raise FileNotFoundError(
            f"no NAB-format data for the anomaly detector at {data} (windows {windows}): set "
            "AUTARKY_EVOLUTION__NAB_DATA_DIR and AUTARKY_EVOLUTION__NAB_WINDOWS_FILE"
        )
    return data, windows


def split_nab(files: list[NabFile]) -> dict[Part, list[NabFile]]:
    """Within each category, files sorted by name alternate: search, decision, search, …"""
    by_category: dict[str, list[NabFile]] = defaultdict(list)
    for f in files:
        by_category[f.category].append(f)
    parts: dict[Part, list[NabFile]] = {"search": [], "decision": []}
    for category in sorted(by_category):
        for i, f in enumerate(sorted(by_category[category], key=lambda f: f.key)):
            parts[PARTS[i % 2]].append(f)
    return parts


def median_gap_seconds(f: NabFile) -> float:
    gaps = [(b - a).total_seconds() for a, b in zip(f.timestamps, f.timestamps[1:], strict=False)]
    return statistics.median(gaps) if gaps else 300.0


def load_dataset(agent: str, part: Part, settings: EvolutionSettings) -> Dataset:
    if agent == ANOMALY_DETECTOR.name:
        data, windows = nab_paths(settings)
        files = split_nab(load_corpus(data, windows))[part]
        return Dataset(
            agent,
            part,
            # Times as the product's detector sees them (its memory and warm-up are in hours).
            {
                "files": {f.key: f.values for f in files},
                "interval_seconds": {f.key: median_gap_seconds(f) for f in files},
                "long_run": True,  # judged as the product runs it (`_score_nab`)
            },
            {f.key: f.labels for f in files},
            [f.key for f in files],
            (windows,),
        )
    if agent == RELEVANCE_SCORER.name:
        from activities.models.offline_variants import LABELS_FILE, examples

        chosen = [e for i, e in enumerate(examples()) if PARTS[i % 2] == part]
        return Dataset(
            agent,
            part,
            {"examples": [{"id": e.id, "title": e.title, "abstract": e.abstract} for e in chosen]},
            {e.id: e.relevant for e in chosen},
            [e.id for e in chosen],
            (LABELS_FILE,),
        )
    made = genesis.registry.get(agent)
    if made is not None:
        return generated_dataset(made, part)
    raise ValueError(f"no data for agent {agent!r}")


@dataclass(frozen=True)
class SeriesDataset(Dataset):
    """A part of an agent made by genesis (autarky/selfmod/genesis.py): its labelled series' blocks, judged
    by balanced accuracy of score > 0.5, one unit per block."""

    def score(self, outputs: dict[str, Any]) -> PartScore:
        scores = _outputs_for(self.labels, outputs)
        for key, labels in self.labels.items():
            row = scores[key]
            if not isinstance(row, list) or len(row) != len(labels):
                raise BadOutputs(f"{key}: expected {len(labels)} scores")
            if not all(isinstance(s, int | float) and 0.0 <= s <= 1.0 for s in row):
                raise BadOutputs(f"{key}: a score is not a number in [0, 1]")
        units = genesis.balanced_accuracy_units(self.labels, scores)
        return PartScore(sum(units.values()), units)


def generated_dataset(agent: genesis.GeneratedAgent, part: Part) -> SeriesDataset:
    """The labels stay in the knowledge base's registration (or the genesis run): no file to hide."""
    blocks = genesis.split_blocks(agent.data, agent.blocks)[part]
    return SeriesDataset(
        agent.spec.name,
        part,
        {"files": {key: values for key, (values, _) in blocks.items()}},
        {key: labels for key, (_, labels) in blocks.items()},
        sorted(blocks),
    )


def _score_nab(labels: dict[str, Any], outputs: dict[str, Any]) -> PartScore:
    """NAB at the product's operating point: the scores come from a long-lived detector per category (the
    harness's `long_run`), and the threshold is the one the product's rule would ship for them, the lowest
    with at most one false alert per metric per day (`budget_threshold`), not NAB's best in hindsight:
    designs rank differently there (issue 30)."""
    scores = _outputs_for(labels, outputs)
    for key, lab in labels.items():
        row_scores = scores[key]
        if not isinstance(row_scores, list) or len(row_scores) != lab.n_rows:
            raise BadOutputs(f"{key}: expected {lab.n_rows} scores")
        if not all(isinstance(s, int | float) and 0.0 <= s <= 1.0 for s in row_scores):
            raise BadOutputs(f"{key}: a score is not a number in [0, 1]")
    threshold = budget_threshold(scores, [NabFile(key, [], [], lab) for key, lab in labels.items()])
    n_windows = sum(len(lab.windows) for lab in labels.values())
    null_total, perfect_total = null_and_perfect(n_windows, STANDARD)
    units = {}
    for key, lab in labels.items():
        null_f = null_and_perfect(len(lab.windows), STANDARD)[0]
        # An infinite threshold: none keeps to the budget, and every file scores as the null detector.
        raw = score_file(lab, scores[key], threshold, STANDARD).raw if math.isfinite(threshold) else null_f
        units[key] = 100.0 * (raw - null_f) / (perfect_total - null_total)
    return PartScore(sum(units.values()), units)


def _score_relevance(labels: dict[str, bool], outputs: dict[str, Any]) -> PartScore:
    scores = _outputs_for(labels, outputs)
    n = len(labels)
    units = {}
    for key, relevant in labels.items():
        s = scores[key]
        if not isinstance(s, int | float) or not 0.0 <= s <= 1.0:
            raise BadOutputs(f"{key}: the score is not a number in [0, 1]")
        units[key] = 100.0 / n if (s > RELEVANCE_THRESHOLD) == relevant else 0.0
    return PartScore(sum(units.values()), units)


def _outputs_for(labels: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    scores = outputs.get("scores") if isinstance(outputs, dict) else None
    if not isinstance(scores, dict):
        raise BadOutputs("the outputs have no 'scores' object")
    missing = [k for k in labels if k not in scores]
    if missing:
        raise BadOutputs(f"no scores for {len(missing)} inputs, e.g. {missing[0]}")
    return scores
