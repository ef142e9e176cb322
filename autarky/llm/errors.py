"""The LLM gateway's failure types (ApplicationError.type), and which are the provider's, not an item's.

Pure names, no SDK: the gateway (activities.models.llm) raises them, and the research cycle
(workflows/research.py) decides from them whether a failure counts against the item that was being
analysed or stops the whole cycle.
"""

from __future__ import annotations

LLM_UNAVAILABLE = "LlmUnavailable"  # retryable: 5xx, overloaded, timeouts, connection errors
LLM_RATE_LIMITED = "LlmRateLimited"  # retryable, after the provider's Retry-After when it sent one
LLM_REJECTED = "LlmRejected"  # final: 401/403/404, an exhausted quota: the account or the configuration
LLM_BAD_REQUEST = "LlmBadRequest"  # final: 400/413/422, this request (e.g. this item's prompt) was refused
LLM_REFUSED = "LlmRefused"  # final: the model declined (asking again gets the same answer)
LLM_INVALID_OUTPUT = "LlmInvalidOutput"  # final: invalid after one repair
LLM_NOT_CONFIGURED = "LlmNotConfigured"  # final: offline, or the key's variable is empty
LLM_BUDGET_SPENT = "LlmBudgetSpent"  # final: the call would take a budget past its limit
LLM_UNPRICED = "LlmUnpriced"  # final: the model has no price, so no budget could stop it
LLM_REASONING_EXHAUSTED = "LlmReasoningExhausted"  # final: reasoning used the whole completion cap

# Failures that are the item's own: another item may well succeed. Everything else (a bad key, a quota, a
# provider down past its retries, a spent budget, a configuration error) would fail every item alike.
ITEM_FAILURES = frozenset(
    {LLM_REFUSED, LLM_INVALID_OUTPUT, LLM_BAD_REQUEST, "KnowledgeBaseRefused", "BadDocument"}
)
# A cycle stopped by one of these says so as "stopped for budget", not "failed".
BUDGET_FAILURES = frozenset({LLM_BUDGET_SPENT})


def counts_against_item(error_type: str | None) -> bool:
    """Whether a failed analysis is the item's fault (counted on it) rather than the provider's."""
    return error_type in ITEM_FAILURES
