"""The offline analyser as the research cycle runs it: the `relevance-scorer` agent's active version, and
what it has learned from people's decisions (filled by the learning change of issue 26).

`offline_model_label` names the analyser an offline analysis is stored under: when it changes (a promoted
scorer version, a retrained model), recent items are analysed again.
"""

from __future__ import annotations

from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.relevance import MODEL


async def offline_model_label(settings: AutarkySettings, kb: KnowledgeBaseHandle) -> str:
    """The model name offline analyses made now are stored under."""
    return MODEL
