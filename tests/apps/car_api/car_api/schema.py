"""Which Alembic revision this build's code expects: the head of the migrations it ships."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@lru_cache(maxsize=1)
def expected_revision() -> str:
    """``0001``, ``0002`` or ``0003``, after the build's ``APP_SCHEMA``."""
    return ",".join(sorted(ScriptDirectory(str(MIGRATIONS)).get_heads()))
