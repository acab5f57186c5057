"""Alembic environment: the database comes from DATABASE_URL, as for the app."""

from __future__ import annotations

import sys
from logging.config import fileConfig

from alembic import context
from car_api import config as app_config
from car_api import logs
from car_api.db import make_engine
from sqlalchemy.exc import OperationalError

alembic_config = context.config
if alembic_config.config_file_name is not None:
    fileConfig(alembic_config.config_file_name, disable_existing_loggers=False)


def load_settings() -> app_config.Settings:
    try:
        settings = app_config.get_settings(require_secret_key=False)
    except app_config.ConfigError as exc:
        sys.exit(f"alembic: configuration error: {exc}")
    if settings.database_url is None:
        sys.exit("alembic: configuration error: DATABASE_URL is not set")
    return settings


def run_offline() -> None:
    url = load_settings().database_url
    context.configure(url=url.render_as_string(hide_password=True), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(load_settings())
    try:
        connection = engine.connect()
    except OperationalError as exc:
        sys.exit(f"alembic: database unreachable: {logs.redact(' '.join(str(exc.orig or exc).split()))}")
    with connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
