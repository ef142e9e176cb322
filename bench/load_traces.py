"""Load traces for bench/scaling.py: a timestamp,value CSV (NAB's format) read and resampled to minutes,
with one-line errors that name the file and line."""

from __future__ import annotations

import csv
import glob
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

NAB_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab" / "data"
# Load-like NAB series: machine metrics (CPU, requests, network, disk) and event volumes (tweets); the
# artificial ones without anomalies include a flat and a noisy steady load. Not load: ad prices, road
# traffic speeds and travel times, the artificial series with anomalies (one goes negative).
DEFAULT_TRACES = ("realAWSCloudwatch/*.csv", "realTweets/*.csv", "artificialNoAnomaly/*.csv")
STEP = timedelta(minutes=1)
MAX_STEPS = 5_000_000  # about 9.5 years of minutes: longer traces are refused, not simulated for hours


class TraceError(Exception):
    """A trace that cannot be replayed; the message names the file (and line) and the problem."""


# ------------------------------------------------------------------------------------------ traces
@dataclass(frozen=True)
class Trace:
    name: str
    demand: list[float]  # per step (minute)
    rows: int

    @property
    def minutes(self) -> int:
        return len(self.demand)


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601 (NAB's `2014-04-10 00:04:00`) or Unix seconds; naive UTC, so that any two subtract."""
    text = text.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:
            seconds = float(text)
            return (
                datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None) if math.isfinite(seconds) else None
            )
        except (ValueError, OverflowError, OSError):
            return None
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def read_trace(path: Path) -> tuple[list[datetime], list[float]]:
    """Rows of a `timestamp,value` CSV in file order (timestamps may go backwards)."""
    timestamps: list[datetime] = []
    values: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in ("timestamp", "value") if c not in header]
            if missing:
                raise TraceError(
                    f"{path}:1: no column {' or '.join(map(repr, missing))} in header {header!r}"
                )
            t_col, v_col = header.index("timestamp"), header.index("value")
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise TraceError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
                at = parse_timestamp(row[t_col])
                if at is None:
                    raise TraceError(
                        f"{path}:{line}: timestamp {row[t_col]!r} is neither ISO 8601 nor seconds since 1970"
                    )
                try:
                    value = float(row[v_col])
                except ValueError:
                    raise TraceError(f"{path}:{line}: value {row[v_col]!r} is not a number") from None
                if not math.isfinite(value) or value < 0:
                    raise TraceError(f"{path}:{line}: value {row[v_col]!r} is not a demand (finite, >= 0)")
                timestamps.append(at)
                values.append(value)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TraceError(f"{path}: {e}") from None
    if len(values) < 2:
        raise TraceError(f"{path}: too few rows ({len(values)}); a trace needs at least 2")
    return timestamps, values


def to_steps(timestamps: Sequence[datetime], values: Sequence[float], step: timedelta = STEP) -> list[float]:
    """Demand per step: each row holds until the next; a step covered by several rows takes the highest."""
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(timestamps)]
    positive = [g for g in gaps if g > 0]
    typical = statistics.median(positive) if positive else step.total_seconds()
    durations = [g if g > 0 else typical for g in gaps] + [typical]
    size = step.total_seconds()
    demand: list[float] = []
    start = 0.0
    for value, duration in zip(values, durations, strict=True):
        end = start + duration
        first, last = int(start // size), max(int(start // size), math.ceil(end / size) - 1)
        if len(demand) < last + 1:
            demand.extend([-1.0] * (last + 1 - len(demand)))
        for k in range(first, last + 1):
            if value > demand[k]:
                demand[k] = value
        start = end
    return [max(d, 0.0) for d in demand]


def load_trace(path: Path, name: str | None = None) -> Trace:
    timestamps, values = read_trace(path)
    span = sum(max((b - a).total_seconds(), 0) for a, b in itertools.pairwise(timestamps))
    if span / STEP.total_seconds() > MAX_STEPS:
        raise TraceError(f"{path}: spans {span / 86400:.0f} days, too long to replay minute by minute")
    return Trace(name or path.name, to_steps(timestamps, values), len(values))


def default_traces(data_dir: Path) -> list[Path]:
    return sorted(Path(p) for pattern in DEFAULT_TRACES for p in glob.glob(str(data_dir / pattern)))
