"""The agent version store (activities/selfmod/versions.py) against real git in a temporary directory."""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.selfmod.git_repo import count_diff_lines
from activities.selfmod.versions import (
    FORMER_PATHS,
    AgentRepository,
    PatchRejected,
    VersionConflict,
    VersionStoreError,
    sanitise_run_id,
)
from autarky.selfmod.types import CandidateOrigin

AGENT = "anomaly-detector"
SOURCE = "autarky/autopilot/detectors/anomaly.py"
SOURCE_TEXT = "THRESHOLD = 3.0\nSCALE = 1.0\nOFFSET = 0.0\ndef score(x: float) -> float:\n    return abs(x)\n"
PARAMS = {"z_threshold": 3.0, "window": 50.0}
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
RUN = "evolve/anomaly-detector/3"

GOOD_PATCH = """\
diff --git a/autarky/autopilot/detectors/anomaly.py b/autarky/autopilot/detectors/anomaly.py
--- a/autarky/autopilot/detectors/anomaly.py
+++ b/autarky/autopilot/detectors/anomaly.py
@@ -1,5 +1,5 @@
-THRESHOLD = 3.0
+THRESHOLD = 2.5
 SCALE = 1.0
 OFFSET = 0.0
 def score(x: float) -> float:
-    return abs(x)
+    return abs(x) * 1.1
"""

BAD_PATCH = GOOD_PATCH.replace("-THRESHOLD = 3.0", "-THRESHOLD = 9.9")


def repo_of(tmp_path: Path) -> AgentRepository:
    return AgentRepository(tmp_path, AGENT)


@pytest.fixture
def store(tmp_path: Path) -> AgentRepository:
    repo = repo_of(tmp_path)
    repo.ensure({SOURCE: SOURCE_TEXT}, PARAMS, NOW)
    return repo


