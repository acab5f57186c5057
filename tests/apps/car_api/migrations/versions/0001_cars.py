"""cars

Revision ID: 0001
Revises:
Create Date: 2025-11-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cars",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("brand", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("year BETWEEN 1886 AND 2100", name="ck_cars_year"),
        sa.CheckConstraint("price >= 0", name="ck_cars_price_not_negative"),
    )
    op.create_index("ix_cars_brand_model", "cars", ["brand", "model"])


def downgrade() -> None:
    op.drop_index("ix_cars_brand_model", table_name="cars")
    op.drop_table("cars")
