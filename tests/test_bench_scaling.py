"""`bench/scaling.py` as `make bench-scaling` runs it, on synthetic traces: four policies, one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("autarky", "hpa-like", "fixed", "oracle")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaling.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def daily_load(path: Path, days: int = 2, shuffle_one: bool = False) -> Path:
    """5-minute rows of a daily cycle (20..100) with a spike; optionally one row out of order."""
    start = datetime(2024, 1, 1)
    rows = []
    for i in range(days * 288):
        value = 60 + 40 * math.sin(2 * math.pi * i / 288) + (150 if i == 400 else 0)
        rows.append((start + i * timedelta(minutes=5), value))
    if shuffle_one:
        rows[10], rows[11] = rows[11], rows[10]
    path.write_text("timestamp,value\n" + "".join(f"{at:%Y-%m-%d %H:%M:%S},{v:.3f}\n" for at, v in rows))
    return path


def table_rows(stdout: str, title: str) -> dict[str, list[str]]:
    """The rows of the table whose header starts with `title`, by their first cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(" "):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_a_trace_is_replayed_through_the_four_policies(tmp_path: Path) -> None:
    trace = daily_load(tmp_path / "daily.csv")
    run = bench("--trace", str(trace))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    totals = table_rows(run.stdout, "total")
    assert list(totals) == list(POLICIES)
    oracle = totals["oracle"]
    assert oracle[0] == "0"  # no violation minutes
    assert oracle[2] == "100.0"  # cost: the floor
    for name in ("autarky", "hpa-like"):
        assert int(totals[name][1]) >= int(oracle[1])  # nobody pays less than the oracle
    assert "daily" in table_rows(run.stdout, "trace")
    assert "start-up: 3 min" in run.stdout
    assert "goals" in run.stdout


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
        "--policy",
        "scale_up_utilisation=0.8",
        "--policy",
        "stabilisation_window=5m",
    )
    assert run.returncode == 0, run.stderr
    assert set(table_rows(run.stdout, "trace")) == {"one", "two"}
    assert "up > 0.8" in run.stdout
    assert "stabilisation 5 min" in run.stdout
    assert "target 0.6" in run.stdout


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
