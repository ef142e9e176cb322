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

# Failures that every item would meet alike: the account or configuration (a bad key, a quota, a missing
# model or price, a spent budget, a completion cap reasoning fills), or the provider down past its retries.
PROVIDER_FAILURES = frozenset(
    {
        LLM_REJECTED,
        LLM_UNAVAILABLE,
        LLM_RATE_LIMITED,
        LLM_NOT_CONFIGURED,
        LLM_BUDGET_SPENT,
        LLM_UNPRICED,
        LLM_REASONING_EXHAUSTED,
    }
)
# The knowledge base down past its retries (the driver's exception, as Temporal names an unclassified one).
STORE_FAILURES = frozenset({"OperationalError", "InterfaceError", "DisconnectionError"})
# A cycle stopped by one of these says so as "stopped for budget", not "failed".
BUDGET_FAILURES = frozenset({LLM_BUDGET_SPENT})


def counts_against_item(error_type: str | None) -> bool:
    """Whether a failed analysis counts against the item: everything but the failures every item would
    meet. Unknown failures count too (a refusal, invalid output, a bad request, a bug, a timeout), so an
    item that keeps failing is set aside after a few and cannot stall every cycle at the head of the queue.
    """
    return error_type not in PROVIDER_FAILURES and error_type not in STORE_FAILURES
