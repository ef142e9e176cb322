"""LLM-written patches of an agent: ask for a unified diff, then check it before anything runs it.

`patch_request` builds the question (the agent's declared sources, the metric, recent failures, the
rules); `propose_patches` asks the gateway `count` times and checks every answer with `check_patch`.
A patch is acceptable only if it is non-empty, touches nothing but the agent's declared source files,
creates, deletes and renames nothing, and applies cleanly with `git apply` to the sources it was
written against. The check reads the diff twice, once here (`touched_files`, for readable reasons) and
once through git's own parser (`git apply --numstat --summary`), so a diff that this module and git
read differently is still confined to the declared files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.models.llm import LLM_INVALID_OUTPUT, LLM_REFUSED, LlmGateway
from autarky.llm.types import LlmRequest
from autarky.selfmod.experiments import BRIEF_MAX_CHARS
from autarky.selfmod.types import AgentSpec

PURPOSE = "self-modification"
# Reasoning models (gpt-5…) count their thinking against this limit too; a whole-file diff must fit after it.
PATCH_MAX_TOKENS = 16_000
MAX_FAILURES = 5
MAX_FAILURE_CHARS = 500
GIT_TIMEOUT_SECONDS = 30
DEV_NULL = "/dev/null"

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
# git-style extended headers that create, delete, rename, copy or re-mode a file.
_STRUCTURAL = ("new file mode", "deleted file mode", "rename from", "rename to", "copy from", "copy to")
_MODE = ("old mode", "new mode")
_BINARY = ("GIT binary patch", "Binary files ")


class GitUnavailable(RuntimeError):
    """The git CLI, which checks that a patch applies, is not installed."""


class PatchProposal(BaseModel):
    """What the LLM answers: one change to the agent's sources."""

    summary: str = Field(
        description="one or two sentences: what changes and why it should improve the metric"
    )
    diff: str = Field(
        description="a unified diff that applies with `git apply`: paths relative to the project root "
        "with a/ and b/ prefixes (--- a/path, +++ b/path), exact context lines, correct hunk counts"
    )


# ---------------------------------------------------------------- reading a diff


def _header_path(line: str) -> str:
    """The path of a ---/+++ header: without the a/ b/ prefix and a trailing timestamp."""
    path = line[4:].split("\t", 1)[0].strip()
    if path.startswith('"') and path.endswith('"') and len(path) > 1:
        path = path[1:-1]  # git quotes unusual names; kept readable, they will match nothing allowed
    if path != DEV_NULL and path[:2] in ("a/", "b/"):
        path = path[2:]
    return path


def _headers(diff: str) -> list[tuple[str, str]]:
    """(kind, value) of every file-level line outside hunks: ('---'|'+++', path) and git's extended
    headers ('rename from', path), … Hunk bodies are skipped by their counts, so a removed line that
    starts with '-- ' is not mistaken for a header."""
    found: list[tuple[str, str]] = []
    old_left = new_left = 0
    for line in diff.splitlines():
        if old_left > 0 or new_left > 0:
            if line.startswith("\\"):  # "\ No newline at end of file"
                continue
            mark = line[:1]
            old_left -= mark in (" ", "-", "")
            new_left -= mark in (" ", "+", "")
            continue
        if match := _HUNK.match(line):
            old_left = int(match.group(1) or 1)
            new_left = int(match.group(2) or 1)
        elif line.startswith(("--- ", "+++ ")):
            found.append((line[:3], _header_path(line)))
        else:
            for prefix in (*_STRUCTURAL, *_MODE, *_BINARY):
                if line.startswith(prefix):
                    found.append((prefix.strip(), line[len(prefix) :].strip()))
    return found


def touched_files(diff: str) -> list[str]:
    """The paths a unified diff touches, in order of appearance, without a/ b/ prefixes and /dev/null."""
    paths: list[str] = []
    for kind, value in _headers(diff):
        # git writes rename/copy paths without a/ b/ prefixes: taken as they are.
        is_path = kind in ("---", "+++", "rename from", "rename to", "copy from", "copy to")
        if is_path and value != DEV_NULL and value not in paths:
            paths.append(value)
    return paths


def _named(headers: list[tuple[str, str]], start: int, kind: str) -> str:
    """The first path of a `kind` header ('---' or '+++') from `start` on that is not /dev/null."""
    return next((v for k, v in headers[start:] if k == kind and v != DEV_NULL), "a file")


