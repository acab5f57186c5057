"""Rotate an API key: revoke the active key(s) of a name, create a new one, print it once.

    python -m app.rotate_keys [--name admin]

The new key is the only thing on stdout, once (capture it: it cannot be
shown again, only its HMAC is stored); the summary goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import Engine

from app import keys
from app.cli import run
from app.config import Settings


def arguments(prog: str, doc: str, argv: list[str] | None, default: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    if default is None:
        parser.add_argument("--name", required=True, help="the key's name, e.g. client-acme")
    else:
        parser.add_argument("--name", default=default, help=f"the key's name (default {default})")
    args = parser.parse_args(argv)
    try:
        keys.check_name(args.name)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def rotate(name: str, settings: Settings, engine: Engine) -> str:
    salt = settings.salt()
    with engine.begin() as conn:
        key, revoked = keys.rotate(conn, salt, name)
    print(key, flush=True)  # the one place a key is shown
    old = ", ".join(f"{p}..." for p in revoked) or "none"
    return f"key {name!r} rotated: new key {keys.prefix(key)}... printed on stdout; revoked: {old}"


def main(argv: list[str] | None = None) -> None:
    args = arguments("rotate_keys", __doc__, argv, default="admin")
    run("rotate_keys", lambda settings, engine: rotate(args.name, settings, engine), summary_to=sys.stderr)


if __name__ == "__main__":
    main()
