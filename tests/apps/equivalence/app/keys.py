"""API keys: made here, shown once, stored only as an HMAC.

A key is 64 URL-safe characters (48 random bytes).  The table keeps
``key_hash = HMAC-SHA256(API_KEY_SALT, key)`` in hex and the key's first 8
characters (``prefix``), which identify it in listings and narrow the lookup;
a presented key is checked by comparing HMACs with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import logs
from app.db import api_keys

KEY_BYTES = 48
PREFIX_LENGTH = 8
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def new_key() -> str:
    key = secrets.token_urlsafe(KEY_BYTES)
    logs.register_secrets([key])  # printed once on purpose, never logged
    return key


def key_hash(salt: bytes, key: str) -> str:
    return hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()


def prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError("a key name is 1 to 63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
    return name


def verify(conn: Connection, salt: bytes, presented: str) -> dict | None:
    """The active key row that ``presented`` is, or None (unknown, wrong or revoked)."""
    if not presented or len(presented) > 256:
        return None
    wanted = key_hash(salt, presented)
    query = select(api_keys.c.id, api_keys.c.name, api_keys.c.prefix, api_keys.c.key_hash).where(
        api_keys.c.prefix == prefix(presented), api_keys.c.revoked_at.is_(None)
    )
    match = None
    for row in conn.execute(query).mappings():
        if hmac.compare_digest(row["key_hash"], wanted):  # every candidate is compared, match or not
            match = {"id": row["id"], "name": row["name"], "prefix": row["prefix"]}
    return match


def create_if_absent(conn: Connection, salt: bytes, name: str) -> str | None:
    """A new key named ``name`` unless an active one exists (then None): safe when seeds race."""
    key = new_key()
    statement = (
        pg_insert(api_keys)
        .values(name=name, key_hash=key_hash(salt, key), prefix=prefix(key))
        .on_conflict_do_nothing(index_elements=["name"], index_where=api_keys.c.revoked_at.is_(None))
        .returning(api_keys.c.id)
    )
    return key if conn.execute(statement).first() is not None else None


def rotate(conn: Connection, salt: bytes, name: str) -> tuple[str, list[str]]:
    """Revoke the active key(s) named ``name`` and insert a new one, in the caller's transaction.

    Returns the new key and the prefixes of the revoked ones.
    """
    revoked = conn.execute(
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(api_keys.c.prefix)
    ).scalars()
    revoked_prefixes = list(revoked)
    key = new_key()
    conn.execute(insert(api_keys).values(name=name, key_hash=key_hash(salt, key), prefix=prefix(key)))
    return key, revoked_prefixes
