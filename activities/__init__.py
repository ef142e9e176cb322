"""Temporal activities: the side-effecting work the workflows schedule."""
