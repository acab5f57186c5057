"""Settings from the environment.

``DATABASE_URL`` (``postgresql://``, ``postgresql+psycopg://``; also
``postgres://`` and ``postgresql+psycopg2://``, all run on psycopg 3),
``REDIS_URL``, ``API_KEY_SALT`` (at least 32 hexadecimal characters, as made
by ``openssl rand -hex 32``) and the build's ``APP_VERSION``.

Secrets are kept out of ``repr`` and never put in a message; their values are
registered with :mod:`app.logs` so that any log line that happens to contain
one (an error message echoing a DSN, say) is redacted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app import logs

DRIVERS = ("", "psycopg", "psycopg2")
SALT_MIN_LENGTH = 32
HEX = re.compile(r"[0-9a-fA-F]+")
SALT_HINT = "generate one with: openssl rand -hex 32"


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
    if backend not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL, not {backend}://")
    if driver not in DRIVERS:
        raise ConfigError(f"DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL, not {url.drivername}://")
    if not url.database:
        raise ConfigError("DATABASE_URL names no database")
    return url.set(drivername="postgresql+psycopg")


def api_key_salt(raw: str | None) -> str:
    """The salt, checked; the messages say what is wrong, never the value (nor its length)."""
    value = (raw or "").strip()
    if not value:
        raise ConfigError(f"API_KEY_SALT is not set ({SALT_HINT})")
    if len(value) < SALT_MIN_LENGTH or not HEX.fullmatch(value):
        raise ConfigError(f"API_KEY_SALT must be at least {SALT_MIN_LENGTH} hexadecimal characters ({SALT_HINT})")
    return value


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password), quote(unquote(password), safe="")] if password else []


@dataclass(frozen=True)
class Settings:
    version: str
    database_url: URL | None = field(repr=False)
    redis_url: str | None = field(repr=False)
    raw_salt: str | None = field(repr=False)  # as set; checked by salt()

    def salt(self) -> bytes:
        """The HMAC key of API key hashes: the salt's text as set (the hex digits, not the bytes they spell)."""
        return api_key_salt(self.raw_salt).encode()

    def secret_values(self) -> list[str]:
        values = []
        if self.raw_salt:
            values += [self.raw_salt, self.raw_salt.strip()]
        if self.database_url is not None and self.database_url.password:
            password = str(self.database_url.password)
            values += [password, quote(password, safe="")]
        values += _url_password(self.redis_url)
        return values


def load(environ: os._Environ | dict | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw_db = env.get("DATABASE_URL", "").strip()
    return Settings(
        version=env.get("APP_VERSION", "dev"),
        database_url=database_url(raw_db) if raw_db else None,
        redis_url=env.get("REDIS_URL", "").strip() or None,
        raw_salt=env.get("API_KEY_SALT") or None,
    )


@lru_cache(maxsize=2)
def get_settings(require_salt: bool = True) -> Settings:
    """The settings; with ``require_salt`` (the web process, the seed, the key commands) a bad salt is an error.

    The worker and the migrations never use the salt and do not ask for it.
    """
    environ = os.environ
    # Registered before anything is parsed, so that no later message can carry a secret.
    early = [environ.get("API_KEY_SALT", "")]
    for name in ("DATABASE_URL", "REDIS_URL"):
        early += _url_password(environ.get(name))
    logs.register_secrets(early)
    settings = load(environ)
    logs.register_secrets(settings.secret_values())
    if require_salt:
        settings.salt()
    return settings
