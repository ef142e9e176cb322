"""Records what real variants of each evolvable agent score per unit (bench/data/selfmod_units.json): the
unit structure the A/A test (tests/test_selfmod_null.py) and `make bench-selfmod` draw null candidates from.

Variants are children of the shipped parameters made as the workflow makes them (`mutate` at its first
step), measured with the same harness the sandbox runs, on both parts. About a minute and a half.

    python -m bench.selfmod_units [--variants 16] [--out bench/data/selfmod_units.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from activities.selfmod.evaluation import load_dataset
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import AGENTS, default_parameters
from autarky.selfmod.harness import RUNS
from autarky.selfmod.policy import mutate
from workflows.self_modify import FIRST_STEP

OUT = Path(__file__).resolve().parent / "data" / "selfmod_units.json"


def measure(agent: str, parameters: dict[str, float], datasets: dict) -> dict[str, dict[str, float]]:
    run = RUNS[agent]
    return {part: dataset.score(run(parameters, dataset.inputs)).units for part, dataset in datasets.items()}


def record(variants: int, seed: int = 30) -> dict:
    settings = AutarkySettings().evolution
    table: dict = {}
    for name, spec in AGENTS.items():
        started = time.perf_counter()
        datasets = {part: load_dataset(name, part, settings) for part in ("search", "decision")}
        shipped = default_parameters(name)
        children = mutate(shipped, spec.parameters, FIRST_STEP, random.Random(seed), variants)
        table[name] = {
            "parameters": {"incumbent": shipped, "variants": children},
            "incumbent": measure(name, shipped, datasets),
            "variants": [measure(name, child, datasets) for child in children],
        }
        print(f"{name}: {len(children)} variants in {time.perf_counter() - started:.0f} s", flush=True)
    return table


def load(path: Path = OUT) -> dict:
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(record(args.variants), indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
