"""Settings from the environment.

``DATABASE_URL`` (``postgresql://`` or ``postgresql+psycopg://``; also
``postgres://`` and ``postgresql+psycopg2://``, all run on psycopg 3) and
``SECRET_KEY`` (at least 16 characters; the web process refuses to start
without it).  The build sets ``APP_VERSION``, ``APP_SCHEMA``, ``APP_HEALTH``
and ``STARTUP_DELAY`` (see the Dockerfile).

Secrets are kept out of ``repr`` and never put in a message; their values are
registered with :mod:`car_api.logs` so that any log line that happens to
contain one (an error message echoing a DSN, say) is redacted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from car_api import logs

DRIVERS = ("", "psycopg", "psycopg2")
SCHEMAS = ("1", "2", "bad")
HEALTH_MODES = ("ok", "unhealthy", "badproxy")
SECRET_KEY_MIN_LENGTH = 16
SECRET_KEY_HINT = "generate one with: openssl rand -hex 32"
MAX_STARTUP_DELAY = 600


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it, never its value."""


def database_url(raw: str) -> URL:
    """Parse ``postgresql://`` or ``postgresql+psycopg://`` (and the older spellings) into a psycopg 3 URL."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):
        # The original message echoes the URL, password included: do not chain it.
        raise ConfigError("DATABASE_URL is not a valid URL") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgres", "postgresql") or driver not in DRIVERS:
        raise ConfigError(f"DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL, not {url.drivername}://")
    if not url.database:
        raise ConfigError("DATABASE_URL names no database")
    return url.set(drivername="postgresql+psycopg")


def secret_key(raw: str | None) -> str:
    """The key, checked; the messages say what is wrong, never the value (nor its length)."""
    value = (raw or "").strip()
    if not value:
        raise ConfigError(f"SECRET_KEY is not set ({SECRET_KEY_HINT})")
    if len(value) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters ({SECRET_KEY_HINT})")
    return value


def startup_delay(raw: str | None) -> float:
    try:
        value = float((raw or "0").strip() or "0")
    except ValueError:
        raise ConfigError("STARTUP_DELAY must be a number of seconds") from None
    if not 0 <= value <= MAX_STARTUP_DELAY:
        raise ConfigError(f"STARTUP_DELAY must be between 0 and {MAX_STARTUP_DELAY} seconds")
    return value


def choice(name: str, raw: str | None, default: str, allowed: tuple[str, ...]) -> str:
    value = (raw or "").strip() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urlsplit(url.strip()).password
    except ValueError:
        return []
    return [password, unquote(password), quote(unquote(password), safe="")] if password else []


@dataclass(frozen=True)
class Settings:
    version: str
    schema: str  # the build's APP_SCHEMA: 1, 2 or bad
    health: str  # ok; unhealthy or badproxy: builds that fail their health check on purpose
    startup_delay: float
    database_url: URL | None = field(repr=False)
    raw_secret_key: str | None = field(repr=False)  # as set; checked by secret_key()

    @property
    def schema_level(self) -> int:
        """The schema this build's code is written for: 1, or 2 (also for the "bad" build)."""
        return 1 if self.schema == "1" else 2

    def secret_key(self) -> str:
        return secret_key(self.raw_secret_key)

    def secret_values(self) -> list[str]:
        values = []
        if self.raw_secret_key:
            values += [self.raw_secret_key, self.raw_secret_key.strip()]
        if self.database_url is not None and self.database_url.password:
            password = str(self.database_url.password)
            values += [password, quote(password, safe="")]
        return values


def load(environ: os._Environ | dict | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw_db = env.get("DATABASE_URL", "").strip()
    return Settings(
        version=env.get("APP_VERSION", "dev").strip() or "dev",
        schema=choice("APP_SCHEMA", env.get("APP_SCHEMA"), "2", SCHEMAS),
        health=choice("APP_HEALTH", env.get("APP_HEALTH"), "ok", HEALTH_MODES),
        startup_delay=startup_delay(env.get("STARTUP_DELAY")),
        database_url=database_url(raw_db) if raw_db else None,
        raw_secret_key=env.get("SECRET_KEY") or None,
    )


@lru_cache(maxsize=2)
def get_settings(require_secret_key: bool = True) -> Settings:
    """The settings; with ``require_secret_key`` (the web process) a missing or short key is an error.

    The migrations never use the key and do not ask for it.
    """
    environ = os.environ
    # Registered before anything is parsed, so that no later message can carry a secret.
    logs.register_secrets([environ.get("SECRET_KEY", ""), *_url_password(environ.get("DATABASE_URL"))])
    settings = load(environ)
    logs.register_secrets(settings.secret_values())
    if require_secret_key:
        settings.secret_key()
    return settings
