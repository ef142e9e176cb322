"""Risk-based approval (autarky.models.promotion_risk, issue 27 "Risk-based approval"): each factor raises
the score as documented, they combine as a noisy-OR, and the default setting 0.5 asks a person for a
provider change, a +25 % cost or a guardrail nearly reached, not for a cheap same-provider variant."""

from __future__ import annotations

import pytest

from autarky.models.promotion_risk import promotion_risk

DEFAULT_SETTING = 0.5  # ABTestInput.approval_risk's intended default: a person is asked when score > it


def test_a_same_provider_same_cost_far_from_the_guardrails_is_no_risk() -> None:
    risk = promotion_risk("openai", "openai", 0.002, 0.002, 1.0)
    assert risk.score == 0.0 and risk.reasons == []
    assert promotion_risk("openai", "openai", 0.002, 0.001, 1.0).score == 0.0  # cheaper: no risk


def test_a_provider_change_alone_asks_a_person() -> None:
    risk = promotion_risk("openai", "anthropic", 0.002, 0.002, 1.0)
    assert risk.score == pytest.approx(0.6) and risk.score > DEFAULT_SETTING
    assert risk.reasons == ["provider changes from openai to anthropic (risk 0.60)"]
    assert (
        promotion_risk("OpenAI ", "openai", 0.002, 0.002, 1.0).score == 0.0
    )  # same provider, other spelling


def test_the_cost_factor_rises_with_the_relative_increase() -> None:
    scores = [
        promotion_risk("a", "a", 0.01, 0.01 * (1 + rise), 1.0).score
        for rise in (0.05, 0.10, 0.20, 0.25, 0.50)
    ]
    assert scores == sorted(scores)
    assert scores[2] == pytest.approx(0.5)  # +20 % is the half-risk point
    assert scores[1] == pytest.approx(1 - 2**-0.5) and scores[1] < DEFAULT_SETTING
    assert scores[3] > DEFAULT_SETTING
    free_to_paid = promotion_risk("local", "local", 0.0, 0.001, 1.0)
    assert free_to_paid.score == 1.0 and "rises from nothing" in free_to_paid.reasons[0]
    assert (
        "cost per call rises by 25.0 % (0.01 → 0.0125) (risk 0.58)"
        in promotion_risk("a", "a", 0.01, 0.0125, 1.0).reasons
    )


def test_a_thin_guardrail_margin_raises_the_score() -> None:
    scores = [promotion_risk("a", "a", 0.01, 0.01, margin).score for margin in (1.0, 0.7, 0.5, 0.29, 0.0)]
    assert scores == pytest.approx([0.0, 0.09, 0.25, 0.5041, 1.0])
    assert scores[3] > DEFAULT_SETTING > scores[2]
    risk = promotion_risk("a", "a", 0.01, 0.01, 0.2)
    assert risk.reasons == ["only 20 % of a guardrail's allowance left (risk 0.64)"]
    unknown = promotion_risk("a", "a", 0.01, 0.01, None)
    assert unknown.score == 0.0 and unknown.reasons == ["no guardrail was measured (risk not counted)"]


def test_factors_combine_as_a_noisy_or() -> None:
    # +10 % cost (0.29) and 60 % of an allowance used (0.36): neither alone asks, together they do.
    cost_only = promotion_risk("a", "a", 0.01, 0.011, 1.0).score
    margin_only = promotion_risk("a", "a", 0.01, 0.01, 0.4).score
    both = promotion_risk("a", "a", 0.01, 0.011, 0.4)
    assert cost_only < DEFAULT_SETTING and margin_only < DEFAULT_SETTING
    assert both.score == pytest.approx(1 - (1 - cost_only) * (1 - margin_only))
    assert both.score > DEFAULT_SETTING and len(both.reasons) == 2
    everything = promotion_risk("openai", "anthropic", 0.01, 0.02, 0.1)
    assert everything.score == pytest.approx(1 - 0.4 * 2**-5 * (1 - 0.81))
    assert 0 <= everything.score <= 1 and len(everything.reasons) == 3
    assert everything.text().startswith("risk 1.00: provider changes")


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="challenger_cost_per_call"):
        promotion_risk("a", "a", 0.01, -1.0, 0.5)
    with pytest.raises(ValueError, match="guardrail_margin"):
        promotion_risk("a", "a", 0.01, 0.01, 1.5)
