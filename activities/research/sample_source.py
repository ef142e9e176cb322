"""The built-in sample source: synthetic papers and repositories shipped with Autarky (sample_items.py).

A stack without network (the embedded default a newcomer meets) finds nothing on arXiv or GitHub; with
these it still shows the whole loop: items, analyses, an experiment waiting for approval, a digest. Every
item is labelled: source "sample", "(sample)" in its title, no URL. Ids are stable, so gathering them again
stores nothing new.
"""

from __future__ import annotations

from activities.research.sample_items import SAMPLE_ITEMS
from autarky.research.items import ItemIn
from autarky.research.types import SAMPLE

LABEL = " (sample)"


def sample_items() -> list[ItemIn]:
    return [
        ItemIn(
            kind="paper" if kind == "paper" else "repository",
            source=SAMPLE,
            source_id=f"sample-{item_id}",
            title=title + LABEL,
            authors=list(authors),
            abstract=abstract,
            url="",
        )
        for kind, item_id, title, authors, abstract in SAMPLE_ITEMS
    ]
