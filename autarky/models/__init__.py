"""Models: the registry's and A/B tests' types, routing, sequential statistics, client and CLI."""
