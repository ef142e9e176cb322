"""Versions of an evolvable agent: a git repository per agent, and the pointer the product reads.

Layout under the data directory, one folder per agent:
- `repo/`: a bare git repository. `main` is the active version; every candidate has its own ref
  `refs/candidates/<run>/<key>`; every commit that was ever active keeps `refs/versions/<commit>`, so a
  rollback target can never be garbage-collected. Files are written with plumbing (hash-object, a
  temporary index, write-tree, commit-tree, update-ref): there is no work tree to get dirty.
- `active.json`: the `ActivePointer`, replaced atomically; the product reads only this.
- `history.jsonl`: one `ActivePointer` per line, appended on every pointer change, before the pointer is
  replaced (a crash in between leaves a duplicate line on retry, never a missing one; rollbacks rely on it).
- `runs/<run>/<key>.diff`: each candidate's diff against its base.
- `.lock`: an `fcntl.flock` serialising every change, across threads and processes.

Everything blocks (git runs as a subprocess); activities call these methods in a thread. Git runs with a
fixed identity and without the user's or system's configuration, so hooks, signing or autocrlf of the host
cannot change what gets stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from autarky.selfmod.types import ActivePointer, AgentVersion, Candidate, CandidateOrigin

PARAMETERS_FILE = "parameters.json"
MAIN_REF = "refs/heads/main"
BOOTSTRAP = "bootstrap"  # changed_by of the first version
RELEASE = "release"  # changed_by of a version a newer release's shipped defaults made (ensure)
GIT_TIMEOUT_SECONDS = 120
# Agent sources that moved when the package was arranged by capability (issue 23): versions committed
# before keep them under the former path, which reads as the current one.
FORMER_PATHS = {
    "autarky/autopilot/detectors/anomaly.py": "autarky/detectors/anomaly.py",
    "autarky/research/relevance.py": "autarky/policy/relevance.py",
}
INSTALL_HINT = (
    "git is needed to store agent versions and is not installed: "
    "`apt-get install git` (Debian/Ubuntu), `dnf install git` (Fedora)."
)
_IDENTITY = ("-c", "user.name=autarky", "-c", "user.email=autarky@localhost", "-c", "commit.gpgsign=false")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


class VersionStoreError(RuntimeError):
    """The version store cannot do what was asked: git failed or is missing, or its files are bad."""


class GitFailed(VersionStoreError):
    """A git command exited with an error; `stderr` is what git said."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


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


def count_diff_lines(numstat: str) -> int:
    """Added plus removed lines from `git diff --numstat` (binary files, shown as "-", count 0)."""
    total = 0
    for line in numstat.splitlines():
        added, removed, *_ = line.split("\t")
        total += int(added) if added.isdigit() else 0
        total += int(removed) if removed.isdigit() else 0
    return total


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


def git_blob_id(data: bytes, object_id: str) -> str:
    """The id git gives `data` as a blob (`git hash-object`), in the hash of `object_id` (sha1 or sha256)."""
    algorithm = hashlib.sha256 if len(object_id) == 64 else hashlib.sha1
    return algorithm(b"blob %d\0" % len(data) + data).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
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


