"""Fetch prices into ``price_cache`` (every 6 minutes: `*/6 * * * *`).

The source is local and deterministic, so the job needs no network and no
provider account: a route's price for a departure date is derived from a hash
of the route, the date and the hour of the fetch.

    python -m app.workers.fetch_prices [--routes GRU-LIS,LIS-GRU] [--days 14]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, insert

from app import cache
from app.config import Settings
from app.db import price_cache
from app.workers.common import run

DEFAULT_ROUTES = "GRU-LIS,LIS-GRU,GRU-OPO,GIG-LIS,GRU-MAD"
CURRENCY = "EUR"
PROVIDER = "local"


def quote(origin: str, destination: str, departure: date, hour: datetime) -> Decimal:
    """A price between 150.00 and 1499.99, stable for a route, a date and an hour."""
    seed = f"{origin}-{destination}-{departure.isoformat()}-{hour:%Y%m%d%H}".encode()
    cents = 15000 + int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") % 135000
    return Decimal(cents).scaleb(-2)


def parse_routes(text: str) -> list[tuple[str, str]]:
    routes = []
    for item in text.split(","):
        origin, sep, destination = item.strip().upper().partition("-")
        if not sep or len(origin) != 3 or len(destination) != 3 or not (origin + destination).isalpha():
            raise argparse.ArgumentTypeError(f"not a route like GRU-LIS: {item.strip()!r}")
        routes.append((origin, destination))
    return routes


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fetch_prices", description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=parse_routes, default=os.environ.get("FETCH_ROUTES", DEFAULT_ROUTES))
    parser.add_argument("--days", type=int, default=14, help="departure dates from tomorrow on (default 14)")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= 365:
        parser.error("--days must be between 1 and 365")
    return args


def fetch(args: argparse.Namespace, settings: Settings, engine: Engine) -> str:
    fetched_at = datetime.now(UTC).replace(microsecond=0)
    hour = fetched_at.replace(minute=0, second=0)
    rows = []
    for origin, destination in args.routes:
        for offset in range(1, args.days + 1):
            departure = fetched_at.date() + timedelta(days=offset)
            row = {
                "origin": origin,
                "destination": destination,
                "departure_date": departure,
                "price": quote(origin, destination, departure, hour),
                "currency": CURRENCY,
                "fetched_at": fetched_at,
            }
            if settings.schema_level >= 2:
                row["provider"] = PROVIDER
            rows.append(row)
    with engine.begin() as conn:
        conn.execute(insert(price_cache), rows)
    dropped = cache.invalidate_routes(args.routes)
    if dropped is None:
        cache_note = "cache unavailable, cached lists expire by themselves"
    else:
        cache_note = f"{dropped} cached lists dropped"
    return (
        f"inserted {len(rows)} rows for {len(args.routes)} routes x {args.days} days"
        f" (source {PROVIDER}, fetched_at {fetched_at.isoformat()}; {cache_note})"
    )


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    run("fetch_prices", lambda settings, engine: fetch(args, settings, engine))


if __name__ == "__main__":
    main()
