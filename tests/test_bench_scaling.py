"""`bench/scaling.py` and `bench/scaling_choose.py` as `make bench-scaling` (-choose) run them, on synthetic
traces: the policies per start-up delay, HPA-like's cost curve, the goals, approvals that wait, the
leave-one-trace-out choice, one-line errors."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bench.scaling_choose import GRIDS
from bench.scaling_sim import HPA_TARGETS, at_cost

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("autarky", *(f"hpa-like@{t:g}" for t in HPA_TARGETS), "fixed", "oracle")


def bench(*args: str, script: str = "scaling.py") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def daily_load(
    path: Path, days: int = 2, shuffle_one: bool = False, amplitude: float = 40, noise: float = 0
) -> Path:
    """5-minute rows of a daily cycle (60 ± amplitude) with a spike; optional noise, a row out of order."""
    start = datetime(2024, 1, 1)
    rng = random.Random(path.name)
    rows = []
    for i in range(days * 288):
        value = 60 + amplitude * math.sin(2 * math.pi * i / 288) + (150 if i == 400 else 0)
        rows.append((start + i * timedelta(minutes=5), max(0.0, value + rng.gauss(0, noise))))
    if shuffle_one:
        rows[10], rows[11] = rows[11], rows[10]
    path.write_text("timestamp,value\n" + "".join(f"{at:%Y-%m-%d %H:%M:%S},{v:.3f}\n" for at, v in rows))
    return path


def step_load(path: Path) -> Path:
    """1-minute rows: 10 for an hour, 100 for three hours, 10 for an hour (a unit serves 10)."""
    start = datetime(2024, 1, 1)
    rows = [(start + timedelta(minutes=i), 100 if 60 <= i < 240 else 10) for i in range(300)]
    path.write_text("timestamp,value\n" + "".join(f"{at:%Y-%m-%d %H:%M:%S},{v}\n" for at, v in rows))
    return path


def section(stdout: str, startup: int) -> str:
    """The report of one start-up delay."""
    text = stdout.split(f"== start-up {startup} min", 1)[1]
    return text.split("\n== ", 1)[0]


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the first table whose header starts with `title`, by their first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(" "):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def goal_lines(stdout: str) -> list[str]:
    return stdout.split("goals, all start-up delays:", 1)[1].strip().splitlines()


def test_a_trace_is_replayed_at_both_start_up_delays_with_hpa_like_s_curve(tmp_path: Path) -> None:
    trace = daily_load(tmp_path / "daily.csv")
    run = bench("--trace", str(trace))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "simulated in" in run.stderr  # wall time
    for startup in (1, 3):
        part = section(run.stdout, startup)
        assert f"warm-up 0:0{startup}:00" in part.splitlines()[0]  # autarky's warm-up follows the delay
        totals = table_rows(part, "total")
        assert list(totals) == list(POLICIES)
        oracle = totals["oracle"]
        assert oracle[0] == "0"  # no violation minutes
        assert oracle[2] == "100.0"  # cost: the floor
        for name in POLICIES[:-1]:
            assert int(totals[name][1]) >= int(oracle[1])  # nobody pays less than the oracle
        # HPA-like's curve: a higher target costs less
        costs = [int(totals[f"hpa-like@{t:g}"][1]) for t in HPA_TARGETS]
        assert costs == sorted(costs, reverse=True)
        assert "daily" in table_rows(part, "trace")
    lines = goal_lines(run.stdout)
    assert [line.split()[0] for line in lines] == ["1"] * 3 + ["3"] * 3
    for line in lines:
        assert ("met" in line) and any(f"({x})" in line for x in "abc")
    a_line = next(line for line in lines if "(a)" in line)
    assert "vs HPA-like" in a_line and "between targets" in a_line  # both figures, and where on the curve


def test_hpa_like_is_interpolated_at_autarky_s_cost() -> None:
    curve = [(200.0, 10.0), (100.0, 50.0), (150.0, 20.0)]  # (cost, violations), any order
    assert at_cost(curve, 125.0) == pytest.approx(35.0)  # halfway between 100 and 150
    assert at_cost(curve, 150.0) == pytest.approx(20.0)
    assert at_cost(curve, 90.0) == 50.0  # cheaper than every point: the cheapest point's
    assert at_cost(curve, 300.0) == 10.0  # dearer than every point: the least violating


def test_several_traces_and_options(tmp_path: Path) -> None:
    one = daily_load(tmp_path / "one.csv")
    two = daily_load(tmp_path / "two.csv", days=1, shuffle_one=True)  # rows out of order: kept, no crash
    run = bench(
        "--trace",
        str(one),
        "--trace",
        str(two),
        "--startup",
        "5",
        "--units-at-p99",
        "4",
        "--hpa-target",
        "0.6",
        "--hpa-target",
        "0.8",
        "--policy",
        "scale_down_target=0.9",
        "--policy",
        "stabilisation_window=10m",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    assert "== start-up 5 min" in run.stdout and "== start-up 1 min" not in run.stdout
    part = section(run.stdout, 5)
    assert set(table_rows(part, "trace")) == {"one", "two"}
    assert list(table_rows(part, "total")) == ["autarky", "hpa-like@0.6", "hpa-like@0.8", "fixed", "oracle"]
    assert "scale-down target 0.9" in run.stdout
    assert "stabilisation 0:10:00" in run.stdout
    assert "warm-up 0:05:00" in part


def test_a_change_that_needs_approval_waits_and_its_violations_count(tmp_path: Path) -> None:
    """A cost ceiling of 4 units flags growing past 4: the step to 10 units waits for a person."""
    trace = step_load(tmp_path / "step.csv")
    ceiling = ["--policy", "unit_cost_per_hour=1", "--policy", "cost_ceiling_per_hour=4"]
    common = ["--trace", str(trace), "--startup", "1", "--workers", "1", *ceiling]
    runs = {wait: bench(*common, "--approval-minutes", str(wait)) for wait in (0, 30)}
    autarky = {}
    for wait, run in runs.items():
        assert run.returncode == 0, run.stderr
        autarky[wait] = [int(x) for x in table_rows(section(run.stdout, 1), "total")["autarky"][:2]]
        autarky[wait] += [int(x) for x in table_rows(section(run.stdout, 1), "total")["autarky"][-2:]]
    violations, _, approvals, waited = autarky[30]
    assert approvals >= 1
    assert waited >= 30  # each approval waited the 30 minutes (demand stays high for 3 hours)
    assert autarky[0][2] >= 1 and autarky[0][3] == 0  # flagged, but granted at once
    # the units above the ceiling arrive 30 minutes later: those minutes are violations
    assert violations >= autarky[0][0] + 30


def test_scaling_choose_picks_a_grid_config_leave_one_trace_out(tmp_path: Path) -> None:
    traces = [
        daily_load(tmp_path / "calm.csv", days=1),
        daily_load(tmp_path / "noisy.csv", days=1, amplitude=20, noise=15),
        daily_load(tmp_path / "wide.csv", days=2, amplitude=50, noise=2),
    ]
    run = bench(
        "--grid", "quick", *(arg for t in traces for arg in ("--trace", str(t))), script="scaling_choose.py"
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    grid = {str(c) for c in GRIDS["quick"]}
    held = table_rows(run.stdout, "held out")
    assert set(held) == {"calm", "noisy", "wide"}
    assert all(cells[0] in grid for cells in held.values())  # each fold chose a config of the grid
    chosen = next(line for line in run.stdout.splitlines() if line.startswith("chosen on all traces: "))
    assert chosen.removeprefix("chosen on all traces: ").split(" (")[0] in grid
    assert "totals over the held-out traces" in run.stdout
    assert "shipped defaults" in run.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("timestamp,load\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n", "no column 'value'"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,lots\n", "'lots' is not a number"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n", "too few rows"),
        ("timestamp,value\nyesterday,1\n2024-01-01 00:05:00,2\n", "timestamp 'yesterday'"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,-3\n", "not a demand"),
        ("", "no column 'timestamp' or 'value'"),
    ],
    ids=["missing-column", "non-numeric", "too-few-rows", "bad-timestamp", "negative", "empty"],
)
def test_a_bad_trace_gives_a_one_line_error_naming_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    good = daily_load(tmp_path / "good.csv", days=1)
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    run = bench("--trace", str(good), "--trace", str(bad))
    assert run.returncode != 0
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: {bad}")
    assert problem in lines[0]


def test_a_missing_file_gives_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    run = bench("--trace", str(missing))
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0
    assert str(missing) in run.stderr


def test_a_bad_policy_override_is_refused(tmp_path: Path) -> None:
    trace = daily_load(tmp_path / "daily.csv", days=1)
    run = bench("--trace", str(trace), "--policy", "scale_down_utilisation=0.95")
    assert run.returncode == 2
    assert run.stderr.startswith("error: --policy:")
    assert "scale_down_utilisation" in run.stderr
