"""The RQ worker: ``python -m app.worker`` (queue ``equivalence``).

Reads REDIS_URL (and DATABASE_URL, for the jobs) from the environment, so
that no password sits on a command line.  On SIGTERM (``docker stop``) RQ
does a warm shutdown: it takes no new job and waits for the running one to
finish, so the stop timeout must exceed the longest job; a second SIGTERM
(or SIGINT) kills the job.
"""

from __future__ import annotations

import logging
import sys

import redis
from rq import Worker

from app import jobs, logs
from app.config import ConfigError, get_settings
from app.db import make_engine

log = logging.getLogger("app.worker")


def fail(message: str, status: int) -> None:
    print(f"worker: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def main() -> None:
    logs.configure()
    try:
        settings = get_settings(require_salt=False)
        if not settings.redis_url:
            raise ConfigError("REDIS_URL is not set")
        make_engine(settings).dispose()  # DATABASE_URL is checked now, not at the first job
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    connection = jobs.redis_connection(settings.redis_url, timeout=None)
    try:
        connection.ping()
    except redis.RedisError as exc:
        fail(f"redis unavailable: {logs.redact(' '.join(str(exc).split()))}", 3)
    worker = Worker([jobs.QUEUE], connection=connection, serializer=jobs.SERIALIZER)
    log.info("equivalence %s worker %s starting on queue %s", settings.version, worker.name, jobs.QUEUE)
    worker.work(logging_level="INFO")
    log.info("worker %s stopped", worker.name)


if __name__ == "__main__":
    main()
