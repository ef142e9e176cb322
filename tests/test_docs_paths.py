"""Every project path the documentation names in backticks exists, so a move cannot leave the docs behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Top-level folders of the project: a backticked word starting with one of them names a file or folder here.
PREFIXES = ("autarky/", "activities/", "workflows/", "workers/", "schedules/", "tests/", "bench/", "docs/")
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`]+)`")
# Placeholders and patterns (`autarky/<capability>/`, `autarky/…`, `tests/test_*.py`) name no single path.
PLACEHOLDER = re.compile(r"[<>…*{}\[\]]")


def project_paths(text: str) -> set[str]:
    """The project paths in `text`'s inline code spans (fenced blocks are commands, read elsewhere)."""
    paths = set()
    for span in INLINE.findall(FENCED.sub("", text)):
        for word in span.split():
            word = word.strip(",;:()'\"")
            if word.startswith(PREFIXES) and not PLACEHOLDER.search(word):
                paths.add(word)
    return paths


def test_the_pattern_finds_paths_and_skips_placeholders() -> None:
    text = (
        "see `autarky/core/settings.py`, `python bench/nab.py --data DIR` and `tests/histories/`;\n"
        "not `autarky/<capability>/`, `autarky.toml`, `scaler/<kind>/<name>`, nor `autarky/…`\n"
        "```sh\nautarky worker  # docs/in-a-fence.md\n```\n"
    )
    assert project_paths(text) == {"autarky/core/settings.py", "bench/nab.py", "tests/histories/"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_backticked_path_exists(doc: Path) -> None:
    missing = sorted(p for p in project_paths(doc.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"
