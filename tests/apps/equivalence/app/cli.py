"""What the one-off commands share: settings, the engine, and clean failures.

A command is a function ``command(settings, engine) -> str`` returning its
one-line summary.  Exit status: 0 done, 2 configuration error, 3 database
unreachable, 1 any other error (the database not migrated, say).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from psycopg import errors as pg_errors
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app import logs
from app.config import ConfigError, Settings, get_settings
from app.db import make_engine

Command = Callable[[Settings, Engine], str]


class CommandError(RuntimeError):
    """The command cannot do what was asked; the message says why (exit status 1)."""


def one_line(exc: BaseException) -> str:
    return logs.redact(" ".join(str(exc).split()))


def fail(name: str, message: str, status: int) -> NoReturn:
    print(f"{name}: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run(name: str, command: Command, *, require_salt: bool = True, summary_to: TextIO | None = None) -> NoReturn:
    """Run ``command`` and print ``name: summary`` (on stdout unless ``summary_to`` says otherwise)."""
    try:
        settings = get_settings(require_salt)
        engine = make_engine(settings)
    except ConfigError as exc:
        fail(name, f"configuration error: {exc}", 2)
    try:
        summary = command(settings, engine)
    except CommandError as exc:
        fail(name, str(exc), 1)
    except OperationalError as exc:
        fail(name, f"database unreachable: {one_line(exc.orig or exc)}", 3)
    except SQLAlchemyError as exc:
        if isinstance(getattr(exc, "orig", None), pg_errors.UndefinedTable):
            fail(name, f"database not migrated (run: alembic upgrade head): {one_line(exc.orig)}", 1)
        fail(name, f"database error: {one_line(exc.orig or exc)}", 1)
    finally:
        engine.dispose()
    print(f"{name}: {summary}", file=summary_to or sys.stdout, flush=True)
    sys.exit(0)
