"""What the sandbox costs per run, for `python -m bench.selfmod`: per agent, the benchmark run of the
incumbent on the decision part (the harness command of SelfModActivities._run_once) through `run_sandboxed`
versus the same command as a plain `subprocess.run` of the same Python, with the same environment but
PYTHONPATH at a copy of the same work directory and the data read from the host path: the same process work
without bubblewrap, its namespaces and mounts, the chown of the work directory (root) and the limits.
Interleaved A B A B, --overhead-repeats each, a fresh work directory per run made outside the timer; the
medians, their difference and ratio. `python -c pass` the same way shows the fixed cost of a sandboxed
start. "same figure" checks that the plain run's outputs score as the sandboxed run's do.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from activities.selfmod.activities import SelfModActivities
from activities.selfmod.sandbox import (
    DATA_ROOT,
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_env,
    sandbox_python,
)
from autarky.selfmod.types import AgentSpec, SandboxLimits


@dataclass
class Overhead:
    name: str
    sandboxed: list[float]
    plain: list[float]
    same: bool | None = None  # the plain run's figure equals the sandboxed one's (None: not a benchmark)


def harness_command(spec: AgentSpec, data: str) -> list[str]:
    """The benchmark run's command, as SelfModActivities._run_once builds it."""
    command = [sandbox_python(), "-m", "autarky.selfmod.harness", "run", spec.name]
    return [*command, "--params", "params.json", "--data", data, "--out", "outputs.json"]


def plain_env(work: Path) -> dict[str, str]:
    """The sandbox's environment, with the host paths of the work directory."""
    return sandbox_env({"PYTHONPATH": str(work), "HOME": str(work)})


def benchmark_overhead(acts: SelfModActivities, agent: str, repeats: int, limits: SandboxLimits) -> Overhead:
    spec, repo = acts.repository(agent)
    commit = repo.active().commit
    data = acts.data_dir_for(agent, "decision")
    dataset = acts.dataset(agent, "decision")
    timings: dict[str, list[float]] = {"sandboxed": [], "plain": []}
    figures: dict[str, set[float]] = {"sandboxed": set(), "plain": set()}
    for _ in range(repeats):
        for how in ("sandboxed", "plain"):
            work = acts.workdir(spec, repo, commit)
            try:
                started = time.perf_counter()
                if how == "sandboxed":
                    command = harness_command(spec, f"{DATA_ROOT}/part/inputs.json")
                    lent = {"part": data}
                    result = run_sandboxed(command, work, limits, data=lent, outputs=["outputs.json"])
                    ok, output = result.ok, result.output
                else:
                    command = harness_command(spec, str(data / "inputs.json"))
                    done = subprocess.run(
                        command,
                        cwd=work,
                        env=plain_env(work),
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        text=True,
                    )
                    ok, output = done.returncode == 0, done.stdout + done.stderr
                timings[how].append(time.perf_counter() - started)
                if not ok:
                    raise RuntimeError(f"{agent}: the {how} benchmark run failed: {output.strip()[-500:]}")
                outputs = json.loads((work / "outputs.json").read_text())
                figures[how].add(round(dataset.score(outputs).metric, 9))
            finally:
                remove_workdir(work)
    same = figures["sandboxed"] == figures["plain"] and len(figures["plain"]) == 1
    return Overhead(f"{agent} (decision part)", timings["sandboxed"], timings["plain"], same)


def trivial_overhead(repeats: int, limits: SandboxLimits) -> Overhead:
    command = [sandbox_python(), "-c", "pass"]
    timings: dict[str, list[float]] = {"sandboxed": [], "plain": []}
    for _ in range(repeats):
        for how in ("sandboxed", "plain"):
            work = new_workdir()
            try:
                started = time.perf_counter()
                if how == "sandboxed":
                    ok = run_sandboxed(command, work, limits).ok
                else:
                    ok = subprocess.run(command, cwd=work, env=plain_env(work), check=False).returncode == 0
                timings[how].append(time.perf_counter() - started)
                if not ok:
                    raise RuntimeError(f"`python -c pass` failed {how}")
            finally:
                remove_workdir(work)
    return Overhead("python -c pass", timings["sandboxed"], timings["plain"])


def print_overhead(rows: Sequence[Overhead]) -> None:
    head = f"{'run':<32} {'sandboxed s':>11} {'plain s':>9} {'difference ms':>13} {'ratio':>6}"
    head += f" {'same figure':>11}"
    print(head)
    print("-" * len(head))
    for r in rows:
        boxed, plain = statistics.median(r.sandboxed), statistics.median(r.plain)
        ratio = boxed / plain if plain > 0 else math.inf
        same = "—" if r.same is None else ("yes" if r.same else "NO")
        print(
            f"{r.name:<32} {boxed:>11.3f} {plain:>9.3f} {(boxed - plain) * 1000:>13.0f} {ratio:>6.2f} "
            f"{same:>11}"
        )
