"""Notify alerts whose price was reached (every 6 minutes: `*/6 * * * *`).

An alert matches when the cheapest price of its route's latest fetch is at or
below its ``max_price`` and it was not notified since that fetch.  Nothing is
sent: the job prints who it would notify (e-mail masked) and records
``last_sent_at``.  Matching alerts are locked, so overlapping runs never
notify twice.

    python -m app.workers.send_alerts                # one round (a scheduled job)
    python -m app.workers.send_alerts --every 10     # a round every 10 s (a worker process)
"""

from __future__ import annotations

import argparse

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import distinct_on

from app.config import Settings
from app.db import alerts, price_cache
from app.workers.common import mask_email, run, run_every


def send(settings: Settings, engine: Engine) -> str:
    pc = price_cache.c
    # Per route, the cheapest row of the most recent fetch.
    latest = (
        select(pc.origin, pc.destination, pc.price, pc.currency, pc.fetched_at)
        .ext(distinct_on(pc.origin, pc.destination))
        .order_by(pc.origin, pc.destination, pc.fetched_at.desc(), pc.price)
        .subquery("latest")
    )
    wanted = [alerts.c.id, alerts.c.email, alerts.c.origin, alerts.c.destination, alerts.c.max_price]
    if settings.schema_level >= 2:
        wanted.append(alerts.c.channel)
    query = (
        select(*wanted, latest.c.price, latest.c.currency)
        .join(latest, and_(alerts.c.origin == latest.c.origin, alerts.c.destination == latest.c.destination))
        .where(alerts.c.max_price >= latest.c.price)
        .where(or_(alerts.c.last_sent_at.is_(None), alerts.c.last_sent_at < latest.c.fetched_at))
        .order_by(alerts.c.id)
        .with_for_update(of=alerts, skip_locked=True)
    )
    with engine.begin() as conn:
        total = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
        matched = conn.execute(query).mappings().all()
        for alert in matched:
            channel = alert.get("channel", "email")
            print(
                f"send_alerts: would notify {mask_email(alert['email'])} via {channel}:"
                f" {alert['origin']}-{alert['destination']} at {alert['price']} {alert['currency']}"
                f" (alert {alert['id']}, max {alert['max_price']})",
                flush=True,
            )
        if matched:
            conn.execute(
                update(alerts).where(alerts.c.id.in_([a["id"] for a in matched])).values(last_sent_at=func.now())
            )
    return f"notified {len(matched)} of {total} alerts"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="send_alerts", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--every", type=float, metavar="SECONDS", help="keep running, a round every SECONDS, until SIGTERM"
    )
    args = parser.parse_args(argv)
    if args.every is None:
        run("send_alerts", send)
    if args.every < 1:
        parser.error("--every must be at least 1 (seconds)")
    run_every("send_alerts", send, args.every)


if __name__ == "__main__":
    main()