def _structural_change(diff: str) -> str | None:
    """Why the diff does more than edit existing text files (naming the file), or None."""
    headers = _headers(diff)
    for i, (kind, value) in enumerate(headers):
        if (kind == "---" and value == DEV_NULL) or kind == "new file mode":
            return f"it creates {_named(headers, i, '+++')}"
        if kind == "deleted file mode":
            return f"it deletes {_named(headers, i, '---')}"
        if kind == "+++" and value == DEV_NULL:
            return f"it deletes {_named(headers[:i][::-1], 0, '---')}"
        if kind.startswith(("rename", "copy")):
            return f"it {kind.split()[0]}s a file ({kind} {value})"
        if kind in ("old mode", "new mode"):
            return "it changes a file's mode"
        if kind in ("GIT binary patch", "Binary files"):
            return "it is a binary patch"
    return None


def _unprefixed(diff: str) -> str | None:
    """The first ---/+++ path without an a/ or b/ prefix: `git apply` would strip its first component."""
    for line in diff.splitlines():
        if line.startswith(("--- ", "+++ ")):
            raw = line[4:].split("\t", 1)[0].strip().strip('"')
            if raw != DEV_NULL and raw[:2] not in ("a/", "b/"):
                return raw
    return None


def normalize_diff(diff: str) -> str:
    """The diff without a surrounding Markdown fence and with a final newline: models add the one and
    drop the other, and `git apply` calls a patch without its last newline corrupt."""
    text = diff.strip("\n")
    lines = text.splitlines()
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        text = "\n".join(lines[1:-1])
    return text + "\n" if text.strip() else ""


# ---------------------------------------------------------------- checking a diff


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        raise GitUnavailable(
            "the git CLI is needed to check that a patch applies and is not installed: "
            "`apt-get install git` (Debian/Ubuntu), `dnf install git` (Fedora)"
        )
    return git


def _git_env() -> dict[str, str]:
    # No user or system configuration (apply.whitespace, hooks, aliases): the same diff checks the same
    # everywhere.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "HOME": "/nonexistent",
        "LANG": "C",
    }


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"base file {name!r} is not a path inside the project")
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())  # bytes: no newline translation


def _git_apply_check(diff: str, base_files: dict[str, str]) -> tuple[bool, str]:
    """(applies, output) of `git apply --check --numstat --summary` in a fresh repository of base_files.
    A repository, not a bare directory: inside one, git refuses paths that leave it."""
    git = _git()
    env = _git_env()
    with tempfile.TemporaryDirectory(prefix="autarky-patch-") as tmp:
        root = Path(tmp)
        subprocess.run(
            [git, "init", "-q"],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
        _write_tree(root, base_files)
        done = subprocess.run(
            [git, "apply", "--check", "--numstat", "--summary"],
            cwd=root,
            env=env,
            input=diff.encode(),
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    if done.returncode != 0:
        return False, done.stderr.decode(errors="replace") or done.stdout.decode(errors="replace")
    return True, done.stdout.decode(errors="replace")


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "fatal:"))]
    return (errors or lines or ["git gave no reason"])[0]


def _git_view(output: str) -> tuple[list[str], list[str]]:
    """Paths (from --numstat) and structural changes (from --summary) as git read the diff."""
    paths, summary = [], []
    for line in output.splitlines():
        if line.startswith(" "):
            summary.append(line.strip())
        elif line.count("\t") >= 2:
            paths.append(line.split("\t", 2)[2])
    return paths, summary


def check_patch(diff: str, spec: AgentSpec, base_files: dict[str, str]) -> str | None:
    """None when the patch may be tried, else why not, in a sentence a person can read.

    Raises GitUnavailable without git (a broken worker, not a bad patch)."""
    if not diff.strip():
        return "the patch is empty"
    allowed = list(spec.source_files)
    touched = touched_files(diff)
    if not touched:
        return "the patch is not a unified diff: it has no ---/+++ file headers"
    if structural := _structural_change(diff):
        return f"the patch may only edit existing files, but {structural}"
    if outside := [path for path in touched if path not in allowed]:
        return f"the patch touches {', '.join(outside)}, which it may not; allowed: {', '.join(allowed)}"
    if (raw := _unprefixed(diff)) is not None:
        return f"the patch's paths need a/ and b/ prefixes (--- a/path, +++ b/path); found {raw!r}"
    applies, output = _git_apply_check(diff, base_files)
    if not applies:
        return f"the patch does not apply cleanly: {_first_error(output)}"
    git_paths, git_summary = _git_view(output)
    if outside := [path for path in git_paths if path not in allowed]:
        return f"git reads the patch as touching {', '.join(outside)}; allowed: {', '.join(allowed)}"
    if git_summary:
        return f"the patch may only edit existing files, but git reads it as: {'; '.join(git_summary)}"
    return None


# ---------------------------------------------------------------- asking for a patch

SYSTEM = (
    "You improve one agent of Autarky, a platform that keeps an AI system running and improving by "
    "itself. You change the agent's source code so that its metric gets better, and answer with a "
    "unified diff that applies cleanly with `git apply`. Answer in the requested JSON only."
)


