"""The code of an agent's active version, for products that run it (the research analyser's relevance
scorer): exported once per commit as a tree the sandbox is lent read-only, and checked against git before
every run. Nothing here imports or executes it: it runs only in the sandbox
(activities/research/sandboxed_scorer.py).

The tree is the worker's own `autarky` package with the version's files over it, under
`<data_dir>/agents/<agent>/code/<commit>/`. Built in a temporary directory and renamed into place, so a
concurrent build or a crash never leaves half a tree where a run would find it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from activities.selfmod.git_repo import git_blob_id
from activities.selfmod.versions import AgentRepository, VersionStoreError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TamperedCode(VersionStoreError):
    """An exported file is not what the version's commit holds: it is refused, never run."""


def differs_from_shipped(repo: AgentRepository, commit: str, source_files: list[str]) -> bool:
    """Whether the version's sources are other than the ones this release ships (PROJECT_ROOT)."""
    for path in source_files:
        shipped = PROJECT_ROOT / path
        try:
            if repo.read_file(commit, path) != shipped.read_text(encoding="utf-8"):
                return True
        except (VersionStoreError, OSError):
            return True
    return False


def export_code(repo: AgentRepository, commit: str, source_files: list[str]) -> tuple[Path, dict[str, str]]:
    """The version's code tree (built on first use) and the blob id each of its own files must hash to."""
    blobs = repo.blob_ids(commit)
    expected = {path: blobs[path] for path in source_files if path in blobs}
    missing = sorted(set(source_files) - set(expected))
    if missing:
        raise VersionStoreError(f"{commit[:12]} of agent {repo.agent} lacks {', '.join(missing)}")
    tree = repo.dir / "code" / commit
    if tree.is_dir():
        return tree, expected
    tree.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{commit[:12]}-"))
    try:
        os.chmod(building, 0o755)  # a root worker's sandbox runs as another uid, which must read it
        shutil.copytree(
            PROJECT_ROOT / "autarky", building / "autarky", ignore=shutil.ignore_patterns("__pycache__")
        )
        files = repo.files(commit)
        for path in source_files:
            target = building / path
            if not target.resolve().is_relative_to(building.resolve()):
                raise VersionStoreError(f"{path} would be written outside {tree}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[path].encode("utf-8"))
        try:
            building.rename(tree)
        except OSError:  # another thread or worker built it first: theirs is the same commit
            if not tree.is_dir():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return tree, expected


def verify_code(tree: Path, expected: dict[str, str]) -> None:
    """Each of the version's files in `tree` hashes to its blob id; TamperedCode names the first that
    does not (changed, missing, or not a regular file)."""
    for path, blob in expected.items():
        file = tree / path
        try:
            if file.is_symlink() or not file.is_file():
                raise TamperedCode(f"{file} is not a regular file")
            data = file.read_bytes()
        except OSError as error:
            raise TamperedCode(f"{file} cannot be read: {error}") from error
        if git_blob_id(data, blob) != blob:
            raise TamperedCode(f"{file} does not match blob {blob[:12]} of its commit: it was changed")
