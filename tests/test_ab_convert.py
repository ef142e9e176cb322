"""The A/B test's pure helpers: deadlines in every phase, the challenger's refusal, the status in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autarky.models.ab_convert import challenger_refusal, current_details, deadline_reason, paused_so_far
from autarky.models.ab_types import ABTestInput, ABTestState, ABTestStatus
from autarky.models.types import SlotInfo, Variant

START = datetime(2026, 12, 1, tzinfo=UTC)


def _input(**fields: object) -> ABTestInput:
    return ABTestInput(slot="s", challenger="b", **fields)  # type: ignore[arg-type]


def test_the_deadline_holds_while_ramping_or_paused_and_counts_no_paused_time() -> None:
    input = _input(max_duration=timedelta(hours=2), max_pause=timedelta(hours=5))
    ramping = ABTestState(incumbent="a", started_at=START)  # no test_since: still ramping
    assert deadline_reason(input, ramping, 10, START + timedelta(hours=1)) is None
    assert "no decision within 2:00:00" in (
        deadline_reason(input, ramping, 10, START + timedelta(hours=2)) or ""
    )
    paused = ABTestState(incumbent="a", started_at=START, paused=True, paused_at=START + timedelta(hours=1))
    assert paused_so_far(paused, START + timedelta(hours=4)) == timedelta(hours=3)
    assert deadline_reason(input, paused, 10, START + timedelta(hours=4)) is None  # 1 h of testing
    assert "paused for longer" in (deadline_reason(input, paused, 10, START + timedelta(hours=6)) or "")


def test_the_sample_cap_holds_in_every_phase() -> None:
    input = _input(max_samples=500)
    state = ABTestState(incumbent="a", started_at=START)
    assert deadline_reason(input, state, 499, START) is None
    assert "500 samples per arm" in (deadline_reason(input, state, 500, START) or "")


def test_a_lease_shorter_than_two_periods_is_refused() -> None:
    with pytest.raises(ValueError, match="split_lease"):
        _input(evaluation_interval=timedelta(minutes=1), split_lease=timedelta(seconds=90))
    assert _input(evaluation_interval=timedelta(minutes=1)).lease == timedelta(minutes=10)
    assert _input(evaluation_interval=timedelta(minutes=5)).lease == timedelta(minutes=50)


def test_the_challenger_must_be_another_variant_of_the_slot() -> None:
    slot = SlotInfo(
        name="s",
        active="a",
        split={"a": 1.0},
        variants=[Variant(name=n, provider="external", model=n) for n in ("a", "b")],
        updated_at=START,
    )
    assert challenger_refusal(slot, "b") is None
    assert "has no variant 'c'" in (challenger_refusal(slot, "c") or "")
    assert "already the active variant" in (challenger_refusal(slot, "a") or "")


def test_the_current_details_name_state_arms_and_guardrails() -> None:
    status = ABTestStatus(
        workflow_id="abtest/s/b",
        slot="s",
        incumbent="a",
        challenger="b",
        share=0.1,
        metric="valid",
        direction="higher",
        decision="running",
        guardrails="held over the last 5 periods",
    )
    text = current_details(status)
    assert text.startswith("**running** · b vs a on valid (higher is better) · share 10%")
    assert "held over the last 5 periods" in text
    status.paused = True
    assert current_details(status).startswith("**paused**")
