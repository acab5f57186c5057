"""Logging to stdout, with known secret values redacted from every line."""

from __future__ import annotations

import logging
import logging.config
import sys

_SECRETS: set[str] = set()
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def register_secrets(values) -> None:
    _SECRETS.update(value for value in values if value and len(value) >= MIN_SECRET_LENGTH)


def redact(text: str) -> str:
    for value in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: str = "INFO") -> None:
    """The root logger (the app's, Celery's, SQLAlchemy's) to stdout.

    Gunicorn's own loggers are routed to stdout by ``gunicorn.conf.py``.
    """
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"()": RedactingFormatter, "format": FORMAT}},
            "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": sys.stdout, "formatter": "plain"}},
            "root": {"level": level, "handlers": ["stdout"]},
        }
    )
