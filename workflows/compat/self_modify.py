"""SelfModificationWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. Each function is called where its new path branches off.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.selfmod.policy import clears_bar, should_promote
    from autarky.selfmod.types import Interval

MEANINGFUL_BAR = "selfmod-meaningful-bar"


def promotes(gain: Interval, bar: float) -> bool:
    """Round 2 (release 30): the estimate reaches the bar and the lower bound is above 0 (`clears_bar`);
    before, the lower bound had to reach the bar, which the detector's decision part never allowed."""
    return clears_bar(gain, bar) if workflow.patched(MEANINGFUL_BAR) else should_promote(gain, bar)


LIVE_WATCH = "selfmod-live-watch"


def live_watch() -> bool:
    """Round 2 (release 30): the watch after a promotion tests the promoted version's live metric against
    the incumbent's before it (`_watch_live`); before, it re-ran the deterministic benchmark, which never
    changed. Called once a version is promoted."""
    return workflow.patched(LIVE_WATCH)
