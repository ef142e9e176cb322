"""Which version of an agent the product runs here: code that runs is code that was measured.

An agent with live code (the relevance scorer) runs its active version's own code in the sandbox
(activities/selfmod/live_code.py). One without (the anomaly detector, which runs in the autopilot's workflow
code) can only run the sources this worker was built from, so it runs a version's parameters only where
that version's sources are this worker's: otherwise the newest version in the agent's history whose sources
are (or the shipped defaults when none is), and the active one waits for a release, a worker built from
its code, which then runs it. Its parameters are never applied to other code.

Blocking (git, the store); activities and the CLI call it in a thread or a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from activities.selfmod.git_repo import git_blob_id
from activities.selfmod.shipped import shipped_text
from activities.selfmod.versions import BOOTSTRAP, RELEASE, AgentRepository, read_active_pointer
from autarky.selfmod.types import ActivePointer, AgentSpec

if TYPE_CHECKING:
    from activities.selfmod.agent_store import AgentStore

# Versions nobody chose: some release's defaults, which this release's own defaults replace.
NOBODY_CHOSE = (BOOTSTRAP, RELEASE)
_MAX_CACHED = 1024
# (repository, commit) → the blob id of each file: a commit's content never changes.
_blob_cache: dict[tuple[str, str], dict[str, str]] = {}


@dataclass(frozen=True)
class RunningVersion:
    """What the product runs: `pointer` (None: the shipped defaults), and the active version when it
    waits for a release because its code is not this worker's."""

    pointer: ActivePointer | None
    waiting: ActivePointer | None = None

    def note(self) -> str | None:
        """Why the active version does not run here, and what does; None when it runs."""
        if self.waiting is None:
            return None
        runs = "the shipped defaults" if self.pointer is None else f"version {self.pointer.commit[:12]}"
        return (
            f"version {self.waiting.commit[:12]} waits for a release: its code differs from this "
            f"worker's (runs {runs} meanwhile)"
        )


def running_version(root: Path, spec: AgentSpec, store: AgentStore | None) -> RunningVersion:
    """The version of `spec`'s agent this worker runs (its sources: `shipped_text`)."""
    active = read_active_pointer(root, spec.name, store)
    if active is None or active.changed_by in NOBODY_CHOSE:
        return RunningVersion(None)
    if spec.live_code:  # its own code runs in the sandbox, whatever this worker's sources are
        return RunningVersion(active)
    repo = AgentRepository(root, spec.name, store)
    running = {path: shipped_text(path).encode("utf-8") for path in spec.source_files}
    if _same_code(repo, active.commit, running):
        return RunningVersion(active)
    history = store.history(spec.name) if store is not None else repo.history()
    for pointer in reversed(history):
        if pointer.changed_by not in NOBODY_CHOSE and _same_code(repo, pointer.commit, running):
            return RunningVersion(pointer, waiting=active)
    return RunningVersion(None, waiting=active)


def _same_code(repo: AgentRepository, commit: str, running: dict[str, bytes]) -> bool:
    """Whether each of the agent's sources at `commit` is byte for byte the one this worker runs."""
    key = (str(repo.repo), commit)
    blobs = _blob_cache.get(key)
    if blobs is None:
        blobs = repo.blob_ids(commit)  # fetched from the store when this host lacks the commit
        if len(_blob_cache) >= _MAX_CACHED:
            _blob_cache.clear()
        _blob_cache[key] = blobs
    return all(
        path in blobs and git_blob_id(data, blobs[path]) == blobs[path] for path, data in running.items()
    )
