"""Tables and the engine.

The schema itself is owned by the Alembic revisions in ``migrations/``; these
table objects only describe it for queries.  ``provider`` and ``channel``
arrive with revision 0002: code built for schema 1 never touches them, so it
keeps working against a database already migrated to 0002 (an expand-only
change, which is what makes a rollback of the image safe).
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    func,
)

from app.config import ConfigError, Settings, get_settings

metadata = MetaData()

price_cache = Table(
    "price_cache",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("origin", String(3), nullable=False),
    Column("destination", String(3), nullable=False),
    Column("departure_date", Date, nullable=False),
    Column("price", Numeric(10, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("provider", Text),  # revision 0002
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("email", Text, nullable=False),
    Column("origin", String(3), nullable=False),
    Column("destination", String(3), nullable=False),
    Column("max_price", Numeric(10, 2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_sent_at", DateTime(timezone=True)),
    Column("channel", Text, nullable=False, server_default="email"),  # revision 0002
)

SCHEMA2_COLUMNS = {"price_cache": {"provider"}, "alerts": {"channel"}}


def columns(table: Table, settings: Settings | None = None) -> list[Column]:
    """The columns of ``table`` that the schema this build is written for has."""
    settings = settings or get_settings()
    skip = SCHEMA2_COLUMNS[table.name] if settings.schema_level < 2 else set()
    return [column for column in table.columns if column.name not in skip]


def make_engine(settings: Settings, connect_timeout: int = 5) -> Engine:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set")
    return create_engine(
        settings.database_url,  # a URL object: its str() would mask the password
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": connect_timeout, "application_name": "flight-hunter"},
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings())
