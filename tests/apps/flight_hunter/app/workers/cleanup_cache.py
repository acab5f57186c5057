"""Delete cached prices fetched more than 30 days ago (daily at 03:00).

python -m app.workers.cleanup_cache [--days 30]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from sqlalchemy import Engine, delete, func

from app.config import Settings
from app.db import price_cache
from app.workers.common import run

RETENTION_DAYS = 30


def cleanup(days: int, engine: Engine) -> str:
    with engine.begin() as conn:
        result = conn.execute(delete(price_cache).where(price_cache.c.fetched_at < func.now() - timedelta(days=days)))
    return f"deleted {result.rowcount} price rows fetched more than {days} days ago"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cleanup_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=RETENTION_DAYS, help=f"retention (default {RETENTION_DAYS})")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    def job(_settings: Settings, engine: Engine) -> str:
        return cleanup(args.days, engine)

    run("cleanup_cache", job)


if __name__ == "__main__":
    main()
