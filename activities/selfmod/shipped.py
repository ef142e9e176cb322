"""The text an agent's file ships with: from this source tree for the declared agents, from the agent's
registration for one made by genesis (its module and tests are in the knowledge base, not in this tree)."""

from __future__ import annotations

from pathlib import Path

from autarky.selfmod.genesis import registry

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shipped_text(path: str) -> str:
    made = registry.file_text(path)
    return made if made is not None else (PROJECT_ROOT / path).read_text(encoding="utf-8")


def shipped_exists(path: str) -> bool:
    return registry.file_text(path) is not None or (PROJECT_ROOT / path).is_file()
