"""Settings, read from the environment in the names the deployment guide uses.

Nothing here is logged: the URLs carry passwords and ``SECRET_KEY`` is a secret.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache

APP_NAME = "Conductor CRM"
VERSION = os.environ.get("APP_VERSION", "dev")
DEFAULT_DATABASE = "conductor"
MIN_SECRET_KEY = 16


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it, never its value."""


def _list(name: str, default: str) -> list[str]:
    """A list setting: comma-separated (``https://a,https://b``) or a JSON-style list (``["https://a"]``)."""
    raw = os.environ.get(name, default).strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    return [item.strip().strip("\"'") for item in raw.split(",") if item.strip().strip("\"'")]


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false")


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def mongo_url() -> str:
    """``MONGODB_URL``, or ``MONGO_URL`` (the name Railway's plugin sets)."""
    url = os.environ.get("MONGODB_URL") or os.environ.get("MONGO_URL") or ""
    if not url:
        raise SettingsError("MONGODB_URL (or MONGO_URL) is not set")
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise SettingsError("MONGODB_URL must start with mongodb:// or mongodb+srv://")
    return url


def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        raise SettingsError("REDIS_URL is not set")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


@dataclass(frozen=True)
class Settings:
    environment: str
    debug: bool
    secret_key: str
    mongo_url: str
    database_name: str | None  # None: the database of the URL, else "conductor"
    redis_url: str
    broker_url: str
    result_backend: str | None
    cors_origins: list[str]
    allowed_hosts: list[str]
    backend_url: str
    frontend_url: str
    heartbeat_interval: int
    beat_schedule_file: str

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def load(mongo_only: bool = False) -> Settings:
    """Every setting; with ``mongo_only`` (the migrations) only MongoDB's are required."""
    secret_key = os.environ.get("SECRET_KEY", "")
    if not mongo_only and len(secret_key) < MIN_SECRET_KEY:
        raise SettingsError(
            f"SECRET_KEY is not set or shorter than {MIN_SECRET_KEY} characters (e.g. openssl rand -hex 32)"
        )
    redis = os.environ.get("REDIS_URL", "") if mongo_only else redis_url()
    return Settings(
        environment=os.environ.get("ENVIRONMENT", "development"),
        debug=_bool("DEBUG", False),
        secret_key=secret_key,
        mongo_url=mongo_url(),
        database_name=os.environ.get("DATABASE_NAME") or None,
        redis_url=redis,
        broker_url=os.environ.get("CELERY_BROKER_URL") or redis,
        result_backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
        cors_origins=_list("CORS_ORIGINS", "*"),
        allowed_hosts=_list("ALLOWED_HOSTS", "*"),
        backend_url=os.environ.get("BACKEND_URL", "http://localhost:8000"),
        frontend_url=os.environ.get("FRONTEND_URL", "http://localhost:4200"),
        heartbeat_interval=_int("HEARTBEAT_INTERVAL", 60),
        beat_schedule_file=os.environ.get("CELERY_BEAT_SCHEDULE_FILE", "/tmp/celerybeat-schedule"),
    )


@cache
def settings(mongo_only: bool = False) -> Settings:
    """The settings, or exit with status 2 and one line naming the setting at fault."""
    try:
        return load(mongo_only)
    except SettingsError as exc:
        print(f"conductor: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
