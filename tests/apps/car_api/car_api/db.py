"""The ``cars`` table and the engine.

The schema itself is owned by the Alembic revisions in ``migrations/``; this
table object only describes it for queries.  ``color`` arrives with revision
0002: code built for schema 1 never touches it, so it keeps working against a
database already migrated to 0002 (an expand-only change, which is what makes
a rollback of the image safe).
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
)

from car_api.config import ConfigError, Settings, get_settings

metadata = MetaData()

cars = Table(
    "cars",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("brand", String(100), nullable=False),
    Column("model", String(100), nullable=False),
    Column("year", Integer, nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("color", String(30)),  # revision 0002
)

SCHEMA2_COLUMNS = {"color"}


def car_columns(settings: Settings | None = None) -> list[Column]:
    """The columns of ``cars`` that the schema this build is written for has."""
    settings = settings or get_settings(require_secret_key=False)
    skip = SCHEMA2_COLUMNS if settings.schema_level < 2 else set()
    return [column for column in cars.columns if column.name not in skip]


def make_engine(settings: Settings, connect_timeout: int = 3) -> Engine:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set")
    return create_engine(
        settings.database_url,  # a URL object: its str() would mask the password
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": connect_timeout, "application_name": "car-api"},
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings(require_secret_key=False))
