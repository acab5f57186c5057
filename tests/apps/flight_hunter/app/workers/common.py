"""What every job shares: settings, the engine, and clean failures.

A job is a function ``job(settings, engine) -> str`` returning its one-line
summary.  Exit status: 0 done, 2 configuration error, 3 database unreachable,
1 any other database error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import logs
from app.config import ConfigError, Settings, get_settings
from app.db import make_engine

Job = Callable[[Settings, Engine], str]


def one_line(exc: BaseException) -> str:
    return logs.redact(" ".join(str(exc).split()))


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def fail(name: str, message: str, status: int) -> NoReturn:
    print(f"{name}: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run(name: str, job: Job) -> NoReturn:
    try:
        settings = get_settings()
        engine = make_engine(settings)
    except ConfigError as exc:
        fail(name, f"configuration error: {exc}", 2)
    try:
        summary = job(settings, engine)
    except OperationalError as exc:
        fail(name, f"database unreachable: {one_line(exc.orig or exc)}", 3)
    except SQLAlchemyError as exc:
        fail(name, f"database error: {one_line(exc.orig or exc)}", 1)
    finally:
        engine.dispose()
    print(f"{name}: {summary}", flush=True)
    sys.exit(0)
