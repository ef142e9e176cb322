"""Let a process's `agent_spec` find the agents made by genesis: the registry's loader reads the knowledge
base (activities/selfmod/genesis_store.py), imported on the first lookup of a name no declared agent has:
a worker that never meets one never loads SQLAlchemy for it."""

from __future__ import annotations

from activities.storage.handle import KnowledgeBaseHandle
from autarky.selfmod.genesis import GeneratedAgent, registry


def install(kb: KnowledgeBaseHandle) -> None:
    def load() -> list[GeneratedAgent]:
        from activities.selfmod.genesis_store import load_all

        return load_all(kb)

    registry.install_loader(load)
