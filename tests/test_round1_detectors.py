"""Round 1's detectors are kept for workflow histories recorded before Analyze round 2 (patch
`analyze-round-2`): with `round1_detectors`, today's code must give exactly the findings the round-1 code
gave. The expected findings were recorded by running this module's scenario through the round-1 code:

    git archive e5972a1 autarky | tar -x -C /tmp/round1
    PYTHONPATH=/tmp/round1 python tests/test_round1_detectors.py > tests/fixtures/round1_findings.json

The scenario holds what round 2 changes: CPU spikes and a burst, 1 ms latency steps, a disk that steps
and then fills, a leaking and a warming-up process, a NaN, and the host's clock set back 45 minutes.
"""

from __future__ import annotations

import json
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "round1_findings.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIB = 1024 * 1024
SAMPLES = 600


def scenario() -> list[dict[str, Any]]:
    rng = random.Random(1)
    points = []
    for i in range(SAMPLES):
        minute = i if i < 400 else i - 45  # at sample 400 the clock is set back 45 minutes
        # Spikes (one five minutes before the clock step, so a held finding meets it) and a burst.
        cpu = 20 + rng.gauss(0, 2) + (70 if i in (250, 395, 520) else 0) + (80 if 300 <= i < 305 else 0)
        disk = 70 + (8 if i >= 200 else 0) + (0.05 * (i - 450) if i >= 450 else 0) + rng.gauss(0, 0.05)
        points.append(
            {
                "at": (T0 + timedelta(minutes=minute)).isoformat(),
                "cpu_percent": math.nan if i == 350 else round(cpu, 1),
                "memory_percent": round(40 + rng.gauss(0, 0.5), 1),
                "disk_percent": round(disk, 1),
                # 1-2 ms, then one 6 ms step: news at no resolution, small at 1 ms.
                "network_latency_ms": float(rng.choice([1, 1, 1, 2]) + (5 if i == 500 else 0)),
                "memory_total_bytes": 8 * 1024 * MIB,
                "process_rss_bytes": {
                    "pool member 1": int((200 + 0.4 * i + rng.uniform(-3, 3)) * MIB),
                    "autarky 2": int((150 + 40 * math.log1p(i / 20) + rng.uniform(-2, 2)) * MIB),
                },
            }
        )
    return points


def findings(settings: Any) -> list[list[list[Any]]]:
    """Every fifth sample: the findings then (kind, metric, subject, rounded value and score)."""
    from autarky.autopilot.policy.detection import detector_findings, observe
    from autarky.autopilot.types import DetectionState, MetricPoint

    state = DetectionState()
    window: list[Any] = []
    out = []
    for i, raw in enumerate(scenario()):
        point = MetricPoint.model_validate(raw)
        window = [*window, point][-60:]
        observe(state, point, settings)
        if i % 5 == 4:
            found = detector_findings(state, window, settings, point.at)
            out.append(
                sorted(
                    [
                        f.kind,
                        f.metric,
                        f.subject,
                        round(f.value, 3),
                        None if f.score is None else round(f.score, 4),
                    ]
                    for f in found
                )
            )
    return out


def round1_settings() -> Any:
    """Settings as histories recorded before round 2 carry them (the defaults of that time)."""
    from autarky.autopilot.detectors.anomaly import AnomalyConfig
    from autarky.autopilot.settings import AnalysisSettings

    return AnalysisSettings(
        anomaly=AnomalyConfig(window=128, z_half=3.0, min_history=100),
        anomaly_threshold=0.75,
        trend_spacing=timedelta(minutes=1),
    )


def test_round1_detectors_give_the_findings_round1_gave() -> None:
    from autarky.autopilot.policy.detection import round1_detectors

    expected = json.loads(FIXTURE.read_text())
    assert any(step for step in expected), "the recorded scenario found nothing: it would prove nothing"
    assert findings(round1_detectors(round1_settings())) == expected


ROUND2_SWITCHES = ["memory", "metric_resolution", "robust_trends", "follow_clock_steps"]


@pytest.mark.parametrize("switch", ROUND2_SWITCHES)
def test_each_round1_setting_matters_on_this_scenario(switch: str) -> None:
    # Turning any one of round1_detectors' settings back to round 2 changes the findings: the scenario
    # exercises each of them, so the fixture cannot be matched by accident.
    from autarky.autopilot.policy.detection import round1_detectors

    round2 = round1_settings()
    round1 = round1_detectors(round2)
    if switch == "memory":
        one_back = round1.model_copy(update={"anomaly": round2.anomaly})
    else:
        one_back = round1.model_copy(update={switch: getattr(round2, switch)})
    assert findings(one_back) != json.loads(FIXTURE.read_text())


if __name__ == "__main__":
    json.dump(findings(round1_settings()), sys.stdout)
