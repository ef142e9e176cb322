"""LLM-written patches: reading and checking diffs (with the git CLI), the prompt, and proposals asked of
the real LLM gateway against a local server speaking OpenAI's Chat Completions format."""

from __future__ import annotations

import difflib
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.models.llm import LLM_REJECTED, LlmGateway
from activities.selfmod.patches import (
    MAX_FAILURE_CHARS,
    PURPOSE,
    GitUnavailable,
    PatchProposal,
    check_patch,
    normalize_diff,
    patch_request,
    propose_patches,
    touched_files,
)
from autarky.llm.settings import LlmSettings
from autarky.selfmod.types import AgentSpec
from tests.llm_servers import OpenAIServer, Reply, openai_completion, openai_error

ROOT = Path(__file__).resolve().parents[1]
AGENT = "autarky/autopilot/detectors/anomaly.py"
SOURCE = (ROOT / AGENT).read_text()
BASE = {AGENT: SOURCE}
SPEC = AgentSpec(
    name="anomaly",
    description="streaming anomaly detector scored on NAB",
    source_files=[AGENT],
    parameters=[],
    test_files=["tests/test_anomaly.py"],
    allowed_imports=["__future__", "math", "bisect", "collections", "datetime", "pydantic"],
    metric="nab_score",
)
OLD_DEFAULT = 'z_half: float = Field(2.0, gt=0, description="robust z at which the distance factor is 0.5")'
NEW_DEFAULT = OLD_DEFAULT.replace("2.0", "2.5")


def udiff(path: str, old: str, new: str, *, old_name: str | None = None, new_name: str | None = None) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name or f"a/{path}",
        tofile=new_name or f"b/{path}",
    )
    return "".join(lines)


def good_diff() -> str:
    assert OLD_DEFAULT in SOURCE
    return udiff(AGENT, SOURCE, SOURCE.replace(OLD_DEFAULT, NEW_DEFAULT))


def forbidden_diff() -> str:
    test = "tests/test_anomaly.py"
    return good_diff() + udiff(test, "def test_x():\n    assert True\n", "def test_x():\n    pass\n")


def stale_diff() -> str:
    """Written against a version of the file whose context differs from the real one."""
    stale = SOURCE.replace("Field(150, ge=2,", "Field(100, ge=2,")  # the line above the change
    assert stale != SOURCE
    return udiff(AGENT, stale, stale.replace(OLD_DEFAULT, NEW_DEFAULT))


# ---------------------------------------------------------------- touched_files


def test_touched_files_of_plain_new_and_deleted_files() -> None:
    assert touched_files(good_diff()) == [AGENT]
    assert touched_files(forbidden_diff()) == [AGENT, "tests/test_anomaly.py"]
    created = udiff("x/new.py", "", "print(1)\n", old_name="/dev/null")
    deleted = udiff("x/old.py", "print(1)\n", "", new_name="/dev/null")
    assert touched_files(created) == ["x/new.py"]
    assert touched_files(deleted) == ["x/old.py"]
    # Timestamps after a tab (diff -u) and no prefixes at all.
    assert touched_files("--- x.py\t2026-01-01\n+++ x.py\t2026-01-02\n@@ -1 +1 @@\n-a\n+b\n") == ["x.py"]


def test_touched_files_of_git_renames() -> None:
    diff = (
        "diff --git a/autarky/autopilot/detectors/anomaly.py b/autarky/autopilot/detectors/other.py\n"
        "similarity index 100%\n"
        "rename from autarky/autopilot/detectors/anomaly.py\n"
        "rename to autarky/autopilot/detectors/other.py\n"
    )
    assert touched_files(diff) == [AGENT, "autarky/autopilot/detectors/other.py"]


def test_hunk_lines_that_look_like_headers_are_not_headers() -> None:
    # Removing "-- note" and adding "++ x" give lines "--- note" and "+++ x" inside the hunk.
    diff = udiff("notes.txt", "a\n-- note\nb\n", "a\n++ x\nb\n")
    assert "--- note" in diff and "+++ x" in diff
    assert touched_files(diff) == ["notes.txt"]


# ---------------------------------------------------------------- check_patch


def test_a_good_patch_is_accepted() -> None:
    assert check_patch(good_diff(), SPEC, BASE) is None


def test_a_patch_touching_another_file_is_rejected_naming_it() -> None:
    reason = check_patch(forbidden_diff(), SPEC, BASE)
    assert reason is not None
    assert "tests/test_anomaly.py" in reason and f"allowed: {AGENT}" in reason
    config = (ROOT / "autarky/core/settings.py").read_text()
    reason = check_patch(udiff("autarky/core/settings.py", config, config + "# more\n"), SPEC, BASE)
    assert reason is not None and "autarky/core/settings.py" in reason


def test_a_patch_that_does_not_apply_says_what_git_said() -> None:
    reason = check_patch(stale_diff(), SPEC, BASE)
    assert reason is not None
    assert reason.startswith("the patch does not apply cleanly: error: patch failed: " + AGENT)


def test_empty_and_non_diffs_are_rejected() -> None:
    assert check_patch("", SPEC, BASE) == "the patch is empty"
    assert check_patch("  \n", SPEC, BASE) == "the patch is empty"
    assert "no ---/+++ file headers" in (check_patch("make z_half 2.5", SPEC, BASE) or "")


