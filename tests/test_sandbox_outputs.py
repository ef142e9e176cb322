"""A candidate's outputs are bounded by what its inputs need before the judge parses a byte of them: a huge
outputs file fails the candidate with a clear reason, and the worker's memory does not grow with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities.selfmod.evaluation import BadOutputs, load_dataset
from autarky.selfmod.agents import ANOMALY_DETECTOR, RELEVANCE_SCORER
from autarky.selfmod.settings import EvolutionSettings

MIB = 1024 * 1024
WORST_FLOAT = -2.2250738585072014e-308  # the longest repr a float has


@pytest.mark.parametrize("agent", [ANOMALY_DETECTOR.name, RELEVANCE_SCORER.name])
@pytest.mark.parametrize("part", ["search", "decision"])
def test_honest_outputs_fit_their_budget_with_the_longest_floats(
    agent: str, part: str, tmp_path: Path
) -> None:
    dataset = load_dataset(agent, part, EvolutionSettings())  # type: ignore[arg-type]
    if "files" in dataset.inputs:
        scores: dict = {k: [WORST_FLOAT] * len(v) for k, v in dataset.inputs["files"].items()}
    else:
        scores = {e["id"]: WORST_FLOAT for e in dataset.inputs["examples"]}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"scores": scores}))
    budget, _ = dataset.output_budget()
    assert path.stat().st_size <= budget
    assert dataset.read_outputs(path) == {"scores": scores}
    assert budget < 8 * MIB  # and the budget stays far below the file-size limit a run may write


def test_a_huge_outputs_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    dataset = load_dataset(RELEVANCE_SCORER.name, "search", EvolutionSettings())
    path = tmp_path / "outputs.json"
    with path.open("wb") as f:  # sparse: 64 MiB that costs no disk
        f.write(b'{"scores": {')
        f.truncate(64 * MIB)
    budget, inputs = dataset.output_budget()
    with pytest.raises(BadOutputs) as refused:
        dataset.read_outputs(path)
    assert str(refused.value) == f"outputs.json is {64 * MIB} bytes; at most {budget} for {inputs} inputs"


def test_symlinks_and_fifos_are_refused_without_blocking(tmp_path: Path) -> None:
    dataset = load_dataset(RELEVANCE_SCORER.name, "search", EvolutionSettings())
    (tmp_path / "link.json").symlink_to("/etc/passwd")
    with pytest.raises(BadOutputs, match="cannot be opened"):
        dataset.read_outputs(tmp_path / "link.json")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(BadOutputs, match="not a regular file"):
        dataset.read_outputs(tmp_path / "fifo.json")


# A worker process of its own: the real measure activity in the sandbox, once on the incumbent (so that
# imports, datasets and the sandbox's first run are paid), then on a candidate whose code rewrites the
# outputs with 64 MiB as the process exits. ru_maxrss is the process's peak, children not counted.
WORKER = """
import asyncio, json, resource, sys
from pathlib import Path
from datetime import UTC, datetime
from tests.test_candidate_tests import SOURCE, patch_of
from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities
from activities.selfmod.versions import AgentRepository
from autarky.selfmod.agents import default_parameters
from autarky.core.settings import AutarkySettings
from autarky.selfmod.types import CandidateOrigin, MeasureInput, SandboxLimits

HUGE = (
    "import atexit\\n\\n\\ndef _flood() -> None:\\n"
    "    with open('outputs.json', 'w') as f:\\n"
    "        f.write('{\\"scores\\": {\\"x\\": \\"' + ' ' * (64 << 20) + '\\"}}')\\n\\n\\n"
    "atexit.register(_flood)\\n"
)


async def main() -> None:
    settings = AutarkySettings(data_dir=Path(sys.argv[1]))
    repo = AgentRepository(settings.data_dir / "agents", "relevance-scorer")
    parameters = default_parameters("relevance-scorer")
    repo.ensure({SOURCE: (PROJECT_ROOT / SOURCE).read_text()}, parameters, datetime.now(UTC))
    incumbent = repo.active().commit
    patch = patch_of("import re\\n", "import re\\n" + HUGE)
    huge = repo.create_candidate(incumbent, "huge", "run", parameters, patch, CandidateOrigin.LLM, "x")
    acts = SelfModActivities(settings)
    limits = SandboxLimits(file_size_mib=100, cpu_seconds=120, wall_seconds=120)

    async def measure(commit: str, label: str):
        request = MeasureInput(
            agent="relevance-scorer", run_id="outputs-test", part="search", commits=[commit], label=label,
            limits=limits,
        )
        return await acts.measure(request)

    warm = await measure(incumbent, "warm")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    measured = await measure(huge.commit, "huge")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"warm": warm.failures or warm.figures, "failures": measured.failures,
                      "before_kib": before, "after_kib": after}))


asyncio.run(main())
"""


@pytest.mark.slow
def test_a_candidate_writing_64_mib_of_outputs_fails_and_the_worker_does_not_grow(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "data")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    [why] = found["failures"].values()
    assert "benchmark outputs rejected" in why and "outputs.json is" in why and "bytes; at most" in why, why
    size = int(why.split("outputs.json is ")[1].split(" bytes")[0])
    assert size > 64 * MIB  # the flood was written (and kept), and refused by its size
    assert found["after_kib"] - found["before_kib"] < 8 * 1024, found  # not the 64 MiB it holds
