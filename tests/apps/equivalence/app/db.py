"""Tables and the engine.

The schema itself is owned by the Alembic revisions in ``migrations/``; these
table objects only describe it for queries.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
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

categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
)

units = Table(
    "units",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("category_id", Integer, ForeignKey("categories.id"), nullable=False),
)

# factor: 1 from_unit = factor to_unit.  Either direction serves a conversion.
equivalences = Table(
    "equivalences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("from_unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("to_unit_id", Integer, ForeignKey("units.id"), nullable=False),
    Column("factor", Numeric(38, 18), nullable=False),
    Column("source", Text),
)

# key_hash: HMAC-SHA256(API_KEY_SALT, key) in hex; the key itself is never stored.
# At most one active (not revoked) key per name: a partial unique index.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)


def make_engine(settings: Settings, connect_timeout: int = 5) -> Engine:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set")
    return create_engine(
        settings.database_url,  # a URL object: its str() would mask the password
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": connect_timeout, "application_name": "equivalence"},
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings(require_salt=False))