def _fence(path: str, text: str) -> str:
    # A fence longer than any backtick run in the file, so a file containing ``` cannot end it early.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{path}\n{ticks}\n{text.rstrip(chr(10))}\n{ticks}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failures_text(failures: Sequence[str]) -> str:
    recent = list(failures)[-MAX_FAILURES:]  # the list is oldest first: the last ones are the most recent
    if not recent:
        return "None recorded."
    return "\n".join(f"- {_cut(' '.join(f.split()), MAX_FAILURE_CHARS)}" for f in recent)


def _rules(spec: AgentSpec) -> str:
    files = ", ".join(spec.source_files)
    imports = ", ".join(spec.allowed_imports) or "(none)"
    return (
        f"- Change only these files: {files}. Create, delete or rename no file.\n"
        "- Keep every public name (module-level classes, functions, constants; their parameters and "
        "fields): other code and the tests use them.\n"
        f"- Import only these modules (top-level names): {imports}.\n"
        "- Return a unified diff with paths relative to the project root and a/ b/ prefixes "
        "(--- a/path, +++ b/path). Context lines must match the sources above exactly, hunk counts must be "
        "right, and it must apply with `git apply`.\n"
        "- Make one focused change that you expect to improve the metric; keep the code's style."
    )


def patch_request(
    spec: AgentSpec,
    sources: dict[str, str],
    metric_name: str,
    baseline: float,
    failures: list[str],
    model_hint: str | None = None,
    brief: str = "",
) -> LlmRequest:
    """The question for one patch. `model_hint` is extra guidance for the model (e.g. what other attempts
    already proposed), not a model name: the gateway's settings choose the model. `brief`: the approved
    research experiment that asked for this run (its plan and source), if one did."""
    better = "higher is better" if spec.direction == "max" else "lower is better"
    files = "\n\n".join(_fence(path, sources.get(path, "")) for path in spec.source_files)
    hint = f"\n\nFor this attempt: {model_hint}" if model_hint else ""
    prompt = (
        f"Agent: {spec.name}: {spec.description}\n\n"
        f"Its source files:\n\n{files}\n\n"
        f"Metric: {metric_name} ({better}). Current figure: {baseline:g}.\n\n"
        f"Recent failures of candidates:\n{_failures_text(failures)}\n\n"
        f"{_brief_text(brief)}"
        f"Rules:\n{_rules(spec)}{hint}\n\n"
        "Answer with a PatchProposal: `summary` (one or two sentences: what changes and why it should "
        "improve the metric) and `diff` (the unified diff)."
    )
    return LlmRequest(system=SYSTEM, prompt=prompt, max_tokens=PATCH_MAX_TOKENS, purpose=PURPOSE)


def _brief_text(brief: str) -> str:
    if not brief.strip():
        return ""
    # Bounded here too: a brief from elsewhere than experiment_brief must not crowd out the sources.
    return (
        f"This run was asked for by research a person approved; try its idea where it fits the agent:\n"
        f"{_cut(brief.strip(), BRIEF_MAX_CHARS)}\n\n"
    )


def _cost_of_failure(error: ApplicationError) -> float:
    """The usage the gateway put in a failed call's details (it was paid for all the same)."""
    details: Any = error.details[0] if error.details else None
    return float(details.get("cost_usd", 0.0)) if isinstance(details, dict) else 0.0


def _other_attempts(summaries: list[str]) -> str | None:
    if not summaries:
        return None
    listed = "; ".join(_cut(s, 200) for s in summaries)
    return f"other attempts already proposed: {listed}. Propose a different change."


async def propose_patches(
    gateway: LlmGateway,
    spec: AgentSpec,
    sources: dict[str, str],
    metric_name: str,
    baseline: float,
    failures: list[str],
    count: int,
    brief: str = "",
) -> list[tuple[PatchProposal | None, str | None, float]]:
    """`count` proposals, asked one after another, each as (proposal, why it was rejected or None, USD).

    An answer that stays invalid or a refusal is (None, the gateway's message, its cost): it concerns that
    one answer, and failing the whole batch would throw away proposals already paid for. Every other
    gateway error (not configured, rate limits, outages, rejected requests) propagates."""
    results: list[tuple[PatchProposal | None, str | None, float]] = []
    summaries: list[str] = []
    for _ in range(count):
        request = patch_request(
            spec, sources, metric_name, baseline, failures, _other_attempts(summaries), brief
        )
        try:
            answer = await gateway.complete(request, PatchProposal)
        except ApplicationError as error:
            if error.type not in (LLM_INVALID_OUTPUT, LLM_REFUSED):
                raise
            results.append((None, error.message, _cost_of_failure(error)))
            continue
        proposal = answer.output.model_copy(update={"diff": normalize_diff(answer.output.diff)})
        summaries.append(proposal.summary)
        results.append((proposal, check_patch(proposal.diff, spec, sources), answer.cost_usd))
    return results
