"""The spending ledger: every paid LLM call, reserved before it is made and settled after (activities/storage/ledger.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled by the change this revision is for


def downgrade() -> None:
    pass
