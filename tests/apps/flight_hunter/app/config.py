"""Settings from the environment.

Secrets are optional and are kept out of ``repr``; nothing here logs them.
Their values are registered with :mod:`app.logs` so that any log line that
happens to contain one (an error message echoing a DSN, say) is redacted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app import logs

APP_ENVS = ("local", "staging", "prod")
SECRET_NAMES = (
    "AMADEUS_CLIENT_ID",
    "AMADEUS_CLIENT_SECRET",
    "DUFFEL_TOKEN",
    "SENDGRID_API_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "TELEGRAM_BOT_TOKEN",
)
PROVIDERS = {
    "amadeus": ("AMADEUS_CLIENT_ID", "AMADEUS_CLIENT_SECRET"),
    "duffel": ("DUFFEL_TOKEN",),
    "sendgrid": ("SENDGRID_API_KEY",),
    "stripe": ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"),
    "telegram": ("TELEGRAM_BOT_TOKEN",),
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it, never its value."""


def database_url(raw: str) -> URL:
    """Parse ``postgresql://`` or ``postgres://`` (Heroku style) into a psycopg 3 URL."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):
        # The original message echoes the URL, password included: do not chain it.
        raise ConfigError("DATABASE_URL is not a valid URL") from None
    backend, _, _driver = url.drivername.partition("+")
    if backend not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be a postgresql:// or postgres:// URL, not {backend}://")
    if not url.database:
        raise ConfigError("DATABASE_URL names no database")
    return url.set(drivername="postgresql+psycopg")


@dataclass(frozen=True)
class Settings:
    app_env: str
    version: str
    schema: str
    database_url: URL | None = field(repr=False)
    redis_url: str | None = field(repr=False)
    secrets: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def schema_level(self) -> int:
        """The schema this build's code is written for: 1, or 2 (also for the "bad" build)."""
        return 1 if self.schema == "1" else 2

    @property
    def providers(self) -> list[str]:
        """Names (never values) of the providers whose credentials are all set."""
        return [name for name, keys in PROVIDERS.items() if all(self.secrets.get(key) for key in keys)]

    def secret_values(self) -> list[str]:
        values = [value for value in self.secrets.values() if value]
        if self.database_url is not None and self.database_url.password:
            password = str(self.database_url.password)
            values += [password, quote(password, safe="")]
        if self.redis_url:
            try:
                password = urlsplit(self.redis_url).password
            except ValueError:
                password = None
            if password:
                values += [password, unquote(password)]
        return values


def load(environ: os._Environ | dict | None = None) -> Settings:
    env = os.environ if environ is None else environ
    app_env = env.get("APP_ENV", "local").strip() or "local"
    if app_env not in APP_ENVS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(APP_ENVS)}, not {app_env!r}")
    raw_db = env.get("DATABASE_URL", "").strip()
    return Settings(
        app_env=app_env,
        version=env.get("APP_VERSION", "dev"),
        schema=env.get("APP_SCHEMA", "2"),
        database_url=database_url(raw_db) if raw_db else None,
        redis_url=env.get("REDIS_URL", "").strip() or None,
        secrets={name: env[name] for name in SECRET_NAMES if env.get(name)},
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = load()
    logs.register_secrets(settings.secret_values())
    return settings
