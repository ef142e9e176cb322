"""Sticky traffic routing of a model slot's calls to its variants (pure: safe in workflows).

A routing key (a user, an item, a request id) is hashed with the slot name into a number u, uniform in
[0, 1): ``sha256(slot + "\\0" + key)``, its first 53 bits over 2**53. A test salts the hash (``sha256(slot
+ "\\0" + salt + "\\0" + key)``, e.g. with its workflow id) so that each test of a slot draws its own
challenger keys instead of sending the same users to every challenger; the empty salt is the unsalted
hash, so slots routed before salts existed keep their positions. The variants, sorted by name, take
consecutive intervals of [0, 1) as wide as their shares; the key goes to the variant whose interval holds
u. So:

- the same slot, key and split always give the same variant (sticky), on every machine and Python;
- over many keys each variant gets its share (the hash is uniform); a zero share gets nothing;
- with two variants (incumbent and challenger) changing the split moves exactly the difference: the
  challenger's interval grows from its end of [0, 1) (the bottom if its name sorts first, the top if
  last), so going 1 % → 10 % keeps every key of the 1 % and adds 9 % more, and going back returns them.
  With more variants, a change of one share moves only keys at the boundaries that moved.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

SPLIT_TOLERANCE = 1e-9


def validate_split(split: Mapping[str, float]) -> dict[str, float]:
    """The split as a dict; ValueError unless it names at least one variant, every share is a finite
    number in [0, 1] and the shares sum to 1 (within SPLIT_TOLERANCE)."""
    if not split:
        raise ValueError("a split must name at least one variant")
    for name, share in split.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a split's variant names must be non-empty strings, got {name!r}")
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
            raise ValueError(f"share of {name!r} must be a number, got {share!r}")
        if not 0 <= share <= 1:
            raise ValueError(f"share of {name!r} must be between 0 and 1, got {share!r}")
    total = math.fsum(split.values())
    if abs(total - 1) > SPLIT_TOLERANCE:
        raise ValueError(f"split shares must sum to 1, got {total!r} ({dict(split)})")
    return {name: float(share) for name, share in split.items()}


def key_position(slot: str, routing_key: str, salt: str = "") -> float:
    """Where a routing key falls in [0, 1) for `slot` (and `salt`): uniform, and the same everywhere."""
    text = f"{slot}\0{salt}\0{routing_key}" if salt else f"{slot}\0{routing_key}"
    digest = hashlib.sha256(text.encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def choose_variant(slot: str, split: Mapping[str, float], routing_key: str, salt: str = "") -> str:
    """The variant of `slot` that serves `routing_key` under `split` and `salt` (sticky; see the module
    doc)."""
    if not slot:
        raise ValueError("slot must not be empty")
    if not isinstance(routing_key, str):
        raise ValueError(f"routing key must be a string, got {routing_key!r}")
    shares = validate_split(split)
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a string, got {salt!r}")
    u = key_position(slot, routing_key, salt)
    cumulative = 0.0
    chosen = None
    for name in sorted(shares):
        share = shares[name]
        if share <= 0:
            continue
        cumulative += share
        chosen = name
        if u < cumulative:
            return name
    assert chosen is not None  # the shares sum to 1, so one is positive
    return chosen  # u beyond a cumulative sum rounded just below 1: the last variant with a share
