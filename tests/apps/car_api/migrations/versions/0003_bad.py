"""a broken migration: only the "bad" build (v-badmigration) ships it

It first adds ``cars.mileage``, then alters a table that no revision creates,
so ``alembic upgrade head`` fails with ``relation "car_owners" does not
exist``.  The upgrade being one transaction, the new column goes too and the
database stays at 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cars", sa.Column("mileage", sa.Integer, nullable=True))
    op.execute("ALTER TABLE car_owners ADD COLUMN car_id bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE car_owners DROP COLUMN car_id")
    op.drop_column("cars", "mileage")
