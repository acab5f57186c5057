"""a broken migration: only the "bad" build ships it

It alters a table that no revision creates, so ``alembic upgrade head`` fails
with ``relation "price_history" does not exist`` and, the upgrade being one
transaction, leaves the database at 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE price_history ADD COLUMN airline text")


def downgrade() -> None:
    op.execute("ALTER TABLE price_history DROP COLUMN airline")
