"""What every job shares: settings, the engine, and clean failures.

A job is a function ``job(settings, engine) -> str`` returning its one-line
summary.  Exit status: 0 done, 2 configuration error, 3 database unreachable,
1 any other database error.

``run_every`` runs a job as a long-running worker instead: a round every N
seconds until SIGTERM or SIGINT, after which the round in hand ends and the
process exits 0.  A database error is reported and the next round tries again.
"""

from __future__ import annotations

import signal
import sys
import threading
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


def run_every(name: str, job: Job, seconds: float) -> NoReturn:
    """Run ``job`` every ``seconds`` until SIGTERM or SIGINT; print its summary when it changes."""
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        print(f"{name}: {signal.Signals(signum).name}, stopping after the round in hand", flush=True)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        settings = get_settings()
        engine = make_engine(settings)
    except ConfigError as exc:
        fail(name, f"configuration error: {exc}", 2)
    print(f"{name}: running every {seconds:g} s", flush=True)
    last = None
    try:
        while not stopping.is_set():
            try:
                summary = job(settings, engine)
            except OperationalError as exc:
                print(f"{name}: database unreachable: {one_line(exc.orig or exc)}", file=sys.stderr, flush=True)
            except SQLAlchemyError as exc:
                print(f"{name}: database error: {one_line(exc.orig or exc)}", file=sys.stderr, flush=True)
            else:
                if summary != last:
                    print(f"{name}: {summary}", flush=True)
                last = summary
            stopping.wait(seconds)
    finally:
        engine.dispose()
    print(f"{name}: stopped", flush=True)
    sys.exit(0)
