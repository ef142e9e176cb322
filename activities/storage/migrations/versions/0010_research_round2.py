"""Research cycles, round 2: failure classes on items, the one-cycle-at-a-time lease (activities/storage/knowledge_base.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled by the change this revision is for


def downgrade() -> None:
    pass
