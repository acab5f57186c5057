"""cars.color

Expand-only: a nullable column, so code written for 0001 keeps working on
this schema (a rollback to the previous release runs against it).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cars", sa.Column("color", sa.String(30), nullable=True))


def downgrade() -> None:
    op.drop_column("cars", "color")
