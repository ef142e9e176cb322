"""Sticky routing of a slot's calls: same key, same variant; shares kept; minimal moves on a change."""

from __future__ import annotations

from collections import Counter

import pytest

from autarky.models.routing import choose_variant, key_position, validate_split

KEYS = [f"user-{i}" for i in range(10_000)]


def _route(split: dict[str, float], slot: str = "slot") -> list[str]:
    return [choose_variant(slot, split, key) for key in KEYS]


def test_sticky_and_deterministic() -> None:
    split = {"a": 0.5, "b": 0.3, "c": 0.2}
    first = _route(split)
    assert _route(dict(reversed(list(split.items())))) == first  # the dict's order does not matter
    assert choose_variant("slot", split, "user-42") == first[42]
    # A known value, so that another machine or Python routes the same: sha256, not hash().
    assert key_position("slot", "user-42") == 0.22406861717337445
    assert choose_variant("slot", {"b": 0.5, "a": 0.5}, "user-42") == "a"  # "a" holds [0, 0.5)


def test_the_slot_name_reshuffles_keys() -> None:
    split = {"a": 0.5, "b": 0.5}
    same = sum(x == y for x, y in zip(_route(split, "one"), _route(split, "two"), strict=True))
    assert 4_500 < same < 5_500  # independent: about half agree


@pytest.mark.parametrize(
    "split", [{"a": 0.5, "b": 0.5}, {"a": 0.9, "b": 0.1}, {"a": 0.6, "b": 0.3, "c": 0.1}, {"x": 1.0}]
)
def test_proportions(split: dict[str, float]) -> None:
    counts = Counter(_route(split))
    for name, share in split.items():
        assert counts[name] / len(KEYS) == pytest.approx(share, abs=0.015), counts


def test_zero_share_never_chosen() -> None:
    counts = Counter(_route({"a": 0.0, "b": 1.0, "c": 0.0}))
    assert counts == {"b": len(KEYS)}


@pytest.mark.parametrize(("incumbent", "challenger"), [("bm25", "bm25-title"), ("zeta", "alpha")])
def test_ramping_a_challenger_keeps_its_keys(incumbent: str, challenger: str) -> None:
    """1 % → 10 %: every key of the 1 % stays; 9 % more move, all from the incumbent; and back again."""
    small = _route({incumbent: 0.99, challenger: 0.01})
    large = _route({incumbent: 0.90, challenger: 0.10})
    was = {k for k, v in zip(KEYS, small, strict=True) if v == challenger}
    now = {k for k, v in zip(KEYS, large, strict=True) if v == challenger}
    assert was <= now
    assert len(now - was) / len(KEYS) == pytest.approx(0.09, abs=0.01)
    assert _route({incumbent: 0.99, challenger: 0.01}) == small  # stepping back returns the same keys


def test_changing_one_share_moves_only_the_needed_fraction() -> None:
    before = _route({"a": 0.5, "b": 0.3, "c": 0.2})
    after = _route({"a": 0.5, "b": 0.4, "c": 0.1})  # b takes 10 % from c; a is untouched
    moved = [(x, y) for x, y in zip(before, after, strict=True) if x != y]
    assert set(moved) == {("c", "b")}
    assert len(moved) / len(KEYS) == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({}, "at least one"),
        ({"a": 0.5, "b": 0.4}, "sum to 1"),
        ({"a": 1.5, "b": -0.5}, "between 0 and 1"),
        ({"a": float("nan")}, "must be a number"),
        ({"a": True}, "must be a number"),
        ({"": 1.0}, "non-empty"),
    ],
)
def test_bad_splits_refused(split: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_variant("slot", split, "key")


def test_tolerance_and_other_bad_input() -> None:
    assert validate_split({"a": 0.1, "b": 0.2, "c": 0.7}) == {"a": 0.1, "b": 0.2, "c": 0.7}  # 0.1+0.2 ≠ 0.3
    assert validate_split({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    with pytest.raises(ValueError, match="sum to 1"):
        validate_split({"a": 0.5, "b": 0.5 + 1e-6})
    with pytest.raises(ValueError, match="slot"):
        choose_variant("", {"a": 1.0}, "key")
    with pytest.raises(ValueError, match="routing key"):
        choose_variant("slot", {"a": 1.0}, 42)  # type: ignore[arg-type]


def test_the_empty_salt_keeps_todays_positions() -> None:
    """Slots routed before salts existed (salt "") keep every key where it was: the pinned value above,
    and the unsalted hash for every key."""
    assert key_position("slot", "user-42", "") == 0.22406861717337445
    split = {"a": 0.9, "b": 0.1}
    assert [choose_variant("slot", split, key, "") for key in KEYS] == _route(split)


def test_each_salt_draws_its_own_challenger_keys() -> None:
    """Two tests of one slot at 10 %: salted by their ids, their challenger keys overlap by chance only
    (about 10 % of each), where unsalted they would be the same keys."""
    split = {"incumbent": 0.9, "challenger": 0.1}

    def chosen(salt: str) -> set[str]:
        return {k for k in KEYS if choose_variant("slot", split, k, salt) == "challenger"}

    first, second = chosen("abtest/slot/one"), chosen("abtest/slot/two")
    assert len(first) / len(KEYS) == pytest.approx(0.1, abs=0.015)
    assert len(first & second) / len(first) == pytest.approx(0.1, abs=0.04)
    assert chosen("") == chosen("") and chosen("abtest/slot/one") == first  # sticky per salt
    # A salted ramp keeps its keys too: 1 % → 10 % under the same salt.
    small = {k for k in KEYS if choose_variant("slot", {"i": 0.99, "c": 0.01}, k, "t1") == "c"}
    large = {k for k in KEYS if choose_variant("slot", {"i": 0.9, "c": 0.1}, k, "t1") == "c"}
    assert small <= large
    with pytest.raises(ValueError, match="salt"):
        choose_variant("slot", split, "key", None)  # type: ignore[arg-type]
