"""The Redis cache in front of price queries (60 s).  Redis trouble never fails a request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import lru_cache

import redis

from app.config import get_settings

log = logging.getLogger(__name__)

PRICES_PREFIX = "flight-hunter:prices"
PRICES_TTL = 60


@lru_cache(maxsize=1)
def get_client() -> redis.Redis | None:
    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
        decode_responses=True,
    )


def prices_key(origin: str, destination: str, limit: int) -> str:
    return f"{PRICES_PREFIX}:{origin}:{destination}:{limit}"


def get_json(key: str) -> dict | None:
    client = get_client()
    if client is None:
        return None
    try:
        raw = client.get(key)
    except redis.RedisError as exc:
        log.warning("cache read skipped: %s", exc)
        return None
    return json.loads(raw) if raw else None


def set_json(key: str, value: dict, ttl: int = PRICES_TTL) -> None:
    client = get_client()
    if client is None:
        return
    try:
        client.set(key, json.dumps(value, separators=(",", ":")), ex=ttl)
    except redis.RedisError as exc:
        log.warning("cache write skipped: %s", exc)


def invalidate_routes(routes: Iterable[tuple[str, str]]) -> int | None:
    """Drop cached price lists of ``routes``; the count, or None when Redis is unset or down."""
    client = get_client()
    if client is None:
        return None
    try:
        keys = [key for origin, dest in routes for key in client.scan_iter(f"{PRICES_PREFIX}:{origin}:{dest}:*")]
        return client.delete(*keys) if keys else 0
    except redis.RedisError as exc:
        log.warning("cache invalidation skipped: %s", exc)
        return None
