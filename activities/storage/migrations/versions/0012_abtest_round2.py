"""A/B tests, round 2: a model slot's routing salt (per test) and the lease of its split
(activities/models/registry.py: a split whose lease lapsed routes everything to the active variant).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing slots: no salt (today's routing positions) and no lease (their split holds, as before).
    with op.batch_alter_table("model_slots") as batch:  # batch: SQLite cannot ALTER everything in place
        batch.add_column(sa.Column("salt", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("split_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite it would rebuild `model_slots` (DROP TABLE), and with foreign keys on that
    # delete cascades to every variant and outcome. SQLite 3.35+ drops a column in place.
    op.drop_column("model_slots", "split_expires_at")
    op.drop_column("model_slots", "salt")
