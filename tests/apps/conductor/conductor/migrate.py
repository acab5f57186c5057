"""The database's indexes, created idempotently, and its schema revision.

    python -m conductor.migrate              create what is missing; the last line is the revision
    python -m conductor.migrate --revision   print the database's revision only ("none" before the first run)

Each revision creates indexes that ``create_index`` leaves as they are when
they exist already, so a rerun changes nothing. The revision reached is kept
in the ``schema_migrations`` collection. Exit status 0, 1 when MongoDB cannot
be reached or an index cannot be built (duplicate e-mails already stored, for
the unique one), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import pymongo
from pymongo.errors import PyMongoError

from conductor.db import database

SCHEMA_ID = "schema"
HEARTBEAT_TTL_SECONDS = 7 * 24 * 3600


def _0001_contacts(db) -> list[str]:
    return [
        db.contacts.create_index([("email", pymongo.ASCENDING)], unique=True, name="email_unique"),
        db.contacts.create_index([("created_at", pymongo.DESCENDING)], name="created_at"),
    ]


def _0002_heartbeats(db) -> list[str]:
    # Heartbeats go after a week (MongoDB's TTL monitor removes them).
    return [
        db.heartbeats.create_index(
            [("at", pymongo.ASCENDING)], expireAfterSeconds=HEARTBEAT_TTL_SECONDS, name="at_ttl"
        ),
    ]


MIGRATIONS = [("0001", _0001_contacts), ("0002", _0002_heartbeats)]
HEAD = MIGRATIONS[-1][0]


def current(db) -> str | None:
    document = db.schema_migrations.find_one({"_id": SCHEMA_ID})
    return document["revision"] if document else None


def upgrade(db) -> tuple[str | None, list[str]]:
    """Apply every revision (each one idempotent); return the revision before and the revisions applied."""
    before = current(db)
    applied = []
    for revision, step in MIGRATIONS:
        indexes = step(db)
        if before is None or revision > before:
            applied.append(revision)
            print(f"revision {revision}: indexes {', '.join(indexes)}", flush=True)
            db.schema_migrations.update_one(
                {"_id": SCHEMA_ID},
                {"$set": {"revision": revision, "applied_at": datetime.now(UTC)}},
                upsert=True,
            )
    return before, applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conductor.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--revision", action="store_true", help="print the database's revision and exit")
    args = parser.parse_args(argv)
    db = database(mongo_only=True)
    try:
        if args.revision:
            print(current(db) or "none")
            return 0
        before, applied = upgrade(db)
    except PyMongoError as exc:
        print(f"conductor.migrate: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    if not applied:
        print(f"database {db.name} is up to date")
    else:
        print(f"database {db.name} migrated from {before or 'nothing'} to {HEAD}")
    print(HEAD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
