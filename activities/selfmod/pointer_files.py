"""One agent's pointer files on this host: the truth without a store, its mirrors with one (agent_sync.py).

- `active.json`: the `ActivePointer`, replaced atomically; the product reads only this.
- `history.jsonl`: one `ActivePointer` per line, appended on every pointer change, before the pointer is
  replaced (a crash in between leaves a duplicate line on retry, never a missing one; rollbacks rely on it).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from activities.selfmod.agent_sync import write_atomically
from activities.selfmod.version_errors import VersionStoreError
from autarky.selfmod.types import ActivePointer


def read_pointer(path: Path, agent: str, repo: Path) -> ActivePointer | None:
    """The pointer in `path`, None when there is none; VersionStoreError when it is unreadable, invalid or
    names another agent than `agent` (whose repository `repo` the message names as untouched)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VersionStoreError(f"cannot read {path}: {exc}") from exc
    try:
        pointer = ActivePointer.model_validate_json(text)
    except ValidationError as exc:
        raise VersionStoreError(
            f"{path} is not a valid active-version pointer (fix or restore it; the "
            f"repository {repo} is untouched): {exc.errors()[0]['msg']}"
        ) from exc
    if pointer.agent != agent:
        raise VersionStoreError(f"{path} names agent {pointer.agent!r}, not {agent!r}")
    return pointer


def read_history(path: Path) -> list[ActivePointer]:
    """Every pointer change in `path`, oldest first ([] without the file); a bad line is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out: list[ActivePointer] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(ActivePointer.model_validate_json(line))
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            raise VersionStoreError(f"{path} line {number} is not a pointer: {message}") from exc
    return out


def record(history_path: Path, pointer_path: Path, pointer: ActivePointer) -> None:
    """Log the change (fsynced), then let the product see it."""
    with open(history_path, "a", encoding="utf-8") as f:
        f.write(pointer.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
    write_atomically(pointer_path, pointer.model_dump_json(indent=2) + "\n")
