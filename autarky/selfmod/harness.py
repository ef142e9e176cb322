"""The harness a candidate runs under in its sandbox: `check` (a quick self-test with the candidate's
parameters), `run` (score the inputs of one data part, write the raw outputs) and `score` (an evolved
version at work: score the items the research analyser gives it, activities/research/sandboxed_scorer.py).

It never sees labels: the worker strips them before lending the data, and judges the outputs outside the
sandbox (activities/selfmod/evaluation.py). A candidate that tampers with this harness can only change
its own outputs, which are then judged like any others.

    python -m autarky.selfmod.harness check AGENT --params params.json
    python -m autarky.selfmod.harness run AGENT --params params.json --data inputs.json --out outputs.json
    python -m autarky.selfmod.harness score AGENT --params params.json --data items.json --out scores.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER, anomaly_config, relevance_params

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # the values' times: only the gaps between them matter


def check_anomaly(parameters: dict[str, float]) -> None:
    from autarky.autopilot.detectors.anomaly import AnomalyDetector, AnomalyState

    config = anomaly_config(parameters)
    rng = random.Random(7)
    values = [50 + rng.gauss(0, 1) for _ in range(config.min_history + 300)]
    detector = AnomalyDetector(config)
    scores = [detector.update(v) for v in values]
    resumed = AnomalyDetector(config, AnomalyState.model_validate_json(detector.state.model_dump_json()))
    spike = [detector.update(95.0), resumed.update(95.0)]
    _require(all(0.0 <= s <= 1.0 and math.isfinite(s) for s in scores), "a score left [0, 1]")
    _require(spike[0] == spike[1], "the state does not round-trip through JSON")
    _require(spike[0] > max(scores[-50:]), "a spike of 45 σ does not score above plain noise")


def check_relevance(parameters: dict[str, float]) -> None:
    from autarky.research.relevance import RelevanceScorer

    scorer = RelevanceScorer(params=relevance_params(parameters))
    on_topic = scorer.score("Speculative decoding for faster large language model inference", "")
    off_topic = scorer.score("A history of medieval pottery glazes", "")
    _require(0.0 <= off_topic.score <= on_topic.score <= 1.0, "scores out of order or out of [0, 1]")


def run_anomaly(parameters: dict[str, float], inputs: dict) -> dict:
    """Each file's values streamed one at a time through the detector, as the product feeds it. With
    `long_run`, as a host's detector lives: one detector per category (the key's directory) through all
    of its files in key order, its clock running on from file to file; else a fresh one per file."""
    from autarky.autopilot.detectors.anomaly import DEFAULT_INTERVAL, AnomalyDetector

    config = anomaly_config(parameters)
    intervals = inputs.get("interval_seconds", {})
    long_run = bool(inputs.get("long_run"))
    detectors: dict[str, AnomalyDetector] = {}
    clocks: dict[str, datetime] = {}
    outputs = {}
    for key in sorted(inputs["files"]) if long_run else inputs["files"]:
        values = inputs["files"][key]
        category = key.rsplit("/", 1)[0] if long_run else key
        if category not in detectors:
            detectors[category] = AnomalyDetector(config)
        detector = detectors[category]
        step = timedelta(seconds=intervals.get(key, DEFAULT_INTERVAL))
        start = clocks.get(category, EPOCH)
        outputs[key] = [round(detector.update(v, start + i * step), 5) for i, v in enumerate(values)]
        clocks[category] = start + len(values) * step
    return {"scores": outputs}


def run_relevance(parameters: dict[str, float], inputs: dict) -> dict:
    from autarky.research.relevance import RelevanceScorer

    scorer = RelevanceScorer(params=relevance_params(parameters))
    return {"scores": {e["id"]: scorer.score(e["title"], e["abstract"]).score for e in inputs["examples"]}}


def score_relevance(parameters: dict[str, float], inputs: dict) -> dict:
    """{"interests": [...], "items": [{"title", "abstract"}]} → one analysis per item, in order."""
    from autarky.research.relevance import RelevanceScorer

    scorer = RelevanceScorer(inputs["interests"], relevance_params(parameters))
    results = []
    for item in inputs["items"]:
        r = scorer.score(item["title"], item["abstract"])
        fields = {"interest": r.interest, "matched_terms": r.matched_terms, "rationale": r.rationale}
        results.append({"score": r.score, **fields, "tags": r.tags})
    return {"results": results}


class _WithGenerated(dict[str, Callable[..., Any]]):
    """The declared agents' functions; an agent made by genesis offers its own, by name, in its module
    (autarky/selfmod/generated/<name>.py, from its version in the work directory)."""

    def __init__(self, declared: dict[str, Callable[..., Any]], function: str) -> None:
        super().__init__(declared)
        self.function = function

    def __missing__(self, agent: str) -> Callable[..., Any]:
        from importlib import import_module

        if not agent.replace("-", "").isalnum():
            raise KeyError(agent)
        try:
            module = import_module(f"autarky.selfmod.generated.{agent.replace('-', '_')}")
        except ModuleNotFoundError:
            raise KeyError(agent) from None
        return getattr(module, self.function)


CHECKS = _WithGenerated(
    {ANOMALY_DETECTOR.name: check_anomaly, RELEVANCE_SCORER.name: check_relevance}, "check"
)
RUNS = _WithGenerated({ANOMALY_DETECTOR.name: run_anomaly, RELEVANCE_SCORER.name: run_relevance}, "run")
SCORES = {RELEVANCE_SCORER.name: score_relevance}


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise SystemExit(f"self-test failed: {problem}")


def _offered(agent: str, table: dict[str, Callable[..., Any]] = CHECKS) -> bool:
    try:
        table[agent]
    except KeyError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autarky.selfmod.harness")
    parser.add_argument("command", choices=["check", "run", "score"])
    parser.add_argument("agent")  # a declared agent, or one made by genesis (CHECKS finds its module)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    parameters = json.loads(args.params.read_text())
    if args.command != "score" and not _offered(args.agent):
        parser.error(f"no agent {args.agent!r} here (declared: {', '.join(sorted(CHECKS))})")
    if args.command == "check":
        CHECKS[args.agent](parameters)
        print(f"self-test of {args.agent} passed")
        return 0
    if args.data is None or args.out is None:
        parser.error(f"{args.command} needs --data and --out")
    table = RUNS if args.command == "run" else SCORES
    if not _offered(args.agent, table):
        parser.error(f"{args.command} is not offered for {args.agent} (only {', '.join(sorted(table))})")
    outputs = table[args.agent](parameters, json.loads(args.data.read_text()))
    args.out.write_text(json.dumps(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
