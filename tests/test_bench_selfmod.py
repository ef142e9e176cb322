"""`python -m bench.selfmod` (issue 30): the real SelfModificationWorkflow on a local dev server, its
generations measured on the decision part and tabled per search method, and the A/A section; the
table's means, the Wilson interval and the plan and --plant parsing without a server."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest

from autarky.selfmod.agents import RELEVANCE_SCORER
from autarky.selfmod.types import GenerationBest, Interval, SelfModifyResult
from bench.selfmod import DEFAULT_PLAN, METHODS, Run, evolution_table, make_plan, plants
from bench.selfmod_aa import NullRate, null_table, wilson

ROOT = Path(__file__).resolve().parents[1]
AGENT = RELEVANCE_SCORER.name


@pytest.mark.slow
def test_the_cli_runs_the_workflow_and_prints_the_method_table_and_the_aa_section() -> None:
    args = ["--agents", AGENT, "--methods", "es", "--seeds", "1", "--generations", "1", "--population", "2"]
    args += ["--plant", "half=12,steepness=6", "--aa-runs", "10", "--aa-histories", "4", "--aa-looks", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.selfmod", *args, "--overhead-repeats", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "through SelfModificationWorkflow" in out and "planted {'half': 12.0, 'steepness': 6.0}" in out
    # The method's row: g0 (the incumbent) and g1 on the search part, g1's decision-part gain, promotions.
    [row] = re.findall(r"^es +1 \| +([\d.]+) +([\d.]+) \| +([+-][\d.]+|—) \| +([01])/1 +([\d.]+)$", out, re.M)
    g0, g1 = float(row[0]), float(row[1])
    assert 0 < g0 <= g1 <= 100  # the best so far never gets worse on the search part
    assert row[2] != "—"  # the generation's best commit was measured on the decision part
    # The run's own line: the workflow's decision, its candidates and sandbox runs.
    assert re.search(rf"{AGENT} es #1: (promoted|not_promoted) .*2 candidates .* sandbox runs", out)
    # The A/A section: one-look runs and histories of --aa-looks looks, with a rate and its interval.
    assert "A/A (no real gain)" in out
    assert re.search(rf"^{AGENT} +10 +1 +\d+ +[\d.]+% +\[[\d.]+%, [\d.]+%\] +(yes|NO)$", out, re.M)
    assert re.search(rf"^{AGENT} +4 +2 +\d+ +[\d.]+% +\[[\d.]+%, [\d.]+%\] +(yes|NO)$", out, re.M)


def _run(method: str, seed: int, search: list[float], decision: list[float], status: str) -> Run:
    """A finished run: search figures g0 (the incumbent), g1, …; decision figures incumbent, g1, …"""
    result = SelfModifyResult(
        agent=AGENT,
        status=status,
        incumbent_commit="inc",
        baseline_search=search[0],
        generations=[
            GenerationBest(generation=g, commit=f"c{g}", search=f) for g, f in enumerate(search) if g
        ],
        improvement=Interval(estimate=1.0, low=0.5, high=1.5, kind="absolute")
        if status == "promoted"
        else None,
        message="no candidate beat the incumbent (search part)",
    )
    return Run(
        AGENT,
        method,
        seed,
        result,
        incumbent_decision=decision[0],
        decision={g: f for g, f in enumerate(decision) if g},
        wall=10.0 * (seed + 1),
    )


def test_the_table_shows_per_method_means_per_generation_and_the_decisions() -> None:
    runs = [
        _run("es", 0, [80.0, 82.0, 84.0], [86.0, 87.0, 89.0], "promoted"),
        _run("es", 1, [80.0, 80.0, 81.0], [86.0, 86.0, 85.0], "not_promoted"),
        _run("cma", 0, [80.0, 83.0, 83.0], [86.0, 85.0, 85.0], "not_promoted"),
    ]
    lines = evolution_table(runs, 2)
    es = next(line for line in lines if line.startswith("es "))
    cma = next(line for line in lines if line.startswith("cma "))
    # Means over the method's runs: search 80, 81, 82.5; decision gains +0.5 and +1 points; 1 of 2.
    assert es.split() == [
        "es",
        "2",
        "|",
        "80.00",
        "81.00",
        "82.50",
        "|",
        "+0.50",
        "+1.00",
        "|",
        "1/2",
        "15.00",
    ]
    assert cma.split() == [
        "cma",
        "1",
        "|",
        "80.00",
        "83.00",
        "83.00",
        "|",
        "-1.00",
        "-1.00",
        "|",
        "0/1",
        "10.00",
    ]
    assert any("points" in line and "decision-part gain" in line for line in lines)
    details = [line for line in lines if line.startswith(f"  {AGENT} es #")]
    assert "promoted (+1.00 points" in details[0] and "not_promoted (no comparison)" in details[1]
    assert "no candidate beat the incumbent" in details[1]


def test_a_run_that_failed_is_shown_as_such_and_leaves_the_means_alone() -> None:
    failed = Run(AGENT, "archive", 0, error="RuntimeError: no server")
    lines = evolution_table([_run("archive", 1, [80.0, 82.0], [86.0, 88.0], "not_promoted"), failed], 1)
    row = next(line for line in lines if line.startswith("archive "))
    assert row.split()[:8] == ["archive", "2", "|", "80.00", "82.00", "|", "+2.00", "|"]
    assert any("archive #1: FAILED — RuntimeError: no server" in line for line in lines)


@pytest.mark.parametrize(("k", "n"), [(0, 200), (3, 200), (50, 1000), (7, 7), (1, 3)])
def test_the_wilson_interval_is_scipys(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n)
    assert math.isclose(low, expected.low, abs_tol=1e-9) and math.isclose(high, expected.high, abs_tol=1e-9)


def test_the_aa_table_prints_rate_interval_and_the_goal() -> None:
    lines = null_table([NullRate(AGENT, 1000, 1, 12), NullRate(AGENT, 200, 6, 11)])
    assert lines[2].split() == [AGENT, "1000", "1", "12", "1.2%", "[0.7%,", "2.1%]", "yes"]
    assert lines[3].split() == [AGENT, "200", "6", "11", "5.5%", "[3.1%,", "9.6%]", "NO"]


def test_the_default_plan_and_explicit_methods_and_seeds() -> None:
    default = make_plan(list(DEFAULT_PLAN), [], None)
    assert [(a, m) for a, m, s in default if s == 0] == [
        (a, m) for a, (methods, _) in DEFAULT_PLAN.items() for m in methods
    ]
    assert sum(1 for a, _, _ in default if a == AGENT) == len(METHODS) * 2
    assert make_plan([AGENT], ["cma"], 3) == [(AGENT, "cma", 0), (AGENT, "cma", 1), (AGENT, "cma", 2)]


def test_plant_goes_to_the_agents_that_declare_the_parameter() -> None:
    agents = ["anomaly-detector", AGENT]
    assert plants(["half=12,steepness=6", "z_half=1"], agents) == {
        AGENT: {"half": 12.0, "steepness": 6.0},
        "anomaly-detector": {"z_half": 1.0},
    }
    with pytest.raises(ValueError, match="no chosen agent has that parameter"):
        plants(["nonsense=1"], agents)
    with pytest.raises(ValueError, match="k=v"):
        plants(["half"], agents)
