"""Model activities: the LLM gateway (activities.models.llm) and its provider adapters."""
