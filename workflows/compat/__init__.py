"""What each workflow keeps only so that runs begun under older releases replay: one module per workflow
(`workflows/compat/<workflow file>.py`), holding its patch ids and the old paths still needed.

The lifecycle of a patch (patched, deprecated, deleted) and the table of ids are in docs/patches.md;
tests/test_patches.py fails when a patch id in workflows/ has no row there.
"""
