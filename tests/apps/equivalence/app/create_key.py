"""Create an API key of a new name and print it once.

    python -m app.create_key --name NAME

The key is the only thing on stdout, once (capture it: it cannot be shown
again, only its HMAC is stored); the summary goes to stderr.  A name that has
an active key already is refused: rotate that one with
``python -m app.rotate_keys --name NAME``.
"""

from __future__ import annotations

import sys

from sqlalchemy import Engine

from app import keys
from app.cli import CommandError, run
from app.config import Settings
from app.rotate_keys import arguments


def create(name: str, settings: Settings, engine: Engine) -> str:
    salt = settings.salt()
    with engine.begin() as conn:
        key = keys.create_if_absent(conn, salt, name)
    if key is None:
        raise CommandError(
            f"an active key named {name!r} exists: rotate it with python -m app.rotate_keys --name {name}"
        )
    print(key, flush=True)  # the one place a key is shown
    return f"key {name!r} created: {keys.prefix(key)}... printed on stdout"


def main(argv: list[str] | None = None) -> None:
    args = arguments("create_key", __doc__, argv, default=None)
    run("create_key", lambda settings, engine: create(args.name, settings, engine), summary_to=sys.stderr)


if __name__ == "__main__":
    main()
