"""Temporal workflows: the long-running processes of Autarky."""
