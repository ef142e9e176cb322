"""Versions of an evolvable agent: a git repository per agent, and the pointer the product reads.

Layout under the data directory, one folder per agent:
- `repo/`: a bare git repository, written with plumbing (git_repo.py). `main` is the active version; every
  candidate has its own ref `refs/candidates/<run>/<key>`; every commit that was ever active keeps
  `refs/versions/<commit>`, so a rollback target can never be garbage-collected.
- `active.json` and `history.jsonl`: the `ActivePointer` the product reads and every change of it
  (pointer_files.py).
- `runs/<run>/<key>.diff`: each candidate's diff against its base.
- `.lock`: an `fcntl.flock` serialising every change, across threads and processes.

With a store (activities/selfmod/agent_store.py, in the knowledge base every host shares) the pointer and
its history live there, and so do the git objects of every version: the repository is this host's cache,
filled by hash from the store when a commit is missing and pushing the objects of every commit it makes;
`active.json` and `history.jsonl` are mirrors of the store. Local data of a release before the store
(or of a writer without one) is migrated into the store on first use: a local history that continues the
store's is appended to it (agent_sync.py).

Everything blocks (git runs as a subprocess); activities call these methods in a thread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from activities.selfmod import agent_sync, pointer_files
from activities.selfmod.git_repo import MAIN_REF, GitFailed, GitRepository, count_diff_lines
from activities.selfmod.version_errors import PointerConflict, VersionStoreError
from autarky.selfmod.types import ActivePointer, AgentVersion, Candidate, CandidateOrigin

if TYPE_CHECKING:
    from activities.selfmod.agent_store import AgentStore

PARAMETERS_FILE = "parameters.json"
BOOTSTRAP = "bootstrap"  # changed_by of the first version
RELEASE = "release"  # changed_by of a version a newer release's shipped defaults made (ensure)
# Agent sources that moved when the package was arranged by capability (issue 23): versions committed
# before keep them under the former path, which reads as the current one.
FORMER_PATHS = {
    "autarky/autopilot/detectors/anomaly.py": "autarky/detectors/anomaly.py",
    "autarky/research/relevance.py": "autarky/policy/relevance.py",
}
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


class VersionConflict(VersionStoreError):
    """The active version is not the one the caller expected: someone else changed it."""


class PatchRejected(VersionStoreError):
    """A candidate's patch does not apply to its base (or touches what it may not)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sanitise_run_id(run_id: str) -> str:
    """A run id as one readable path and ref component: "evolve/anomaly-detector/3" →
    "evolve-anomaly-detector-3"."""
    name = _UNSAFE_RE.sub("-", run_id.replace("/", "-"))
    name = re.sub(r"\.{2,}", ".", name).strip(".-")
    if name.endswith(".lock"):  # git reserves it for its own lock files
        name = name[: -len(".lock")] + "-lock"
    if not name:
        raise VersionStoreError(f"run id {run_id!r} has nothing usable as a ref name")
    return name


