"""Alembic migrations of the knowledge base; `KnowledgeBase.migrate` runs them (no alembic.ini needed)."""
