"""A bare git repository written with plumbing only: the git layer under an agent's versions (versions.py).

Files go in with hash-object, a temporary index, write-tree, commit-tree and update-ref: there is no work
tree to get dirty, and concurrent builds never share an index. Git runs with a fixed identity and without
the user's or system's configuration, so hooks, signing or autocrlf of the host cannot change what gets
stored. Everything blocks (git runs as a subprocess); callers run it in a thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from activities.selfmod.version_errors import VersionStoreError

MAIN_REF = "refs/heads/main"
GIT_TIMEOUT_SECONDS = 120
INSTALL_HINT = (
    "git is needed to store agent versions and is not installed: "
    "`apt-get install git` (Debian/Ubuntu), `dnf install git` (Fedora)."
)
_IDENTITY = ("-c", "user.name=autarky", "-c", "user.email=autarky@localhost", "-c", "commit.gpgsign=false")


class GitFailed(VersionStoreError):
    """A git command exited with an error; `stderr` is what git said."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def count_diff_lines(numstat: str) -> int:
    """Added plus removed lines from `git diff --numstat` (binary files, shown as "-", count 0)."""
    total = 0
    for line in numstat.splitlines():
        added, removed, *_ = line.split("\t")
        total += int(added) if added.isdigit() else 0
        total += int(removed) if removed.isdigit() else 0
    return total


def git_blob_id(data: bytes, object_id: str) -> str:
    """The id git gives `data` as a blob (`git hash-object`), in the hash of `object_id` (sha1 or sha256)."""
    algorithm = hashlib.sha256 if len(object_id) == 64 else hashlib.sha1
    return algorithm(b"blob %d\0" % len(data) + data).hexdigest()


def _clean_env() -> dict[str, str]:
    # Inherited GIT_* variables (a hook's GIT_DIR, say) would point git at another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    env["LC_ALL"] = "C"
    return env


class GitRepository:
    """The bare repository `<dir>/repo`, its temporary indexes under `dir` and the lock `<dir>/.lock`."""

    def __init__(self, dir: Path) -> None:
        # Absolute: git runs with -C the repository, where a relative index or path would not resolve.
        self.dir = Path(dir).absolute()
        self.repo = self.dir / "repo"
        self.lock_path = self.dir / ".lock"

    def _git(
        self,
        *args: str,
        input: str | None = None,
        index: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run git on this repository and return its stdout; VersionStoreError with its stderr."""
        full_env = _clean_env()
        if index is not None:
            full_env["GIT_INDEX_FILE"] = str(index)
        full_env.update(env or {})
        return self._git_bytes(
            *args, input=input.encode() if input is not None else None, env=full_env
        ).decode(errors="replace")

    def _git_bytes(self, *args: str, input: bytes | None, env: dict[str, str] | None = None) -> bytes:
        """git with bytes in and out (objects as git stores them); `env` whole, else the clean one."""
        git = shutil.which("git")
        if git is None:
            raise VersionStoreError(INSTALL_HINT)
        cmd = [git, "-C", str(self.repo), *_IDENTITY, *args]
        try:
            done = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                env=_clean_env() if env is None else env,
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
        return done.stdout

    def _ref(self, ref: str) -> str | None:
        out = self._git("for-each-ref", "--format=%(objectname)", ref)
        return out.strip() or None

    def _blob(self, text: str) -> str:
        return self._git("hash-object", "-w", "--no-filters", "--stdin", input=text).strip()

    def _commit(self, tree: str, message: str, parents: list[str], env: dict[str, str] | None = None) -> str:
        parent_args = [arg for p in parents for arg in ("-p", p)]
        return self._git("commit-tree", tree, *parent_args, "-F", "-", input=message, env=env).strip()

    def _move_main(self, commit: str) -> None:
        old = self._ref(MAIN_REF)
        self._git("update-ref", MAIN_REF, commit, *([old] if old else []))

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
        """Serialise changes to this repository across threads and processes (flock is per open file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
