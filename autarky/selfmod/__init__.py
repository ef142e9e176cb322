"""Self-modification: agents, evolution types and policy, the harness, client and CLI."""
