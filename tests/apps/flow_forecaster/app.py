"""The web process: ``gunicorn --bind 0.0.0.0:8080 app:app``."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from functools import lru_cache

import redis
from celery.result import AsyncResult
from flask import Flask, jsonify, request
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

import forecast
import logs
import tasks
from celery_app import celery_app
from config import ConfigError, get_settings
from database import get_engine

log = logging.getLogger("flow_forecaster")

TASK_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
PING_TIMEOUT = 1.0
FAST_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis | None:
    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def check_redis() -> bool:
    client = redis_client()
    if client is None:
        return False
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        log.warning("health: redis unavailable: %s", exc)
        return False


def check_database() -> bool:
    if get_settings().database_url is None:
        return False
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health: database unavailable: %s", getattr(exc, "orig", None) or exc)
        return False
    return True


def count_workers() -> int:
    """Workers that answer a broadcast ping within PING_TIMEOUT, by distinct node name."""
    try:
        replies = celery_app.control.ping(timeout=PING_TIMEOUT) or []
    except Exception as exc:  # noqa: BLE001 - any broker trouble means no worker answered
        log.warning("health: worker ping failed: %s", exc)
        return 0
    return len({hostname for reply in replies for hostname in reply})


def create_app() -> Flask:
    logs.configure()
    try:
        settings = get_settings()
        if settings.flask_env == "production" and not settings.secret_key:
            raise ConfigError("SECRET_KEY is not set (required when FLASK_ENV=production)")
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        # 4 is gunicorn's "App failed to load": the arbiter stops instead of respawning workers.
        raise SystemExit(4) from None

    # Queueing a task also subscribes to its result in Redis, retried 20 times a second apart by
    # default: the web process never waits on a result, so it gives up fast and answers 503.
    # The workers keep Celery's patience for storing results.
    celery_app.conf.result_backend_transport_options = {"retry_policy": FAST_RETRY}

    app = Flask("flow_forecaster")
    app.config.update(SECRET_KEY=settings.secret_key)
    app.json.sort_keys = False
    log.info(
        "flow-forecaster %s web starting: env=%s, database %s, redis %s",
        settings.version,
        settings.flask_env,
        "configured" if settings.database_url is not None else "NOT configured",
        "configured" if settings.redis_url else "NOT configured",
    )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description), exc.code

    @app.get("/health")
    def health():
        """Liveness: the process answers.  Touches nothing else (no Redis, no database, no worker)."""
        return jsonify(status="ok", version=settings.version)

    @app.get("/api/async/health")
    def async_health():
        """Redis, Postgres and the Celery workers that answer a ping; 503 if Redis or Postgres is down."""
        redis_ok = check_redis()
        database_ok = check_database()
        body = {
            "status": "healthy" if redis_ok and database_ok else "unhealthy",
            "redis": "connected" if redis_ok else "disconnected",
            "database": "connected" if database_ok else "disconnected",
            "celery_workers": count_workers() if redis_ok else 0,
            "timestamp": datetime.now(UTC).isoformat(),
            "version": settings.version,
        }
        return jsonify(body), 200 if redis_ok and database_ok else 503

    def enqueue(task, *args):
        try:
            result = task.delay(*args)
        except (BrokerError, redis.RedisError, RuntimeError) as exc:
            # RuntimeError: Celery's result consumer gave up reconnecting to Redis.
            log.error("could not queue %s: %s", task.name, exc)
            return jsonify(error="task queue unavailable"), 503
        return jsonify(task_id=result.id, status="PENDING"), 202

    @app.post("/api/async/simulate")
    def simulate():
        try:
            params = forecast.validate(request.get_json(silent=True))
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        return enqueue(tasks.simulate, params)

    @app.post("/api/async/sleep")
    def sleep():
        body = request.get_json(silent=True)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= tasks.MAX_SLEEP:
            return jsonify(error=f"seconds must be a number in (0, {tasks.MAX_SLEEP}]"), 400
        return enqueue(tasks.sleep, seconds)

    @app.get("/api/tasks/<task_id>")
    def task_status(task_id: str):
        """PENDING (also: unknown or expired), STARTED, SUCCESS with the result, FAILURE with an error."""
        if not TASK_ID.match(task_id):
            return jsonify(error="not a task id"), 404
        result = AsyncResult(task_id, app=celery_app)
        try:
            state = result.state
            value = result.result if state in ("SUCCESS", "FAILURE") else None
        except (redis.RedisError, BrokerError) as exc:
            log.error("result backend unavailable: %s", exc)
            return jsonify(error="result backend unavailable"), 503
        body = {"task_id": task_id, "status": state, "result": value if state == "SUCCESS" else None}
        if state == "FAILURE":
            body["error"] = f"{type(value).__name__}: {value}"
        return jsonify(body)

    return app


app = create_app()
