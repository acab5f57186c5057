"""The ``forecasts`` table and the engine.

No migrations tool: the schema is created by ``init_db()``, which is
idempotent (``create_all`` creates what is missing and leaves the rest)::

    python -c 'from database import init_db; init_db()'

It prints one line and exits 0, or prints one line naming the problem and
exits 2 (configuration) or 3 (database unreachable or failing).
"""

from __future__ import annotations

import sys
from datetime import datetime
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError

import logs
from config import ConfigError, Settings, get_settings

metadata = MetaData()

# task_id is not unique on purpose: a task that ran twice shows up as two rows.
forecasts = Table(
    "forecasts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("task_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("result", JSONB),
    Column("worker", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("forecasts_task_id_idx", "task_id"),
)


def make_engine(settings: Settings, connect_timeout: int = 5) -> Engine:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set")
    return create_engine(
        settings.database_url,  # a URL object: its str() would mask the password
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": connect_timeout, "application_name": "flow-forecaster"},
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings())


def record(task_id: str, kind: str, params: dict, result: dict, worker: str | None, started_at: datetime) -> None:
    """One row per finished task run."""
    with get_engine().begin() as conn:
        conn.execute(
            insert(forecasts).values(
                task_id=task_id, kind=kind, params=params, result=result, worker=worker, started_at=started_at
            )
        )


def runs(task_id: str) -> int:
    with get_engine().connect() as conn:
        return len(conn.execute(select(forecasts.c.id).where(forecasts.c.task_id == task_id)).all())


def init_db() -> None:
    """Create the tables that are missing; print what was done."""
    try:
        engine = get_engine()
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            metadata.create_all(conn)
            rows = conn.execute(select(func.count()).select_from(forecasts)).scalar_one()
    except ConfigError as exc:
        print(f"init_db: configuration error: {exc}", flush=True)
        raise SystemExit(2) from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"init_db: database error: {logs.redact(reason)}", flush=True)
        raise SystemExit(3) from None
    created = sorted(set(metadata.tables) - existing)
    kept = sorted(set(metadata.tables) & existing)
    summary = f"created {', '.join(created)}" if created else "nothing to create"
    if kept:
        summary += f"; already present: {', '.join(kept)}"
    print(f"init_db: {summary}; forecasts has {rows} rows", file=sys.stdout, flush=True)