class AgentRepository:
    """The versions of one agent. Cheap to construct; nothing touches the disk until a method is called."""

    def __init__(self, root: Path, agent: str) -> None:
        if not _KEY_RE.match(agent) or ".." in agent:
            raise VersionStoreError(f"agent name {agent!r} is not usable as a directory name")
        self.agent = agent
        # Absolute: git runs with -C the repository, where a relative index or path would not resolve.
        self.dir = Path(root).absolute() / agent
        self.repo = self.dir / "repo"
        self.pointer_path = self.dir / "active.json"
        self.history_path = self.dir / "history.jsonl"
        self.runs_dir = self.dir / "runs"
        self.lock_path = self.dir / ".lock"

    # ------------------------------------------------------------------ git

    def _git(
        self,
        *args: str,
        input: str | None = None,
        index: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run git on this agent's repository and return its stdout; VersionStoreError with its stderr."""
        git = shutil.which("git")
        if git is None:
            raise VersionStoreError(INSTALL_HINT)
        # Inherited GIT_* variables (a hook's GIT_DIR, say) would point git at another repository.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        full_env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
        full_env["LC_ALL"] = "C"
        if index is not None:
            full_env["GIT_INDEX_FILE"] = str(index)
        full_env.update(env or {})
        cmd = [git, "-C", str(self.repo), *_IDENTITY, *args]
        try:
            done = subprocess.run(
                cmd,
                input=input.encode() if input is not None else None,
                capture_output=True,
                env=full_env,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError as exc:
            raise VersionStoreError(INSTALL_HINT) from exc
        except subprocess.TimeoutExpired as exc:
            raise VersionStoreError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS} s") from exc
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            raise GitFailed(f"git {' '.join(args[:2])} failed in {self.repo}: {stderr}", stderr)
        return done.stdout.decode(errors="replace")

    def _resolve(self, commit: str) -> str:
        """A full commit id; VersionStoreError when it names no commit of this repository."""
        if not commit or commit.startswith("-"):
            raise VersionStoreError(f"{commit!r} is not a commit")
        try:
            return self._git(
                "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"
            ).strip()
        except GitFailed as exc:
            raise VersionStoreError(f"{commit!r} is not a commit of agent {self.agent}") from exc

    def _ref(self, ref: str) -> str | None:
        out = self._git("for-each-ref", "--format=%(objectname)", ref)
        return out.strip() or None

    def _blob(self, text: str) -> str:
        return self._git("hash-object", "-w", "--no-filters", "--stdin", input=text).strip()

    def _commit(self, tree: str, message: str, parents: list[str], env: dict[str, str] | None = None) -> str:
        parent_args = [arg for p in parents for arg in ("-p", p)]
        return self._git("commit-tree", tree, *parent_args, "-F", "-", input=message, env=env).strip()

    @contextmanager
    def _index(self, base: str | None) -> Iterator[Path]:
        """A temporary index (read from `base` when given), so concurrent builds never share one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".index-") as tmp:
            index = Path(tmp) / "index"
            if base is not None:
                self._git("read-tree", base, index=index)
            yield index

    def _stage(self, index: Path, files: Mapping[str, str]) -> None:
        entries = "".join(f"100644 {self._blob(text)}\t{path}\n" for path, text in files.items())
        self._git("update-index", "--add", "--index-info", input=entries, index=index)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes to this agent across threads and processes (flock is per open file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ pointer and history

    def _read_pointer(self) -> ActivePointer | None:
        try:
            text = self.pointer_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise VersionStoreError(f"cannot read {self.pointer_path}: {exc}") from exc
        try:
            pointer = ActivePointer.model_validate_json(text)
        except ValidationError as exc:
            raise VersionStoreError(
                f"{self.pointer_path} is not a valid active-version pointer (fix or restore it; the "
                f"repository {self.repo} is untouched): {exc.errors()[0]['msg']}"
            ) from exc
        if pointer.agent != self.agent:
            raise VersionStoreError(f"{self.pointer_path} names agent {pointer.agent!r}, not {self.agent!r}")
        return pointer

    def _change_pointer(self, pointer: ActivePointer) -> ActivePointer:
        """Keep the commit reachable, log the change, then let the product see it."""
        self._git("update-ref", f"refs/versions/{pointer.commit}", pointer.commit)
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(pointer.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        _write_atomically(self.pointer_path, pointer.model_dump_json(indent=2) + "\n")
        return pointer

    def _move_main(self, commit: str) -> None:
        old = self._ref(MAIN_REF)
        self._git("update-ref", MAIN_REF, commit, *([old] if old else []))

    # ------------------------------------------------------------------ public API

    def ensure(self, files: dict[str, str], parameters: dict[str, float], now: datetime) -> ActivePointer:
        """Bootstrap on first use (files plus parameters.json as the first commit on main); afterwards
        return the existing pointer, unless nobody ever changed it (bootstrap or release) and this
        release ships other files or parameters: then those become a release commit on top and the
        active version, so the product, the goal checks and evolutions all start from what ships."""
        for path in files:
            _check_path(path)
        with self._locked():
            existing = self._read_pointer()
            if existing is not None:
                if existing.changed_by not in (BOOTSTRAP, RELEASE):
                    return existing
                return self._follow_release(existing, files, parameters, now)
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
            return self._change_pointer(pointer)

    def _follow_release(
        self, existing: ActivePointer, files: dict[str, str], parameters: dict[str, float], now: datetime
    ) -> ActivePointer:
        with self._index(existing.commit) as index:
            self._stage(index, {**files, PARAMETERS_FILE: _parameters_text(parameters)})
            tree = self._git("write-tree", index=index).strip()
        if tree == self._git("rev-parse", f"{existing.commit}^{{tree}}").strip():
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
        return self._change_pointer(pointer)

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
        pointer = self._read_pointer()
        if pointer is None:
            raise VersionStoreError(
                f"agent {self.agent} is not bootstrapped: {self.pointer_path} does not exist "
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
            _write_atomically(path, diff)
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
            current = self.active()
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
            return self._change_pointer(pointer)

    def rollback(
        self, by: str, reason: str, now: datetime, to: str | None = None, only_if: str | None = None
    ) -> ActivePointer:
        """Return to `to` (default: the pointer's previous). Its new previous is what preceded it when it
        was last made active, so repeated rollbacks walk back through the history. With `only_if`, only
        while that version is active (a watch rolls back its own promotion, not a later one)."""
        with self._locked():
            current = self.active()
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
            made_active = [p for p in self.history() if p.commit == full]
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
            return self._change_pointer(pointer)

    def history(self) -> list[ActivePointer]:
        """Every pointer change, oldest first."""
        try:
            lines = self.history_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[ActivePointer] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(ActivePointer.model_validate_json(line))
            except ValidationError as exc:
                raise VersionStoreError(
                    f"{self.history_path} line {number} is not a pointer: {exc.errors()[0]['msg']}"
                ) from exc
        return out


def read_active_pointer(root: Path, agent: str) -> ActivePointer | None:
    """The agent's active version as the product reads it: the pointer file alone (no git), None while the
    agent was never evolved."""
    return AgentRepository(root, agent)._read_pointer()
