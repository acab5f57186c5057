"""alerts.channel, price_cache.provider and an index for the cleanup job

Expand-only: code written for 0001 keeps working on this schema.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("channel", sa.Text, nullable=False, server_default="email"))
    op.add_column("price_cache", sa.Column("provider", sa.Text))
    op.create_index("ix_price_cache_fetched_at", "price_cache", ["fetched_at"])


def downgrade() -> None:
    op.drop_index("ix_price_cache_fetched_at", table_name="price_cache")
    op.drop_column("price_cache", "provider")
    op.drop_column("alerts", "channel")
