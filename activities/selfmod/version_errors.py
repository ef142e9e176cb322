"""What the version store (versions.py) and its sync with the shared store (agent_sync.py) raise."""

from __future__ import annotations


class VersionStoreError(RuntimeError):
    """The version store cannot do what was asked: git failed or is missing, or its files are bad."""


class PointerConflict(RuntimeError):
    """Another writer changed the agent's pointer after this one read it (the store's optimistic check)."""