def test_creating_deleting_or_renaming_files_is_rejected() -> None:
    new = "autarky/autopilot/detectors/helpers.py"
    wide = SPEC.model_copy(update={"source_files": [AGENT, new]})
    created = udiff(new, "", "X = 1\n", old_name="/dev/null")
    assert check_patch(created, wide, BASE) == f"the patch may only edit existing files, but it creates {new}"
    deleted = udiff(AGENT, SOURCE, "", new_name="/dev/null")
    assert "it deletes " + AGENT in (check_patch(deleted, SPEC, BASE) or "")
    renamed = f"diff --git a/{AGENT} b/{new}\nsimilarity index 100%\nrename from {AGENT}\nrename to {new}\n"
    assert "it renames a file" in (check_patch(renamed, wide, BASE) or "")


def test_paths_without_prefixes_are_rejected_with_a_hint() -> None:
    diff = udiff(AGENT, SOURCE, SOURCE.replace(OLD_DEFAULT, NEW_DEFAULT), old_name=AGENT, new_name=AGENT)
    reason = check_patch(diff, SPEC, BASE)
    assert reason is not None and "a/ and b/ prefixes" in reason


def test_without_git_the_check_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GitUnavailable, match="apt-get install git"):
        check_patch(good_diff(), SPEC, BASE)


def test_normalize_diff_drops_a_fence_and_adds_the_last_newline() -> None:
    diff = good_diff()
    assert normalize_diff(f"```diff\n{diff.rstrip()}\n```") == diff
    assert normalize_diff(diff.rstrip("\n")) == diff
    assert normalize_diff("\n") == ""


# ---------------------------------------------------------------- the request


def test_patch_request_carries_sources_metric_failures_and_rules() -> None:
    failures = [f"failure {i} " + "x" * 1000 for i in range(8)]
    request = patch_request(SPEC, BASE, "nab_score", 68.25, failures, model_hint="try the window")
    assert request.purpose == PURPOSE and request.system
    prompt = request.prompt
    assert f"{AGENT}\n```\n{SOURCE.rstrip()}\n```" in prompt
    assert "Metric: nab_score (higher is better). Current figure: 68.25." in prompt
    assert "failure 2" not in prompt and all(f"failure {i}" in prompt for i in range(3, 8))
    assert max(len(line) for line in prompt.splitlines() if line.startswith("- failure")) <= (
        MAX_FAILURE_CHARS + 2
    )
    assert "math, bisect, collections, datetime, pydantic" in prompt
    assert f"Change only these files: {AGENT}." in prompt and "git apply" in prompt
    assert "For this attempt: try the window" in prompt
    lower = patch_request(SPEC.model_copy(update={"direction": "min"}), BASE, "latency", 3.0, [])
    assert "latency (lower is better)" in lower.prompt and "None recorded." in lower.prompt


# ---------------------------------------------------------------- proposals through the gateway


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


def gateway_for(server: OpenAIServer) -> LlmGateway:
    settings = LlmSettings(
        provider="openai", openai_base_url=server.base_url, request_timeout=timedelta(seconds=5)
    )
    return LlmGateway(settings, environ={"OPENAI_API_KEY": "sk-test-local"}, ledger=None)  # unmetered


def answer(summary: str, diff: str) -> Reply:
    return Reply(200, openai_completion(json.dumps({"summary": summary, "diff": diff})))


async def test_proposals_are_checked(server: OpenAIServer) -> None:
    server.script(
        answer("Lower z_half: earlier alarms.", f"```diff\n{good_diff()}```"),
        answer("Loosen the test.", forbidden_diff()),
        answer("Same change, stale context.", stale_diff()),
    )
    results = await propose_patches(gateway_for(server), SPEC, BASE, "nab_score", 68.0, ["boom"], count=3)

    (good, ok, cost), (_, forbidden, _), (_, stale, _) = results
    assert isinstance(good, PatchProposal) and ok is None and cost > 0
    assert good.diff == good_diff()  # the fence is gone: this is the text the caller applies
    assert forbidden is not None and "tests/test_anomaly.py" in forbidden
    assert stale is not None and "does not apply cleanly" in stale
    assert len(server.requests) == 3
    first = server.requests[0].body
    prompt = first["messages"][1]["content"]
    assert SOURCE.strip() in prompt and "nab_score" in prompt and "68" in prompt and "- boom" in prompt
    assert first["response_format"]["json_schema"]["name"] == "PatchProposal"
    # Later attempts hear what earlier ones proposed, so the batch is not one idea three times.
    assert "Lower z_half" in server.requests[1].body["messages"][1]["content"]


async def test_invalid_answers_are_rejections_and_other_errors_propagate(server: OpenAIServer) -> None:
    bad = Reply(200, openai_completion("not json"))
    server.script(bad, bad)
    [(proposal, reason, cost)] = await propose_patches(
        gateway_for(server), SPEC, BASE, "nab_score", 68.0, [], count=1
    )
    assert proposal is None and reason is not None and "invalid output" in reason and cost > 0

    server.script(openai_error(401, "Incorrect API key provided"))
    with pytest.raises(ApplicationError) as caught:
        await propose_patches(gateway_for(server), SPEC, BASE, "nab_score", 68.0, [], count=2)
    assert caught.value.type == LLM_REJECTED
