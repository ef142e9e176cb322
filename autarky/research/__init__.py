"""The research cycle: its types, settings, relevance scoring, budget and CLI."""
