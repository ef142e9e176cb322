"""This host's agent repository as a cache of the store (activities/selfmod/agent_store.py): git objects
pushed after a commit is made and fetched by hash when one is missing, the pointer's history read from the
store and mirrored into `active.json` / `history.jsonl`, and a local history the store does not have yet
(the data of a release before the store, or of a writer without one) migrated into it when it continues
the store's (an empty store is continued by any history). Blocking: callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from activities.selfmod.version_errors import PointerConflict, VersionStoreError
from autarky.selfmod.types import ActivePointer

__all__ = ["PointerConflict", "fetch", "push", "sync", "write_atomically"]

# The AgentRepository (versions.py, which imports this module): its git, files and store.
AgentRepository = Any

_FULL_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
GITLINK = b"160000"  # a submodule's commit in a tree: not an object of this repository


def is_object_id(text: str) -> bool:
    return bool(_FULL_ID.match(text))


# ---------------------------------------------------------------------- objects


def _init(repo: AgentRepository) -> None:
    repo.repo.mkdir(parents=True, exist_ok=True)
    repo._git("init", "--quiet", "--bare", "--initial-branch=main", ".")  # harmless when it exists


def local_objects(repo: AgentRepository, oids: list[str]) -> set[str]:
    """Those of `oids` this host's repository holds."""
    if not oids or not repo.repo.exists():
        return set()
    out = repo._git("cat-file", "--batch-check", input="".join(f"{o}\n" for o in oids))
    return {line.split()[0] for line in out.splitlines() if line and not line.endswith(" missing")}


def read_objects(repo: AgentRepository, oids: list[str]) -> list[tuple[str, str, bytes]]:
    """(oid, type, raw content) of each object, as git stores it (`git cat-file --batch`)."""
    out = repo._git_bytes("cat-file", "--batch", input="".join(f"{o}\n" for o in oids).encode())
    found, pos = [], 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        oid, kind, size = out[pos:end].decode().split()
        start = end + 1
        found.append((oid, kind, out[start : start + int(size)]))
        pos = start + int(size) + 1
    return found


def push(repo: AgentRepository, *revs: str) -> int:
    """Store every object reachable from `revs` ("--all": every ref) the store lacks; how many were new."""
    assert repo.store is not None
    if not repo.repo.exists():
        return 0
    listing = repo._git("rev-list", "--objects", *revs)
    oids = list(dict.fromkeys(line.split(" ", 1)[0] for line in listing.splitlines() if line))
    missing = [o for o in oids if o not in repo.store.present(oids)]
    return repo.store.put(read_objects(repo, missing)) if missing else 0


def _children(kind: str, data: bytes, width: int) -> list[str]:
    if kind == "commit":
        header = data.split(b"\n\n", 1)[0].decode()
        return [line.split()[1] for line in header.splitlines() if line.startswith(("tree ", "parent "))]
    if kind != "tree":
        return []
    out, i, raw = [], 0, width // 2
    while i < len(data):
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        if data[i:space] != GITLINK:
            out.append(data[nul + 1 : nul + 1 + raw].hex())
        i = nul + 1 + raw
    return out


def fetch(repo: AgentRepository, commit: str) -> bool:
    """Write `commit` and every object it needs (its tree, files and ancestors) from the store into this
    host's repository, each child before its parent; False when the store does not know the commit."""
    assert repo.store is not None
    if not is_object_id(commit):
        return False
    _init(repo)
    collected: dict[str, tuple[str, bytes]] = {}
    pending = [commit]
    while pending:
        absent = [o for o in dict.fromkeys(pending) if o not in collected]
        absent = [o for o in absent if o not in local_objects(repo, absent)]
        if not absent:
            break
        got = repo.store.get(absent)
        lacking = sorted(set(absent) - set(got))
        if commit in lacking:
            return False
        if lacking:
            raise VersionStoreError(
                f"the store lacks object {lacking[0]} of commit {commit[:12]} of {repo.agent}"
            )
        collected.update(got)
        pending = [c for oid, (kind, data) in got.items() for c in _children(kind, data, len(oid))]
    for oid in _post_order(collected, commit):
        kind, data = collected[oid]
        written = repo._git_bytes("hash-object", "-w", "-t", kind, "--stdin", input=data).decode().strip()
        if written != oid:
            raise VersionStoreError(f"stored object {oid} of {repo.agent} hashes to {written}: it is damaged")
    repo._git("update-ref", f"refs/fetched/{commit}", commit)  # reachable: never pruned
    return True


def _post_order(collected: dict[str, tuple[str, bytes]], root: str) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        oid, children_done = stack.pop()
        if children_done:
            order.append(oid)
            continue
        if oid in seen or oid not in collected:
            continue
        seen.add(oid)
        stack.append((oid, True))
        kind, data = collected[oid]
        stack.extend((c, False) for c in _children(kind, data, len(oid)) if c not in seen)
    return order


# ---------------------------------------------------------------------- pointers


def local_history(repo: AgentRepository) -> list[ActivePointer]:
    """The history this host's files hold, ending with `active.json` (a crash between the two writes of a
    writer without the store leaves the history a line ahead or the pointer one behind it)."""
    out: list[ActivePointer] = []
    try:
        lines = repo.history_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in filter(str.strip, lines):
        try:
            out.append(ActivePointer.model_validate_json(line))
        except ValidationError:
            continue  # a damaged mirror line: the store's history is the truth
    pointer = repo._read_pointer()
    if pointer is not None and (not out or out[-1] != pointer):
        out.append(pointer)
    return out


def sync(repo: AgentRepository) -> list[ActivePointer]:
    """The agent's pointer history from the store, after migrating what only this host's files hold, and
    mirrored into them."""
    store = repo.store
    assert store is not None
    truth = store.history(repo.agent)
    local = local_history(repo) if repo.pointer_path.exists() or repo.history_path.exists() else []
    if len(local) > len(truth) and local[: len(truth)] == truth:
        push(repo, "--all")  # every version and candidate this host made, before the pointers naming them
        # Another host may move first: then its history is the truth, ours is kept aside (_mirror).
        with contextlib.suppress(PointerConflict):
            store.append(repo.agent, len(truth), local[len(truth) :])
        truth = store.history(repo.agent)
    if truth and local != truth:
        _mirror(repo, local, truth)
    return truth


def _mirror(repo: AgentRepository, local: list[ActivePointer], truth: list[ActivePointer]) -> None:
    if local and local != truth[: len(local)] and repo.history_path.exists():
        # Changes only this host's files held, which the store's history does not continue: kept for a person.
        shutil.copyfile(repo.history_path, repo.history_path.with_suffix(".jsonl.diverged"))
    write_atomically(repo.history_path, "".join(p.model_dump_json() + "\n" for p in truth))
    write_atomically(repo.pointer_path, truth[-1].model_dump_json(indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
