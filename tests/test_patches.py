"""Every patch id the workflows use has a row in docs/patches.md, in the state the code gives it (static:
the code is parsed, not run), so no patch is added or retired without its lifecycle written down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "patches.md"
STATE_OF_CALL = {"patched": "patched", "deprecate_patch": "deprecated"}
# | `id` | workflow | landed | new path | state | deprecate in | delete in |
ROW = re.compile(r"^\| `([^`]+)` \|(?:[^|]*\|){3} (patched|deprecated|deleted) \|", re.MULTILINE)


def patch_calls(source: str, where: str = "<code>") -> dict[str, set[str]]:
    """Each patch id in `source` and the states its calls give it. An id must be a string literal or a
    module-level string constant, so that a static read finds it."""
    tree = ast.parse(source, where)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if not (isinstance(func, ast.Attribute) and func.attr in STATE_OF_CALL):
            continue
        if not (isinstance(func.value, ast.Name) and func.value.id == "workflow"):
            continue
        arg = node.args[0] if node.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            patch_id = arg.value
        elif isinstance(arg, ast.Name) and arg.id in constants:
            patch_id = constants[arg.id]
        else:
            raise AssertionError(f"{where}:{node.lineno}: a patch id must be a string constant of its module")
        found.setdefault(patch_id, set()).add(STATE_OF_CALL[func.attr])
    return found


def code_patches() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "workflows").rglob("*.py")):
        for patch_id, states in patch_calls(path.read_text(), str(path.relative_to(ROOT))).items():
            found.setdefault(patch_id, set()).update(states)
    return found


def documented() -> dict[str, str]:
    return dict(ROW.findall(DOC.read_text()))


def test_every_patch_id_in_the_code_has_a_row_in_its_state() -> None:
    rows = documented()
    for patch_id, states in code_patches().items():
        assert patch_id in rows, f"patch {patch_id!r} has no row in docs/patches.md"
        assert states == {rows[patch_id]}, (
            f"patch {patch_id!r}: the code calls it {sorted(states)}, docs/patches.md says {rows[patch_id]!r}"
        )


def test_every_row_not_deleted_is_in_the_code() -> None:
    code = code_patches()
    for patch_id, state in documented().items():
        if state == "deleted":
            assert patch_id not in code, f"patch {patch_id!r} is called but docs/patches.md says deleted"
        else:
            assert patch_id in code, (
                f"docs/patches.md lists {patch_id!r} as {state}, but no workflow calls it"
            )


def test_the_scan_sees_patch_calls_and_the_table_rows() -> None:
    # The checks above pass trivially if the scan or the table pattern stops recognising anything.
    code = 'X = "b"\nworkflow.patched("a")\nworkflow.deprecate_patch(X)\nother.patched("c")\n'
    assert patch_calls(code) == {"a": {"patched"}, "b": {"deprecated"}}
    assert documented(), "docs/patches.md: no row of the patch table was recognised"
