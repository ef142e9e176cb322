"""Load NAB-format data: `timestamp,value` CSVs under a directory and a windows file mapping each CSV's
path (relative to that directory) to its labelled anomaly windows. Used by `bench/nab.py` and by
self-modification, which evaluates anomaly-detector candidates on this data outside their sandbox.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from autarky.evaluation.nab_scoring import Labels, label_rows, window_rows


class DataError(Exception):
    """Bad or inconsistent input data; the message names the file (and line)."""


@dataclass(frozen=True)
class NabFile:
    key: str  # path relative to the data directory, as in the windows file
    timestamps: list[datetime]
    values: list[float]
    labels: Labels

    @property
    def category(self) -> str:
        return self.key.rsplit("/", 1)[0] if "/" in self.key else "."


def read_csv(path: Path) -> tuple[list[datetime], list[float]]:
    """Rows of a `timestamp,value` CSV, in file order. Timestamps may repeat or step back (a clock set back
    at a daylight-saving change): NAB scores rows in file order, and so do we."""
    timestamps: list[datetime] = []
    values: list[float] = []
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["timestamp", "value"]:
                raise DataError(f"{path}:1: expected header 'timestamp,value', got {header!r}")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != 2:
                    raise DataError(f"{path}:{line}: expected 2 fields, got {len(row)}: {row!r}")
                try:
                    at = datetime.fromisoformat(row[0].strip())
                    value = float(row[1])
                except ValueError as e:
                    raise DataError(f"{path}:{line}: {e}") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}:{line}: value {row[1]!r} is not a finite number")
                timestamps.append(at)
                values.append(value)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: {e}") from None
    return timestamps, values


def read_windows(path: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """The windows file: {relative path: [[start, end], ...]} with ISO timestamps."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping file paths to window lists")
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for key, pairs in raw.items():
        try:
            windows[key] = [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in pairs]
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: bad windows for {key!r}: {e}") from None
    return windows


def load_corpus(data_dir: Path, windows_file: Path) -> list[NabFile]:
    """Every CSV under data_dir with its windows, sorted by key; DataError if the two disagree."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory")
    windows = read_windows(windows_file)
    csvs = {p.relative_to(data_dir).as_posix(): p for p in sorted(data_dir.rglob("*.csv"))}
    problems = [f"{data_dir / key}: no entry in {windows_file}" for key in csvs if key not in windows]
    problems += [
        f"{data_dir / key}: listed in {windows_file} but missing" for key in windows if key not in csvs
    ]
    if problems:
        raise DataError("\n".join(problems))
    files = []
    for key, path in csvs.items():
        timestamps, values = read_csv(path)
        try:
            labels = label_rows(len(values), window_rows(timestamps, windows[key]))
        except ValueError as e:
            raise DataError(f"{path}: {e}") from None
        files.append(NabFile(key, timestamps, values, labels))
    return files
