"""Offline self-modification of the shipped agents, end to end, and what the sandbox costs per run.

    .venv/bin/python -m bench.selfmod [--generations 4] [--population 4] [--agents a,b] [--seed 0]
                                      [--parallel-checks 2] [--overhead-repeats 5]

Evolution: per agent, the loop of SelfModificationWorkflow (workflows/self_modify.py) with `offline`, run
without Temporal: the SelfModActivities methods are called directly with AutarkySettings(data_dir=<a fresh
temporary directory>), so every candidate really runs in the sandbox (bubblewrap) and is judged outside
it with the labels, as in production.
- baseline: the incumbent (the shipped version) measured on the search part;
- each generation: `mutate` λ = --population children of the best so far (step 0.2 of the normalised
  range at first, random.Random(--seed)), `make_candidates`, `check_candidate` each (static checks, the
  agent's tests and self-test in the sandbox; --parallel-checks at a time, as the workflow does), the
  passing ones measured on the search part, the best kept (a child must be strictly better than the best so
  far), then `adapt_step` (the 1/5 success rule);
- decision: `compare` the best with the incumbent on the decision part (A B A B, the agent's `repeats`
  pairs; paired bootstrap by unit), promoted when `should_promote` at the agent's threshold and the part
  has at least MIN_PAIRED_UNITS units. When no child beat the incumbent on the search part the workflow
  stops without comparing; here the incumbent is then measured once on the decision part for the table.
Sandbox runs count as the workflow counts them (a passed check is two runs: tests and self-test). Nothing is
promoted anywhere: the version repositories live in the temporary directory, removed at the end.

Overhead: per agent, the benchmark run of the incumbent on the decision part (the harness command of
SelfModActivities._run_once) through `run_sandboxed` versus the same command as a plain `subprocess.run`
of the same Python, with the same environment but PYTHONPATH at a copy of the same work directory and the
data read from the host path: the same process work without bubblewrap, its namespaces and mounts, the
chown of the work directory (root) and the limits. Interleaved A B A B, --overhead-repeats each, a fresh
work directory per run made outside the timer; the medians, their difference and ratio. `python -c pass`
the same way shows the fixed cost of a sandboxed start. "same figure" checks that the plain run's outputs
score as the sandboxed run's do.

A benchmark, not a test: the exit code is 0 unless the sandbox is unavailable or an incumbent fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.exceptions import ApplicationError

from activities.selfmod.activities import SelfModActivities
from activities.selfmod.sandbox import (
    DATA_ROOT,
    SandboxUnavailable,
    bwrap_binary,
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_env,
    sandbox_python,
)
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import AGENTS
from autarky.selfmod.policy import adapt_step, better, mutate, should_promote
from autarky.selfmod.types import (
    AgentRunInput,
    AgentSpec,
    Candidate,
    CheckInput,
    CheckOutcome,
    CompareInput,
    Interval,
    MakeCandidatesInput,
    MeasureInput,
    Measurement,
    ParameterProposal,
    SandboxLimits,
)
from workflows.self_modify import FIRST_STEP, MIN_PAIRED_UNITS


@dataclass
class Evolution:
    agent: str
    status: str = "running"
    message: str = ""
    baseline_search: float | None = None
    baseline_decision: float | None = None
    best_search: float | None = None
    best_decision: float | None = None
    improvement: Interval | None = None
    threshold: float = 0.0
    promoted: bool = False
    candidates: int = 0
    failed: int = 0
    sandbox_runs: int = 0
    best_key: str = "incumbent"
    best_summary: str = ""
    steps: list[float] = field(default_factory=list)
    wall: float = 0.0


# ---------------------------------------------------------------- evolution (the workflow's loop)


async def evolve(
    acts: SelfModActivities,
    agent: str,
    generations: int,
    population: int,
    seed: int,
    parallel_checks: int,
    limits: SandboxLimits,
) -> Evolution:
    started = time.perf_counter()
    out = Evolution(agent)
    try:
        await _evolve(acts, agent, generations, population, seed, parallel_checks, limits, out)
    finally:
        out.wall = time.perf_counter() - started
    return out


async def _evolve(
    acts: SelfModActivities,
    agent: str,
    generations: int,
    population: int,
    seed: int,
    parallel_checks: int,
    limits: SandboxLimits,
    out: Evolution,
) -> None:
    run_id = f"bench/{agent}"
    rng = random.Random(seed)
    snap = await acts.snapshot_agent(AgentRunInput(agent=agent, run_id=run_id))
    spec, incumbent = snap.spec, snap.pointer
    out.threshold = spec.threshold

    async def measure(part: str, commits: list[str], label: str) -> Measurement:
        measured = await acts.measure(
            MeasureInput(agent=agent, run_id=run_id, part=part, commits=commits, label=label, limits=limits)  # type: ignore[arg-type]
        )
        out.sandbox_runs += measured.runs
        return measured

    baseline = await measure("search", [incumbent.commit], "baseline")
    if incumbent.commit not in baseline.figures:
        out.status, out.message = "failed", f"the incumbent fails its own benchmark: {baseline.failures}"
        return
    out.baseline_search = best_figure = baseline.figures[incumbent.commit]
    best_commit, best_parameters = incumbent.commit, incumbent.parameters
    step = FIRST_STEP
    for generation in range(1, generations + 1):
        out.steps.append(step)
        children = mutate(best_parameters, spec.parameters, step, rng, population)
        proposals = [
            ParameterProposal(key=f"g{generation}c{i}", parameters=p) for i, p in enumerate(children, 1)
        ]
        candidates: list[Candidate] = []
        if proposals:
            candidates = await acts.make_candidates(
                MakeCandidatesInput(agent=agent, run_id=run_id, base=best_commit, proposals=proposals)
            )
        out.candidates += len(candidates)
        passing: list[Candidate] = []
        for start in range(0, len(candidates), max(1, parallel_checks)):
            group = candidates[start : start + parallel_checks]
            outcomes: list[CheckOutcome] = await asyncio.gather(
                *(
                    acts.check_candidate(CheckInput(agent=agent, run_id=run_id, candidate=c, limits=limits))
                    for c in group
                )
            )
            for c, outcome in zip(group, outcomes, strict=True):
                out.sandbox_runs += 2 if outcome.passed else 1
                if outcome.passed:
                    passing.append(c)
                else:
                    out.failed += 1
        improved = 0
        if passing:
            measured = await measure("search", [c.commit for c in passing], f"g{generation}")
            for c in passing:
                figure = measured.figures.get(c.commit)
                if figure is None:
                    out.failed += 1
                    continue
                if better(figure, best_figure, spec.direction):
                    improved += 1
                    best_commit, best_parameters, best_figure = c.commit, c.parameters, figure
                    out.best_key, out.best_summary = c.key, c.summary
        step = adapt_step(step, improved, max(len(candidates), 1))
    out.best_search = best_figure

    if best_commit == incumbent.commit:
        # The workflow ends here ("not_promoted"); the incumbent's decision figure only fills the table.
        decided = await measure("decision", [incumbent.commit], "decision")
        out.baseline_decision = out.best_decision = decided.figures.get(incumbent.commit)
        out.status, out.message = "not_promoted", "no candidate beat the incumbent on the search part"
        return
    try:
        compared = await acts.compare(
            CompareInput(
                agent=agent,
                run_id=run_id,
                incumbent=incumbent.commit,
                candidate=best_commit,
                repeats=spec.repeats,
                seed=rng.randint(0, 2**31 - 1),
                limits=limits,
            )
        )
    except ApplicationError as e:
        out.status, out.message = "failed", f"compare: {e}"
        return
    out.sandbox_runs += compared.runs
    out.baseline_decision, out.best_decision = compared.incumbent, compared.candidate
    out.improvement = compared.improvement
    if snap.units.get("decision", 0) < MIN_PAIRED_UNITS:
        out.status, out.message = "not_promoted", "too few units on the decision part to judge"
    elif should_promote(compared.improvement, spec.threshold):
        out.status, out.promoted, out.message = "promoted", True, "lower bound clears the threshold"
    else:
        out.status, out.message = "not_promoted", "not better enough on unseen data"


# ---------------------------------------------------------------- sandbox overhead


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


# ---------------------------------------------------------------- report


def _f(value: float | None, width: int = 7) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:{width}.2f}"


def print_evolution(rows: Sequence[Evolution]) -> None:
    head = (
        f"{'agent':<17} {'search: base':>12} {'best':>7} {'decision: base':>14} {'best':>7} "
        f"{'improvement [95 % interval]':>30} {'thresh':>6} {'promoted':>8} {'cand':>4} {'failed':>6} "
        f"{'sandbox runs':>12} {'wall s':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gain = r.improvement
        interval = "—" if gain is None else f"{gain.estimate:+.1%} [{gain.low:+.1%}, {gain.high:+.1%}]"
        print(
            f"{r.agent:<17} {_f(r.baseline_search, 12)} {_f(r.best_search)} {_f(r.baseline_decision, 14)} "
            f"{_f(r.best_decision)} {interval:>30} {r.threshold:>6.0%} {'yes' if r.promoted else 'no':>8} "
            f"{r.candidates:>4} {r.failed:>6} {r.sandbox_runs:>12} {r.wall:>7.1f}"
        )
    print()
    for r in rows:
        steps = ", ".join(f"{s:.3g}" for s in r.steps)
        best = "incumbent" if r.best_key == "incumbent" else f"{r.best_key} ({r.best_summary})"
        print(f"  {r.agent}: {r.status} — {r.message}; best {best}; steps {steps}")


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


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=4, help="children per generation (λ)")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated agent names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel-checks", type=int, default=2, help="candidates checked at the same time")
    parser.add_argument("--overhead-repeats", type=int, default=5, help="runs of each kind per overhead row")
    args = parser.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        parser.error(f"unknown agent(s) {', '.join(unknown)}; the agents are: {', '.join(AGENTS)}")
    if args.generations < 1 or args.population < 1 or args.overhead_repeats < 1:
        parser.error("--generations, --population and --overhead-repeats must be >= 1")
    try:
        bwrap_binary()
    except SandboxUnavailable as e:
        print(e, file=sys.stderr)
        return 1

    limits = SandboxLimits()
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="autarky-bench-selfmod-"))
    try:
        acts = SelfModActivities(AutarkySettings(data_dir=data_dir))
        print(
            f"offline evolution: {args.generations} generations × {args.population} children, seed "
            f"{args.seed}, {args.parallel_checks} checks at a time, default sandbox limits\n"
        )
        rows = [
            asyncio.run(
                evolve(
                    acts,
                    agent,
                    args.generations,
                    args.population,
                    args.seed,
                    args.parallel_checks,
                    limits,
                )
            )
            for agent in agents
        ]
        print_evolution(rows)
        print(
            f"\nsandbox overhead per run: median of {args.overhead_repeats} runs each, interleaved "
            f"(sandboxed, plain, …)\n"
        )
        overheads = [benchmark_overhead(acts, a, args.overhead_repeats, limits) for a in agents]
        overheads.append(trivial_overhead(args.overhead_repeats, limits))
        print_overhead(overheads)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\nran in {time.perf_counter() - started:.1f} s")
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
