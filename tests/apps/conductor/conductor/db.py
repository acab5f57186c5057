"""MongoDB and Redis clients, made on first use in each process (a Celery
worker's children fork after import: a client made before the fork is not
safe to use in them)."""

from __future__ import annotations

import json
import logging
import threading

import pymongo
import redis
from pymongo.database import Database

from conductor.config import DEFAULT_DATABASE, settings

EVENTS_CHANNEL = "conductor:events"
TIMEOUT_MS = 3000

log = logging.getLogger(__name__)
_lock = threading.Lock()
_clients: dict[str, object] = {}


def mongo_client(mongo_only: bool = False) -> pymongo.MongoClient:
    with _lock:
        if "mongo" not in _clients:
            _clients["mongo"] = pymongo.MongoClient(
                settings(mongo_only).mongo_url,
                serverSelectionTimeoutMS=TIMEOUT_MS,
                connectTimeoutMS=TIMEOUT_MS,
                tz_aware=True,
                appname="conductor",
            )
        return _clients["mongo"]


def database(mongo_only: bool = False) -> Database:
    """``DATABASE_NAME``, else the database named in the URL, else ``conductor``."""
    client = mongo_client(mongo_only)
    name = settings(mongo_only).database_name
    if name:
        return client[name]
    return client.get_default_database(default=DEFAULT_DATABASE)


def redis_client() -> redis.Redis:
    with _lock:
        if "redis" not in _clients:
            _clients["redis"] = redis.Redis.from_url(
                settings().redis_url, socket_timeout=TIMEOUT_MS / 1000, socket_connect_timeout=TIMEOUT_MS / 1000
            )
        return _clients["redis"]


def publish(event: dict) -> None:
    """Send a server event to every websocket of every web process (Redis pub/sub); a failure is only logged."""
    try:
        redis_client().publish(EVENTS_CHANNEL, json.dumps(event, default=str))
    except redis.RedisError as exc:
        log.warning("could not publish the event %s: %s", event.get("type"), exc.__class__.__name__)
