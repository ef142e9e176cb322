"""The knowledge base that research and the model registry share (SQLAlchemy, Alembic)."""
