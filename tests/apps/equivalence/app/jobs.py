"""What the RQ worker runs, on queue ``equivalence``; enqueued by the web process.

Arguments and results are JSON (:data:`SERIALIZER`, on both sides): no pickle
from Redis.  Each job opens its own engine and closes it, since the worker
runs every job in a forked process.
"""

from __future__ import annotations

import logging
import socket
import time
from functools import lru_cache

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from app import conversion
from app.config import get_settings
from app.db import make_engine

log = logging.getLogger("app.jobs")

QUEUE = "equivalence"
SERIALIZER = JSONSerializer
RESULT_TTL = 3600  # seconds a result stays readable in Redis
FAILURE_TTL = 86400
CONVERSION_TIMEOUT = 60
SLEEP_STEP = 0.25
MAX_SLEEP = 300


def redis_connection(url: str, timeout: float | None = 2) -> redis.Redis:
    """A client for RQ (bytes, not decoded strings); ``timeout`` None for the worker's blocking reads."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=2, health_check_interval=30)


@lru_cache(maxsize=1)
def queue() -> Queue | None:
    """The web process's queue; None when REDIS_URL is not set."""
    url = get_settings(require_salt=False).redis_url
    if not url:
        return None
    return Queue(QUEUE, connection=redis_connection(url), serializer=SERIALIZER)


def convert(value: str, from_unit: str, to_unit: str) -> dict:
    """Convert ``value`` (a decimal string) from one unit to another, with the factors in Postgres."""
    engine = make_engine(get_settings(require_salt=False))
    try:
        with engine.connect() as conn:
            result = conversion.convert(conn, conversion.parse_value(value), from_unit, to_unit)
    finally:
        engine.dispose()
    log.info("converted %s %s to %s %s", result["value"], from_unit, result["result"], to_unit)
    return result


def sleep(seconds: float) -> dict:
    """Sleep ``seconds`` in small steps: a long job, for graceful-shutdown checks."""
    log.info("sleep: %s s started", seconds)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLEEP_STEP, left))
    log.info("sleep: done after %s s", seconds)
    return {"slept": seconds, "worker": socket.gethostname()}
