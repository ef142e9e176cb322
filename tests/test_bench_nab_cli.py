"""`bench/nab.py` as `make bench-nab` runs it: without the NAB data it says how to get it, in one message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOW_TO = "--data NAB/data --windows NAB/labels/combined_windows.json"


def nab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "nab.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_says_how_to_get_nab(run: subprocess.CompletedProcess[str], missing: Path) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stdout == ""
    assert run.stderr.startswith(f"error: NAB data not found: {missing}\n")
    assert "git clone https://github.com/numenta/NAB" in run.stderr
    assert HOW_TO in run.stderr
    assert run.stderr.count("error") == 1  # one message, not one per problem


def test_a_missing_data_directory_says_how_to_get_nab(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    assert_says_how_to_get_nab(nab("--data", str(missing), "--by-category"), missing)


def test_a_missing_windows_file_says_how_to_get_nab(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    missing = tmp_path / "combined_windows.json"  # the default: beside the data directory
    assert_says_how_to_get_nab(nab("--data", str(data)), missing)


def test_present_data_is_still_scored(tmp_path: Path) -> None:
    """The check for missing data lets a real (tiny) NAB-format corpus through."""
    data = tmp_path / "data"
    (data / "synthetic").mkdir(parents=True)
    rows = ["timestamp,value"] + [
        f"2024-01-01 {h:02d}:{m:02d}:00,{100.0 if (h, m) == (12, 0) else 1.0 + (m % 3) / 10}"
        for h in range(24)
        for m in range(0, 60, 5)
    ]
    (data / "synthetic" / "spike.csv").write_text("\n".join(rows) + "\n")
    windows = tmp_path / "labels.json"
    windows.write_text(json.dumps({"synthetic/spike.csv": [["2024-01-01 11:30:00", "2024-01-01 12:30:00"]]}))

    run = nab("--data", str(data), "--windows", str(windows), "--detectors", "gaussian,random")
    assert run.returncode == 0, run.stderr
    assert "NAB: 1 files, 288 rows, 1 windows" in run.stdout


def test_the_tables_run_on_any_nab_format_data_with_a_clock_step(tmp_path: Path) -> None:
    """`--data DIR --windows FILE --tables` on two tiny categories, one file's clock set back an hour."""
    data = tmp_path / "data"
    stamps = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(24) for m in range(0, 60, 5)]
    stepped = stamps[:150] + stamps[138:-12]  # at row 150 the clock goes back an hour
    windows = {}
    for category, times in (("a", stamps), ("b", stepped)):
        (data / category).mkdir(parents=True)
        rows = [f"{t},{100.0 if i == 200 else 1.0 + (i % 3) / 10}" for i, t in enumerate(times)]
        (data / category / "x.csv").write_text("\n".join(["timestamp,value", *rows]) + "\n")
        windows[f"{category}/x.csv"] = [[times[195], times[205]]]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(windows))

    run = nab("--data", str(data), "--windows", str(labels), "--detectors", "autarky", "--tables")
    assert run.returncode == 0, run.stderr
    tables = (
        "Cross-validation:",
        "Held-out halves:",
        "Long run (",
        "Alert budget (",
        "Cost per update by window",
    )
    for table in tables:
        assert table in run.stdout
    assert "all left-out scores together" in run.stdout
    assert "all held-out together" in run.stdout and "operating point: NAB at the shipped" in run.stdout
