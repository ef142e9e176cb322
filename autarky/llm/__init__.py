"""The LLM gateway's contract: requests, results, providers, prices and settings."""
