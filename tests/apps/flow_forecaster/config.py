"""Settings from the environment (the names of the Fly.io deployment guide).

``DATABASE_URL`` (``postgres://`` or ``postgresql://``), ``REDIS_URL``,
optional ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` (both default to
``REDIS_URL``), ``SECRET_KEY``, ``FLASK_ENV`` (``production`` unless set),
``CELERY_RESULT_EXPIRES`` (seconds, default one day) and the build's
``APP_VERSION``.  Secrets stay out of ``repr`` and are registered with
:mod:`logs` so that a log line that happens to contain one is redacted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

import logs

DEFAULT_RESULT_EXPIRES = 86400


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it, never its value."""


def database_url(raw: str) -> URL:
    """``postgres://`` (Heroku/Fly style) or ``postgresql://`` as a psycopg 3 URL."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):
        # The original message echoes the URL, password included: do not chain it.
        raise ConfigError("DATABASE_URL is not a valid URL") from None
    backend = url.drivername.partition("+")[0]
    if backend not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be a postgres:// or postgresql:// URL, not {backend}://")
    if not url.database:
        raise ConfigError("DATABASE_URL names no database")
    return url.set(drivername="postgresql+psycopg")


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


@dataclass(frozen=True)
class Settings:
    version: str
    flask_env: str
    result_expires: int
    database_url: URL | None = field(repr=False)
    redis_url: str | None = field(repr=False)
    broker_url: str | None = field(repr=False)
    result_backend: str | None = field(repr=False)
    secret_key: str | None = field(repr=False)

    def secret_values(self) -> list[str]:
        values = [self.secret_key] if self.secret_key else []
        if self.database_url is not None and self.database_url.password:
            password = str(self.database_url.password)
            values += [password, quote(password, safe="")]
        for url in (self.redis_url, self.broker_url, self.result_backend):
            values += _url_password(url)
        return values


def load(environ: os._Environ | dict | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw_db = env.get("DATABASE_URL", "").strip()
    redis_url = env.get("REDIS_URL", "").strip() or None
    raw_expires = env.get("CELERY_RESULT_EXPIRES", "").strip() or str(DEFAULT_RESULT_EXPIRES)
    try:
        result_expires = int(raw_expires)
    except ValueError:
        raise ConfigError("CELERY_RESULT_EXPIRES must be a number of seconds") from None
    return Settings(
        version=env.get("APP_VERSION", "dev"),
        flask_env=env.get("FLASK_ENV", "").strip() or "production",
        result_expires=result_expires,
        database_url=database_url(raw_db) if raw_db else None,
        redis_url=redis_url,
        broker_url=env.get("CELERY_BROKER_URL", "").strip() or redis_url,
        result_backend=env.get("CELERY_RESULT_BACKEND", "").strip() or redis_url,
        secret_key=env.get("SECRET_KEY") or None,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = load()
    logs.register_secrets(settings.secret_values())
    return settings
