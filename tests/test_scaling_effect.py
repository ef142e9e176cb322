"""Judging a change of capacity by the work that waits after it (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autarky.scaling.effect import QueueLoad, judge_effect
from autarky.scaling.policy_types import ScalingPolicy

POLICY = ScalingPolicy(backlog_age_limit=timedelta(seconds=30))
WAITING = QueueLoad(backlog=40, backlog_age_seconds=120)


def test_a_growth_that_drains_the_wait_helped_and_measures_how_much() -> None:
    effect = judge_effect(POLICY, 2, 4, WAITING, QueueLoad(backlog=3, backlog_age_seconds=6))
    assert effect.helped and effect.improvement == pytest.approx(0.95)
    assert "2 → 4 helped" in effect.detail


def test_a_growth_after_which_the_work_still_waits_did_not_help() -> None:
    effect = judge_effect(POLICY, 2, 4, WAITING, QueueLoad(backlog=38, backlog_age_seconds=150))
    assert not effect.helped and effect.improvement == 0.0
    assert "did not help" in effect.detail


def test_a_halved_backlog_counts_as_help_even_while_the_oldest_still_waits() -> None:
    effect = judge_effect(POLICY, 2, 4, WAITING, QueueLoad(backlog=20, backlog_age_seconds=60))
    assert effect.helped


def test_a_shrink_that_leaves_work_waiting_hurt_and_one_that_does_not_saved_capacity() -> None:
    idle = QueueLoad(backlog=0, backlog_age_seconds=0)
    fine = judge_effect(POLICY, 4, 3, idle, idle)
    assert fine.helped and fine.improvement == pytest.approx(0.25)
    hurt = judge_effect(POLICY, 4, 1, idle, QueueLoad(backlog=9, backlog_age_seconds=45))
    assert not hurt.helped and hurt.improvement is None and "hurt" in hurt.detail
