"""Logging to stdout, with known secret values redacted from every line."""

from __future__ import annotations

import logging
import logging.config
import sys

_SECRETS: set[str] = set()
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words


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
    """Send the app's and uvicorn's loggers to stdout (uvicorn's own default is stderr)."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {
                    "()": RedactingFormatter,
                    "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
                }
            },
            "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": sys.stdout, "formatter": "plain"}},
            "root": {"level": level, "handlers": ["stdout"]},
            "loggers": {
                name: {"level": level, "handlers": ["stdout"], "propagate": False}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
        }
    )
