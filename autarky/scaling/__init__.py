"""Scaling: its types, policy, settings, client helpers and CLI."""