def _parameters_text(parameters: Mapping[str, float]) -> str:
    try:
        values = {name: float(parameters[name]) for name in sorted(parameters)}
        return json.dumps(values, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise VersionStoreError(f"parameters must be finite numbers: {exc}") from exc


def _check_path(path: str) -> None:
    """A project-relative file path: no absolute paths, no `..`, not the parameters file itself."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or "\\" in path or "\n" in path or "\t" in path:
        raise VersionStoreError(f"{path!r} is not a project-relative file path")
    if path == PARAMETERS_FILE:
        raise VersionStoreError(f"{PARAMETERS_FILE} is written from the parameters, not as a file")


class AgentRepository(GitRepository):
    """The versions of one agent. Cheap to construct; nothing touches the disk until a method is called."""

    def __init__(self, root: Path, agent: str, store: AgentStore | None = None) -> None:
        if not _KEY_RE.match(agent) or ".." in agent:
            raise VersionStoreError(f"agent name {agent!r} is not usable as a directory name")
        self.agent = agent
        super().__init__(Path(root) / agent)  # dir, repo and lock_path
        self.pointer_path = self.dir / "active.json"
        self.history_path = self.dir / "history.jsonl"
        self.runs_dir = self.dir / "runs"
        self.store = store  # None: this directory alone is the truth (one host, tests of the files)

    # ------------------------------------------------------------------ git

    def _resolve(self, commit: str) -> str:
        """A full commit id; VersionStoreError when it names no commit of this repository."""
        if not commit or commit.startswith("-"):
            raise VersionStoreError(f"{commit!r} is not a commit")
        for attempt in (1, 2):
            try:
                return self._git(
                    "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"
                ).strip()
            except GitFailed as exc:
                # Made on another host: fetched from the store by its hash, once.
                if attempt == 1 and self.store is not None and agent_sync.fetch(self, commit.lower()):
                    continue
                raise VersionStoreError(f"{commit!r} is not a commit of agent {self.agent}") from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ pointer and history

    def _read_pointer(self) -> ActivePointer | None:
        return pointer_files.read_pointer(self.pointer_path, self.agent, self.repo)

    def _current(self) -> tuple[ActivePointer | None, list[ActivePointer]]:
        """The active pointer and the history it ends (the store's, synced; else this host's files)."""
        if self.store is None:
            return self._read_pointer(), []
        history = agent_sync.sync(self)
        return (history[-1] if history else None), history

    def _change_pointer(
        self, pointer: ActivePointer, seen: list[ActivePointer] | None = None
    ) -> ActivePointer:
        """Keep the commit reachable, log the change, then let the product see it. With the store: its
        objects stored first, then the change, only if the history is still `seen` (VersionConflict)."""
        self._git("update-ref", f"refs/versions/{pointer.commit}", pointer.commit)
        if self.store is not None:
            agent_sync.push(self, pointer.commit)
            try:
                self.store.append(self.agent, len(seen or []), [pointer])
            except PointerConflict as exc:
                raise VersionConflict(
                    f"agent {self.agent}: the active version was changed on another host meanwhile ({exc}); "
                    "nothing was changed here, look at `autarky agents history` and try again"
                ) from exc
            agent_sync.sync(self)  # the mirror files
            return pointer
        pointer_files.record(self.history_path, self.pointer_path, pointer)
        return pointer

    # ------------------------------------------------------------------ public API

    def ensure(self, files: dict[str, str], parameters: dict[str, float], now: datetime) -> ActivePointer:
        """Bootstrap on first use (files plus parameters.json as the first commit on main); afterwards
        return the existing pointer, unless nobody ever changed it (bootstrap or release) and this
        release ships other files or parameters: then those become a release commit on top and the
        active version, so the product, the goal checks and evolutions all start from what ships."""
        for path in files:
            _check_path(path)
        with self._locked():
            existing, seen = self._current()
            if existing is not None:
                if existing.changed_by not in (BOOTSTRAP, RELEASE):
                    return existing
                try:
                    return self._follow_release(existing, files, parameters, now, seen)
                except VersionConflict:  # another host moved it first: theirs stands
                    return self.active()
            self.repo.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", "--initial-branch=main", ".")  # harmless when it exists
            # A crash after the commit but before the pointer: reuse that commit, do not fork main.
            commit = self._ref(MAIN_REF) or self._bootstrap_commit(files, parameters, now)
            pointer = ActivePointer(
                agent=self.agent,
                commit=commit,
                parameters=self.version(commit).parameters,
                previous=None,
                changed_at=now,
                changed_by=BOOTSTRAP,
                reason="first version",
            )
            try:
                return self._change_pointer(pointer, seen)
            except VersionConflict:  # another host bootstrapped it at the same time: theirs stands
                return self.active()

    def _follow_release(
        self,
        existing: ActivePointer,
        files: dict[str, str],
        parameters: dict[str, float],
        now: datetime,
        seen: list[ActivePointer],
    ) -> ActivePointer:
        with self._index(self._resolve(existing.commit)) as index:
            self._stage(index, {**files, PARAMETERS_FILE: _parameters_text(parameters)})
            tree = self._git("write-tree", index=index).strip()
        if tree == self._git("rev-parse", f"{self._resolve(existing.commit)}^{{tree}}").strip():
            return existing
        stamp = now.isoformat()
        message = f"release defaults of {self.agent}\n"
        commit = self._commit(
            tree, message, [existing.commit], env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        )
        self._move_main(commit)
        pointer = ActivePointer(
            agent=self.agent,
            commit=commit,
            parameters=self.version(commit).parameters,
            previous=existing.commit,
            changed_at=now,
            changed_by=RELEASE,
            reason="this release ships other defaults",
        )
        return self._change_pointer(pointer, seen)

    def _bootstrap_commit(self, files: dict[str, str], parameters: dict[str, float], now: datetime) -> str:
        with self._index(None) as index:
            self._stage(index, {**files, PARAMETERS_FILE: _parameters_text(parameters)})
            tree = self._git("write-tree", index=index).strip()
        stamp = now.isoformat()
        commit = self._commit(
            tree,
            f"bootstrap {self.agent}\n",
            [],
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        self._git("update-ref", MAIN_REF, commit, "")  # "": only if main does not exist yet
        return commit

    def active(self) -> ActivePointer:
        pointer, _ = self._current()
        if pointer is None:
            where = (
                "the knowledge base holds no version of it"
                if self.store
                else f"{self.pointer_path} does not exist"
            )
            raise VersionStoreError(
                f"agent {self.agent} is not bootstrapped: {where} "
                "(the first self-modification run creates it)"
            )
        return pointer

    def version(self, commit: str) -> AgentVersion:
        full = self._resolve(commit)
        text = self.read_file(full, PARAMETERS_FILE)
        try:
            raw = json.loads(text)
            parameters = {str(k): float(v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise VersionStoreError(f"{PARAMETERS_FILE} at {full} is not a JSON object of numbers") from exc
        message = self._git("log", "-1", "--format=%s", full).strip()
        return AgentVersion(agent=self.agent, commit=full, parameters=parameters, message=message)

    def read_file(self, commit: str, path: str) -> str:
        full = self._resolve(commit)
        for candidate in (path, FORMER_PATHS.get(path)):
            if candidate is None:
                continue
            try:
                return self._git("cat-file", "blob", f"{full}:{candidate}")
            except GitFailed:
                continue
        raise VersionStoreError(f"{path} does not exist at {full} of agent {self.agent}")

    def files(self, commit: str) -> dict[str, str]:
        """Every file of the commit, parameters.json included; a source under its former path
        (FORMER_PATHS) is given under its current one, unless the commit holds that too."""
        full = self._resolve(commit)
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", full)
        paths = [entry.split("\t", 1)[1] for entry in listing.split("\0") if entry]
        found = {path: self._git("cat-file", "blob", f"{full}:{path}") for path in paths}
        for current, former in FORMER_PATHS.items():
            if former in found:
                text = found.pop(former)
                found.setdefault(current, text)
        return found

    def blob_ids(self, commit: str) -> dict[str, str]:
        """Each file of the commit and the blob id its content must hash to, named as `files` names them."""
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", self._resolve(commit))
        found = {}
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            found[path] = meta.split()[2]
        for current, former in FORMER_PATHS.items():
            if former in found:
                found.setdefault(current, found.pop(former))
        return found

    def export(self, commit: str, dest: Path) -> None:
        """Write the commit's files under dest (directories created, existing files overwritten)."""
        dest = Path(dest)
        for path, text in self.files(commit).items():
            target = dest / path
            if not target.resolve().is_relative_to(dest.resolve()):
                raise VersionStoreError(f"{path} would be written outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

    def create_candidate(
        self,
        base: str,
        key: str,
        run_id: str,
        parameters: dict[str, float],
        patch: str | None,
        origin: CandidateOrigin,
        summary: str,
    ) -> Candidate:
        """A commit on top of base with the parameters (and patch); idempotent by run and key."""
        if not _KEY_RE.match(key) or ".." in key or key.endswith(".lock"):
            raise VersionStoreError(f"candidate key {key!r} is not usable as a ref name")
        run = sanitise_run_id(run_id)
        ref = f"refs/candidates/{run}/{key}"
        diff_path = self.runs_dir / run / f"{key}.diff"
        with self._locked():
            base_full = self._resolve(base)
            commit = self._ref(ref)
            if commit is None:
                commit = self._build_candidate(base_full, key, run_id, parameters, patch, origin, summary)
                self._git("update-ref", ref, commit, "")
            else:
                # The ref's own parent is the base it was built on, whatever this call says.
                base_full = self._git("rev-parse", f"{commit}^").strip()
            lines = self._write_diff(base_full, commit, diff_path)
            if self.store is not None:  # the run's next step may be on another host
                agent_sync.push(self, commit)
        return Candidate(
            key=key,
            commit=commit,
            parameters=self.version(commit).parameters,
            origin=origin,
            summary=summary,
            diff_path=str(diff_path),
            diff_lines=lines,
        )

    def _build_candidate(
        self,
        base: str,
        key: str,
        run_id: str,
        parameters: dict[str, float],
        patch: str | None,
        origin: CandidateOrigin,
        summary: str,
    ) -> str:
        params_blob = self._blob(_parameters_text(parameters))
        with self._index(base) as index:
            self._git(
                "update-index", "--add", "--cacheinfo", f"100644,{params_blob},{PARAMETERS_FILE}", index=index
            )
            if patch:
                self._apply(index, patch)
            tree = self._git("write-tree", index=index).strip()
        # The parameters are set by the caller, never by the patch (which applies after them).
        if self._git("ls-tree", tree, "--", PARAMETERS_FILE).split()[2:3] != [params_blob]:
            raise PatchRejected(f"the patch changes {PARAMETERS_FILE}; parameters are set separately")
        subject = " ".join(f"{key}: {summary}".split())[:200]
        message = f"{subject}\n\nrun: {run_id}\norigin: {origin.value}\n"
        return self._commit(tree, message, [base])

    def _apply(self, index: Path, patch: str) -> None:
        text = patch if patch.endswith("\n") else patch + "\n"
        try:
            self._git("apply", "--cached", "--whitespace=nowarn", "-", input=text, index=index)
        except GitFailed as exc:
            raise PatchRejected(f"patch does not apply: {exc.stderr}") from exc

    def _write_diff(self, base: str, commit: str, path: Path) -> int:
        diff = self._git("diff", "--no-color", "--no-ext-diff", base, commit)
        if not path.exists() or path.read_text(encoding="utf-8") != diff:
            agent_sync.write_atomically(path, diff)
        return count_diff_lines(self._git("diff", "--numstat", base, commit))

    def promote(
        self,
        commit: str,
        by: str,
        reason: str,
        metric: float | None,
        now: datetime,
        expected: str | None = None,
        code_changed: bool = False,
    ) -> ActivePointer:
        """Make commit the active version (main moves to it); a no-op when it already is. With `expected`,
        only over that version: a run that compared against an incumbent someone has since replaced must
        not promote over the replacement (VersionConflict)."""
        with self._locked():
            current, seen = self._current()
            if current is None:
                current = self.active()  # the error saying so
            full = self._resolve(commit)
            if current.commit == full:
                return current
            if expected is not None and current.commit != self._resolve(expected):
                raise VersionConflict(
                    f"agent {self.agent}: the active version is now {current.commit[:12]} "
                    f"(by {current.changed_by}), not {expected[:12]} this candidate was compared with"
                )
            pointer = ActivePointer(
                agent=self.agent,
                commit=full,
                parameters=self.version(full).parameters,
                previous=current.commit,
                changed_at=now,
                changed_by=by,
                reason=reason,
                metric=metric,
                code_changed=code_changed,
            )
            self._move_main(full)
            return self._change_pointer(pointer, seen)

    def rollback(
        self, by: str, reason: str, now: datetime, to: str | None = None, only_if: str | None = None
    ) -> ActivePointer:
        """Return to `to` (default: the pointer's previous). Its new previous is what preceded it when it
        was last made active, so repeated rollbacks walk back through the history. With `only_if`, only
        while that version is active (a watch rolls back its own promotion, not a later one)."""
        with self._locked():
            current, seen = self._current()
            if current is None:
                current = self.active()  # the error saying so
            if only_if is not None and current.commit != self._resolve(only_if):
                full_to = self._resolve(to) if to else None
                if current.commit == full_to:
                    return current  # rolled back already (a retry)
                raise VersionConflict(
                    f"agent {self.agent}: the active version is now {current.commit[:12]} "
                    f"(by {current.changed_by}), not {only_if[:12]}: not rolled back"
                )
            if to is None:
                if current.previous is None:
                    raise VersionStoreError(
                        f"agent {self.agent}: nothing to roll back to "
                        f"({current.commit[:12]} is the first version)"
                    )
                to = current.previous
            full = self._resolve(to)
            if current.commit == full:
                return current
            made_active = [p for p in (seen if self.store else self.history()) if p.commit == full]
            if not made_active:
                raise VersionStoreError(
                    f"agent {self.agent}: {full[:12]} was never active, so it cannot be rolled back to "
                    "(promote it instead)"
                )
            pointer = ActivePointer(
                agent=self.agent,
                commit=full,
                parameters=self.version(full).parameters,
                previous=made_active[-1].previous,
                changed_at=now,
                changed_by=by,
                reason=reason,
                code_changed=made_active[-1].code_changed,
            )
            self._move_main(full)
            return self._change_pointer(pointer, seen)

    def history(self) -> list[ActivePointer]:
        """Every pointer change, oldest first."""
        if self.store is not None:
            return agent_sync.sync(self)
        return pointer_files.read_history(self.history_path)


def read_active_pointer(root: Path, agent: str, store: AgentStore | None = None) -> ActivePointer | None:
    """The agent's active version as the product reads it, None while the agent was never evolved: the
    store's (one query, no git), else the pointer file alone. Local data the store does not have yet (a
    release before the store) is migrated first."""
    repo = AgentRepository(root, agent, store)
    if store is None:
        return repo._read_pointer()
    pointer = store.active(agent)
    if repo.pointer_path.exists() and (pointer is None or repo._read_pointer() != pointer):
        history = agent_sync.sync(repo)
        pointer = history[-1] if history else None
    return pointer