def git(repo: AgentRepository, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo.repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def candidate(store: AgentRepository, key: str, params: dict[str, float], patch: str | None = None):
    return store.create_candidate(
        store.active().commit, key, RUN, params, patch, CandidateOrigin.MUTATION, f"try {key}"
    )


def test_bootstrap_commits_files_and_parameters_once(tmp_path: Path) -> None:
    repo = repo_of(tmp_path)
    pointers = []

    def boot() -> None:
        pointers.append(AgentRepository(tmp_path, AGENT).ensure({SOURCE: SOURCE_TEXT}, PARAMS, NOW))

    threads = [threading.Thread(target=boot) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(pointers) == 2 and pointers[0] == pointers[1]
    pointer = repo.active()
    assert pointer.changed_by == "bootstrap" and pointer.previous is None
    assert pointer.parameters == PARAMS
    assert git(repo, "rev-list", "--count", "main") == "1"
    assert git(repo, "rev-parse", "main") == pointer.commit
    assert len(repo.history()) == 1
    files = repo.files(pointer.commit)
    assert files[SOURCE] == SOURCE_TEXT
    assert files["parameters.json"] == '{\n  "window": 50.0,\n  "z_threshold": 3.0\n}\n'
    assert repo.version(pointer.commit).message == f"bootstrap {AGENT}"

    # Later calls with what ships change nothing.
    again = repo.ensure({SOURCE: SOURCE_TEXT}, PARAMS, datetime.now(UTC))
    assert again == pointer and len(repo.history()) == 1


def test_a_release_with_other_defaults_moves_a_version_nobody_chose(tmp_path: Path) -> None:
    repo = repo_of(tmp_path)
    first = repo.ensure({SOURCE: SOURCE_TEXT}, PARAMS, NOW)
    shipped = {"z_threshold": 2.0, "window": 64.0}
    later = datetime(2025, 2, 1, tzinfo=UTC)
    release = repo.ensure({SOURCE: SOURCE_TEXT + "# faster\n"}, shipped, later)
    assert release.changed_by == "release" and release.previous == first.commit
    assert release.parameters == shipped and repo.files(release.commit)[SOURCE].endswith("# faster\n")
    assert git(repo, "rev-parse", "main") == release.commit
    assert repo.ensure({SOURCE: SOURCE_TEXT + "# faster\n"}, shipped, later) == release  # once
    # A version someone chose stays, whatever a later release ships.
    cand = repo.create_candidate(
        release.commit, "k1", RUN, {**shipped, "window": 80.0}, None, CandidateOrigin.MUTATION, "wider"
    )
    promoted = repo.promote(cand.commit, by=RUN, reason="better", metric=0.8, now=later)
    assert repo.ensure({SOURCE: SOURCE_TEXT}, PARAMS, later) == promoted


def test_not_bootstrapped_says_so(tmp_path: Path) -> None:
    with pytest.raises(VersionStoreError, match="not bootstrapped"):
        repo_of(tmp_path).active()


def test_candidate_from_parameters_only(store: AgentRepository) -> None:
    base = store.active().commit
    cand = candidate(store, "g1c1", {"z_threshold": 2.0, "window": 50.0})

    assert cand.parameters == {"z_threshold": 2.0, "window": 50.0}
    assert git(store, "rev-parse", f"{cand.commit}^") == base
    assert git(store, "rev-parse", "refs/candidates/evolve-anomaly-detector-3/g1c1") == cand.commit
    assert store.read_file(cand.commit, SOURCE) == SOURCE_TEXT
    assert store.version(cand.commit).message == "g1c1: try g1c1"
    assert cand.diff_path is not None
    assert Path(cand.diff_path) == store.dir / "runs" / "evolve-anomaly-detector-3" / "g1c1.diff"
    assert cand.diff_lines == 2  # one parameter line out, one in
    # The base and main stay where they were.
    assert store.active().commit == base == git(store, "rev-parse", "main")


def test_candidate_with_patch(store: AgentRepository, tmp_path: Path) -> None:
    cand = candidate(store, "g1c2", PARAMS, GOOD_PATCH)

    text = store.read_file(cand.commit, SOURCE)
    assert text.startswith("THRESHOLD = 2.5\n") and "abs(x) * 1.1" in text
    assert cand.diff_lines == 4
    diff = Path(cand.diff_path or "").read_text()
    assert "+THRESHOLD = 2.5" in diff and "-    return abs(x)" in diff
    out = tmp_path / "export"
    store.export(cand.commit, out)
    assert (out / SOURCE).read_text() == text
    assert (out / "parameters.json").exists()


def test_patch_that_does_not_apply_is_rejected_without_a_ref(store: AgentRepository) -> None:
    with pytest.raises(PatchRejected, match="does not apply") as err:
        candidate(store, "g1c3", PARAMS, BAD_PATCH)
    assert "anomaly.py" in err.value.reason
    assert git(store, "for-each-ref", "refs/candidates") == ""


def test_patch_may_not_change_parameters(store: AgentRepository) -> None:
    patch = """\
--- a/parameters.json
+++ b/parameters.json
@@ -1,4 +1,4 @@
 {
-  "window": 50.0,
+  "window": 10.0,
   "z_threshold": 3.0
 }
"""
    with pytest.raises(PatchRejected, match="changes parameters"):
        candidate(store, "g1c4", PARAMS, patch)
    assert git(store, "for-each-ref", "refs/candidates") == ""


def test_create_candidate_is_idempotent_by_key(store: AgentRepository) -> None:
    first = candidate(store, "g2c1", {"z_threshold": 2.2, "window": 40.0}, GOOD_PATCH)
    second = candidate(store, "g2c1", {"z_threshold": 2.2, "window": 40.0}, GOOD_PATCH)
    assert second == first
    assert git(store, "for-each-ref", "--format=%(refname)", "refs/candidates").splitlines() == [
        "refs/candidates/evolve-anomaly-detector-3/g2c1"
    ]


def test_promote_moves_pointer_and_main_once(store: AgentRepository) -> None:
    base = store.active()
    cand = candidate(store, "g1c1", {"z_threshold": 2.0, "window": 50.0})
    later = datetime(2025, 1, 3, tzinfo=UTC)

    pointer = store.promote(cand.commit[:10], by=RUN, reason="better", metric=0.7, now=later)
    assert pointer.commit == cand.commit and pointer.previous == base.commit
    assert pointer.parameters == cand.parameters and pointer.metric == 0.7
    assert store.active() == pointer
    assert git(store, "rev-parse", "main") == cand.commit
    assert len(store.history()) == 2

    assert store.promote(cand.commit, by=RUN, reason="again", metric=0.9, now=datetime.now(UTC)) == pointer
    assert len(store.history()) == 2


def test_rollback_walks_back_then_stops(store: AgentRepository) -> None:
    first = store.active()
    c1 = candidate(store, "g1c1", {"z_threshold": 2.0, "window": 50.0})
    store.promote(c1.commit, by=RUN, reason="better", metric=None, now=NOW)
    c2 = store.create_candidate(
        c1.commit, "g2c1", RUN, {"z_threshold": 1.5, "window": 50.0}, None, CandidateOrigin.MUTATION, ""
    )
    store.promote(c2.commit, by=RUN, reason="better still", metric=None, now=NOW)

    back = store.rollback(by="alice", reason="regressed", now=NOW)
    assert back.commit == c1.commit and back.parameters == c1.parameters
    assert back.previous == first.commit and back.changed_by == "alice"
    assert git(store, "rev-parse", "main") == c1.commit
    assert store.rollback(by="alice", reason="again", now=NOW, to=c1.commit) == back  # already there

    further = store.rollback(by="alice", reason="still bad", now=NOW)
    assert further.commit == first.commit and further.parameters == PARAMS and further.previous is None
    with pytest.raises(VersionStoreError, match="nothing to roll back to"):
        store.rollback(by="alice", reason="more", now=NOW)
    assert [p.reason for p in store.history()][-2:] == ["regressed", "still bad"]
    assert len(store.history()) == 5


def test_corrupt_pointer_is_named_and_nothing_is_touched(store: AgentRepository) -> None:
    cand = candidate(store, "g1c1", {"z_threshold": 2.0, "window": 50.0})
    refs_before = git(store, "for-each-ref")
    store.pointer_path.write_text("{not json")

    for call in (
        store.active,
        lambda: store.ensure({SOURCE: SOURCE_TEXT}, PARAMS, NOW),
        lambda: store.promote(cand.commit, by="x", reason="", metric=None, now=NOW),
        lambda: store.rollback(by="x", reason="", now=NOW),
    ):
        with pytest.raises(VersionStoreError, match=r"active\.json"):
            call()
    assert git(store, "for-each-ref") == refs_before
    assert store.pointer_path.read_text() == "{not json"
    assert len(store.history()) == 1


def test_unknown_commit_is_a_clear_error(store: AgentRepository) -> None:
    with pytest.raises(VersionStoreError, match="not a commit"):
        store.version("deadbeef")
    with pytest.raises(VersionStoreError, match="not a commit"):
        store.promote("--all", by="x", reason="", metric=None, now=NOW)


def test_git_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(VersionStoreError, match="install git"):
        repo_of(tmp_path).ensure({SOURCE: SOURCE_TEXT}, PARAMS, NOW)
    assert not (tmp_path / AGENT / "active.json").exists()


def test_helpers() -> None:
    assert sanitise_run_id(RUN) == "evolve-anomaly-detector-3"
    assert sanitise_run_id("../x y.lock") == "x-y-lock"
    assert count_diff_lines("3\t1\ta.py\n-\t-\tlogo.png\n") == 4


def test_a_relative_data_directory_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` keeps its data in `.autarky`, a path relative to where it runs."""
    monkeypatch.chdir(tmp_path)
    repo = AgentRepository(Path(".autarky") / "agents", "anomaly-detector")
    pointer = repo.ensure(
        {"autarky/autopilot/detectors/anomaly.py": "X = 1\n"}, {"window": 128.0}, datetime.now(UTC)
    )
    candidate = repo.create_candidate(
        pointer.commit,
        "c1",
        "evolve/anomaly-detector/1",
        {"window": 64.0},
        None,
        CandidateOrigin.MUTATION,
        "w",
    )
    assert repo.version(candidate.commit).parameters == {"window": 64.0}


def test_promotion_over_a_version_someone_else_made_active_is_refused(store: AgentRepository) -> None:
    first = store.active().commit
    a = store.create_candidate(
        first, "a", RUN, {**PARAMS, "window": 10.0}, None, CandidateOrigin.MUTATION, "a"
    )
    b = store.create_candidate(
        first, "b", RUN, {**PARAMS, "window": 20.0}, None, CandidateOrigin.MUTATION, "b"
    )
    store.promote(a.commit, "someone", "first", None, NOW)
    with pytest.raises(VersionConflict, match="active version is now"):
        store.promote(b.commit, "run", "compared with the first", None, NOW, expected=first)
    assert store.active().commit == a.commit


def test_a_watch_rolls_back_only_its_own_promotion(store: AgentRepository) -> None:
    first = store.active().commit
    a = store.create_candidate(
        first, "a", RUN, {**PARAMS, "window": 10.0}, None, CandidateOrigin.MUTATION, "a"
    )
    b = store.create_candidate(
        a.commit, "b", RUN, {**PARAMS, "window": 20.0}, None, CandidateOrigin.MUTATION, "b"
    )
    store.promote(a.commit, "run-a", "", None, NOW)
    store.promote(b.commit, "run-b", "", None, NOW)
    with pytest.raises(VersionConflict, match="not rolled back"):
        store.rollback("run-a", "regressed", NOW, to=first, only_if=a.commit)
    assert store.active().commit == b.commit
    back = store.rollback("run-b", "regressed", NOW, to=a.commit, only_if=b.commit)
    assert back.commit == a.commit
    # A retried rollback finds it done.
    assert store.rollback("run-b", "regressed", NOW, to=a.commit, only_if=b.commit).commit == a.commit


def test_a_version_made_before_the_sources_moved_reads_under_their_current_path(tmp_path: Path) -> None:
    """Versions committed before the package was arranged by capability hold the agent's source under its
    former path; reading, exporting and sandbox work directories see it under the current one."""
    former = FORMER_PATHS[SOURCE]
    repo = AgentRepository(tmp_path, AGENT)
    old = repo.ensure({former: SOURCE_TEXT}, PARAMS, NOW)

    assert repo.read_file(old.commit, SOURCE) == SOURCE_TEXT
    assert repo.files(old.commit) == {
        SOURCE: SOURCE_TEXT,
        "parameters.json": repo.files(old.commit)["parameters.json"],
    }
    repo.export(old.commit, tmp_path / "out")
    assert (tmp_path / "out" / SOURCE).read_text() == SOURCE_TEXT

    # The release that moved it: the current path is committed beside the former one and wins.
    moved = repo.ensure({SOURCE: SOURCE_TEXT + "# moved\n"}, PARAMS, NOW)
    assert moved.commit != old.commit
    assert repo.files(moved.commit)[SOURCE] == SOURCE_TEXT + "# moved\n"
    assert former not in repo.files(moved.commit)
    with pytest.raises(VersionStoreError, match=r"elsewhere\.py does not exist"):
        repo.read_file(old.commit, "autarky/elsewhere.py")
