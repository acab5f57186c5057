"""categories, units, equivalences and api_keys

Revision ID: 0001
Revises:
Create Date: 2024-06-01
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
        "categories",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_table(
        "units",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id"), nullable=False, index=True),
    )
    op.create_table(
        "equivalences",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("from_unit_id", sa.Integer, sa.ForeignKey("units.id"), nullable=False),
        sa.Column("to_unit_id", sa.Integer, sa.ForeignKey("units.id"), nullable=False, index=True),
        sa.Column("factor", sa.Numeric(38, 18), nullable=False),
        sa.Column("source", sa.Text),
        sa.UniqueConstraint("from_unit_id", "to_unit_id", name="uq_equivalences_pair"),
        sa.CheckConstraint("factor > 0", name="ck_equivalences_factor_positive"),
        sa.CheckConstraint("from_unit_id <> to_unit_id", name="ck_equivalences_distinct_units"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(8), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("key_hash ~ '^[0-9a-f]{64}$'", name="ck_api_keys_hash_hex"),
    )
    # One active key per name: a second one (a seed racing another) is a conflict, not a duplicate.
    op.create_index(
        "uq_api_keys_active_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_active_name", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("equivalences")
    op.drop_table("units")
    op.drop_table("categories")
