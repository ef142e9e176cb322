"""Promoted code never runs in the worker (issue 24). An evolved relevance-scorer version scores research
items in the real sandbox (bubblewrap), its files checked against their git blobs first; what it writes is
bounded and validated. A promotion whose sources differ from the shipped ones asks a person whoever wrote
them, and `autarky approvals` shows the diff as text, marked where cut, whole with `--diff`.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.research import sandboxed_scorer
from activities.research.analysis import AnalysisActivities
from activities.research.sandboxed_scorer import BadScores, parse_scores, read_bounded
from activities.selfmod.diff_store import read_diff, store_diff
from activities.selfmod.git_repo import git_blob_id
from activities.selfmod.live_code import PROJECT_ROOT, TamperedCode, verify_code
from activities.selfmod.review import excerpt, source_diff
from activities.selfmod.versions import AgentRepository
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from autarky.core.approval import ApprovalDecision
from autarky.core.settings import AutarkySettings
from autarky.research.relevance import DEFAULT_INTERESTS, RelevanceScorer
from autarky.selfmod.agents import RELEVANCE_SCORER, default_parameters, relevance_params
from autarky.selfmod.types import CandidateOrigin, CheckInput, CheckOutcome, SelfModifyResult
from tests.test_cli import cli
from tests.test_self_modify import DEGRADED, make_stack, wait_for_pending

AGENT = RELEVANCE_SCORER.name
SOURCE = RELEVANCE_SCORER.source_files[0]
SHIPPED = (PROJECT_ROOT / SOURCE).read_text()
LABEL = '_LABEL = "Offline lexical match (BM25 on keywords, no LLM):"'
TITLE = "Speculative decoding for faster large language model inference"
SHIPPED_RATIONALE = "Offline lexical match"


def diff_of(text: str) -> str:
    lines = difflib.unified_diff(
        SHIPPED.splitlines(keepends=True), text.splitlines(keepends=True), f"a/{SOURCE}", f"b/{SOURCE}"
    )
    return "".join(lines)


def promote_code(
    data_dir: Path, text: str, parameters: dict[str, float] | None = None
) -> tuple[AgentRepository, str]:
    """A version with source `text` made active as a code change (what the research analyser reads)."""
    repo = AgentRepository(data_dir / "agents", AGENT)
    now = datetime.now(UTC)
    repo.ensure({SOURCE: SHIPPED}, default_parameters(AGENT), now)
    patch = diff_of(text) if text != SHIPPED else None
    made = repo.create_candidate(
        repo.active().commit,
        "v",
        "test",
        parameters or default_parameters(AGENT),
        patch,
        CandidateOrigin.LLM,
        "x",
    )
    repo.promote(made.commit, "test", "", None, now, code_changed=True)
    return repo, made.commit


def scorer_of(data_dir: Path):
    settings = AutarkySettings(data_dir=data_dir)
    return AnalysisActivities(settings, KnowledgeBaseHandle(settings.knowledge_db_url))._offline_scorer()


def evolved(label: str, extra: str = "", after_import: str = "") -> str:
    assert LABEL in SHIPPED and "import re\n" in SHIPPED
    text = SHIPPED.replace(LABEL, f"_LABEL = {label}").replace("import re\n", f"import re\n{after_import}", 1)
    return text + extra


# ---------------------------------------------------------------------- the code runs in the sandbox


def test_an_evolved_version_scores_in_the_sandbox_and_leaves_the_worker_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = Path(f"/tmp/autarky-promoted-{uuid.uuid4().hex}")
    monkeypatch.setenv("AUTARKY_TEST_SECRET", "sk-the-worker-holds-this")
    at_import = (
        "import os\n"
        "os.environ['AUTARKY_PROMOTED_MARK'] = 'set'\n"
        f"open({str(marker)!r}, 'w').write('escaped')\n"
        "try:\n    open('/data/code/planted.py', 'w').write('x')\nexcept OSError:\n    pass\n"
    )
    label = '"Evolved, secret " + os.environ.get("AUTARKY_TEST_SECRET", "unseen") + ":"'
    repo, commit = promote_code(tmp_path, evolved(label, after_import=at_import))
    modules = set(sys.modules)

    relevance = scorer_of(tmp_path).score(TITLE)

    assert relevance.rationale.startswith("Evolved, secret unseen:")  # its code ran, without the secret
    assert 0.0 < relevance.score <= 1.0 and relevance.interest
    assert "AUTARKY_PROMOTED_MARK" not in os.environ  # its import ran elsewhere
    assert not marker.exists()  # its /tmp was the sandbox's own
    tree = repo.dir / "code" / commit
    assert (tree / SOURCE).is_file() and not (tree / "planted.py").exists()  # lent read-only
    loaded = [sys.modules[m] for m in set(sys.modules) - modules]
    assert not [m for m in loaded if str(tree) in str(getattr(m, "__file__", None) or "")]


def test_analyses_arriving_together_share_a_sandboxed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promote_code(tmp_path, evolved('"Evolved lexical match:"'))
    runs: list[int] = []
    real = sandboxed_scorer.run_sandboxed

    def counted(*args, **kwargs):  # the real sandbox, counted
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sandboxed_scorer, "run_sandboxed", counted)
    scorer = scorer_of(tmp_path)
    titles = [TITLE, "A history of medieval pottery glazes", "Multi-agent planning", "KV cache eviction"] * 2
    results: dict[int, object] = {}
    start = threading.Barrier(len(titles))

    def analyse(i: int) -> None:
        start.wait()
        results[i] = scorer.score(titles[i])

    threads = [threading.Thread(target=analyse, args=(i,)) for i in range(len(titles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    shipped = RelevanceScorer(DEFAULT_INTERESTS)
    for i, title in enumerate(titles):
        got, expected = results[i], shipped.score(title)
        assert got.rationale.startswith("Evolved lexical match:")  # type: ignore[attr-defined]
        assert got.score == pytest.approx(expected.score)  # type: ignore[attr-defined]
    assert len(runs) < len(titles)


def test_a_tampered_exported_file_is_refused_and_never_run(tmp_path: Path) -> None:
    repo, commit = promote_code(tmp_path, evolved('"Evolved lexical match:"'))
    scorer = scorer_of(tmp_path)
    assert scorer.score(TITLE).rationale.startswith("Evolved lexical match:")
    exported = repo.dir / "code" / commit / SOURCE
    exported.write_text(exported.read_text().replace("Evolved lexical match:", "Tampered match:"))

    with capture_logs() as logs:
        relevance = scorer.score(TITLE)
    assert relevance.rationale.startswith(SHIPPED_RATIONALE)  # the shipped code, the version's parameters
    [warning] = [e for e in logs if e["event"] == "evolved_relevance_scorer_refused"]
    assert "does not match blob" in warning["why"] and str(exported) in warning["why"]
    # A restarted worker finds the tree and checks it too.
    assert scorer_of(tmp_path).score(TITLE).rationale.startswith(SHIPPED_RATIONALE)


def test_exported_files_are_checked_against_their_git_blobs(tmp_path: Path) -> None:
    for data in (b"", b"totals[i] = 1\n", "héllo ☃\n".encode()):
        done = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True)
        assert git_blob_id(data, "0" * 40) == done.stdout.decode().strip()
    repo, commit = promote_code(tmp_path, evolved('"Evolved lexical match:"'))
    blobs = repo.blob_ids(commit)
    at_commit = subprocess.run(
        ["git", "-C", str(repo.repo), "rev-parse", f"{commit}:{SOURCE}"], capture_output=True, check=True
    )
    assert blobs[SOURCE] == at_commit.stdout.decode().strip()
    tree = tmp_path / "tree"
    (tree / SOURCE).parent.mkdir(parents=True)
    (tree / SOURCE).write_text(repo.read_file(commit, SOURCE))
    verify_code(tree, {SOURCE: blobs[SOURCE]})  # as committed: accepted
    (tree / SOURCE).rename(tree / "elsewhere.py")
    (tree / SOURCE).symlink_to(tree / "elsewhere.py")  # the same bytes, but through a link
    with pytest.raises(TamperedCode, match="not a regular file"):
        verify_code(tree, {SOURCE: blobs[SOURCE]})
    (tree / SOURCE).unlink()
    with pytest.raises(TamperedCode, match="not a regular file"):
        verify_code(tree, {SOURCE: blobs[SOURCE]})


def test_long_strings_are_capped_and_a_bad_score_falls_back_to_the_shipped_code(tmp_path: Path) -> None:
    promote_code(tmp_path, evolved('"Evolved " + "x" * 5000 + ":"'))
    relevance = scorer_of(tmp_path).score(TITLE)
    assert relevance.rationale.startswith("Evolved xxx") and len(relevance.rationale) == 1000

    nan_score = (
        "\n\n_shipped_score = RelevanceScorer.score\n\n\n"
        "def _nan_score(self, title, text=''):\n"
        "    r = _shipped_score(self, title, text)\n"
        "    return Relevance(float('nan'), r.interest, r.matched_terms, r.rationale, r.tags)\n\n\n"
        "RelevanceScorer.score = _nan_score\n"
    )
    promote_code(tmp_path / "nan", evolved('"Evolved lexical match:"', extra=nan_score))
    with capture_logs() as logs:
        relevance = scorer_of(tmp_path / "nan").score(TITLE)
    assert relevance.rationale.startswith(SHIPPED_RATIONALE) and 0.0 < relevance.score <= 1.0
    [warning] = [e for e in logs if e["event"] == "evolved_relevance_scorer_output_rejected"]
    assert "not a finite number" in warning["why"]


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b'{"results": [{"score": 1.5}]}', "outside"),
        (b'{"results": [{"score": true}]}', "not a finite number"),
        (b'{"results": [{"score": Infinity}]}', "not a finite number"),
        (b'{"results": []}', "one result for each"),
        (b'{"results": [{"score": 0.5, "tags": "a"}]}', "not a list of strings"),
        (b'{"results": [{"score": 0.5, "rationale": 7}]}', "not a string"),
        (b"[" * 200_000, "not JSON"),
        (b"\xff", "not JSON"),
    ],
)
def test_scores_are_validated(raw: bytes, problem: str) -> None:
    with pytest.raises(BadScores, match=problem):
        parse_scores(raw, 1)


def test_scores_are_read_with_a_bound_from_a_regular_file(tmp_path: Path) -> None:
    [ok] = parse_scores(b'{"results": [{"score": 0.5, "tags": ["t' + b"x" * 200 + b'"] }]}', 1)
    assert ok.score == 0.5 and len(ok.tags[0]) == 80
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 5000)
    with pytest.raises(BadScores, match="larger than"):
        read_bounded(big, 4096)
    link = tmp_path / "link.json"
    link.symlink_to("/etc/passwd")
    with pytest.raises(BadScores, match="cannot be opened"):
        read_bounded(link, 4096)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(BadScores, match="not a regular file"):
        read_bounded(fifo, 4096)


def test_without_bubblewrap_the_evolved_code_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = promote_code(tmp_path, evolved('"Evolved lexical match:"'))
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    with capture_logs() as logs:
        scorer = scorer_of(tmp_path)
        relevance = scorer.score(TITLE)
    assert relevance.rationale.startswith(SHIPPED_RATIONALE)
    assert scorer.params.half == default_parameters(AGENT)["half"]
    [warning] = [e for e in logs if e["event"] == "evolved_relevance_scorer_not_run"]
    assert "bubblewrap is not installed" in warning["why"]
    assert not (repo.dir / "code").exists()  # not even exported


def test_a_version_with_the_shipped_sources_runs_in_process(tmp_path: Path) -> None:
    parameters = {**default_parameters(AGENT), "half": 12.0}
    repo, _ = promote_code(tmp_path, SHIPPED, parameters)
    relevance = scorer_of(tmp_path).score(TITLE)
    expected = RelevanceScorer(DEFAULT_INTERESTS, relevance_params(parameters)).score(TITLE)
    assert relevance == expected
    assert not (repo.dir / "code").exists()


# ---------------------------------------------------------------------- the review of a promotion


def test_the_excerpt_says_where_it_is_cut_and_where_the_whole_diff_is(tmp_path: Path) -> None:
    repo, commit = promote_code(
        tmp_path, evolved('"Evolved:"', extra="".join(f"# line {i}\n" for i in range(400)))
    )
    diff = source_diff(repo, commit, [SOURCE])
    assert diff.startswith(f"--- shipped/{SOURCE}\n+++ {commit[:10]}/{SOURCE}\n") and len(diff) > 3000
    cut = excerpt(diff, 7)
    head, mark = cut.rsplit("… ", 1)
    more = int(mark.split()[0])
    assert mark == f"{more} more characters, full diff: autarky approvals --diff 7"
    assert diff.startswith(head) and len(head) + more == len(diff) and head.endswith("\n")
    assert excerpt("+x\n", 3) == "+x\n(end of the diff; stored as autarky approvals --diff 3)"
    assert source_diff(repo, repo.history()[0].commit, [SOURCE]) == ""  # the bootstrap: shipped sources

    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'kb.db'}")
    kb.migrate()
    first = store_diff(kb, AGENT, commit, diff)
    assert store_diff(kb, AGENT, commit, diff) == first  # a retried activity finds its row
    stored = read_diff(kb, first)
    assert stored is not None and stored.text == diff and stored.commit == commit
    assert read_diff(kb, first + 1) is None


@activity.defn(name="check_candidate")
async def checked(request: CheckInput) -> CheckOutcome:
    """The candidates here are parameter changes; their tests in the sandbox: tests/test_self_modify.py."""
    return CheckOutcome(passed=True)


HIDDEN = "# [conceal]hidden from the approver[/conceal] totals[i] \x1b[8mconcealed by the terminal\x1b[0m"


@pytest.mark.slow
async def test_after_an_upgrade_a_parameter_promotion_asks_and_shows_the_diff_as_text(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    """The active version carries code a previous release shipped (here: a comment line and a long tail);
    this release ships other sources. A parameter-only candidate on top of it asks a person."""
    previous = evolved(
        LABEL.split(" = ", 1)[1], extra="".join(f"# previous release, line {i}\n" for i in range(120))
    )
    previous = previous.replace("import re\n", f"import re\n{HIDDEN}\n", 1) + "# the very end of the diff\n"
    async with make_stack(client, tmp_path, extra=[checked]) as stack:
        old = stack.repo.create_candidate(
            stack.incumbent, "previous", "upgrade", DEGRADED, diff_of(previous), CandidateOrigin.MUTATION, "x"
        )
        stack.repo.promote(old.commit, "evolve/relevance-scorer/release-23", "", None, datetime.now(UTC))
        handle = await stack.evolve(offline=True, generations=3, population=3, watch_runs=0, threshold=-1.0)
        approval = await wait_for_pending(handle)
        why = approval["why"]
        assert "its sources differ from the ones this release ships" in why
        assert HIDDEN in why and "# the very end of the diff" not in why
        diff_id = re.search(r"more characters, full diff: autarky approvals --diff (\d+)$", why).group(1)  # type: ignore[union-attr]

        data = {"AUTARKY_DATA_DIR": str(stack.settings.data_dir)}
        out = ""
        for _ in range(100):  # visibility lists the approval a moment after the workflow asked
            code, out = await cli(env, "approvals", **data)
            if approval["approval_id"] in out:
                break
            await asyncio.sleep(0.2)
        assert code == 0 and approval["approval_id"] in out, out
        assert "+# [conceal]hidden from the approver[/conceal] totals[i] \\x1b[8mconcealed" in out, out
        assert "\x1b" not in out
        assert f"more characters, full diff: autarky approvals --diff {diff_id}" in out
        code, whole = await cli(env, "approvals", "--diff", diff_id, **data)
        assert code == 0 and whole.startswith(f"diff {diff_id}: {AGENT} version "), whole
        assert "[conceal]hidden from the approver[/conceal] totals[i]" in whole
        assert "+# the very end of the diff" in whole and "\x1b" not in whole
        code, missing = await cli(env, "approvals", "--diff", "99999", **data)
        assert code == 1 and missing.startswith("no diff 99999 in the knowledge base"), missing

        await handle.execute_update(
            "reject", ApprovalDecision(approval_id=approval["approval_id"], approver="ann", reason="read it")
        )
        result: SelfModifyResult = await handle.result()
    assert result.status == "rejected", result.message
    assert stack.repo.active().commit == old.commit
